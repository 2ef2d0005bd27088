"""How long the README's demo takes once its organisms are cached (wall time, one thread and two).

The README promises that a second ``neuronscope demo`` (organism and oracle cached) finishes in
under 60 s on an idle 2-core machine. This benchmark runs ``neuronscope demo --quiet`` as a user
would, in a fresh process each time, with one thread (``OMP_NUM_THREADS=1``) and with torch's
default threads, interleaved, and records the wall time, the process's user and system CPU time,
its peak resident memory and the ``done in`` line the demo prints. ``--source DIR`` runs another
checkout's package instead (its folder goes first on ``PYTHONPATH``), so two commits can be
compared side by side in one run. The first run warms the organism cache; run the benchmark on an
otherwise idle machine, since wall time is the quantity measured.

Usage:
    python benchmarks/bench_demo.py --repeats 2 --out benchmarks/results/demo-cached.json
    python benchmarks/bench_demo.py --source /path/to/old/checkout --source .   # two commits
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neuronscope.atomic import atomic_write_text

THREADS = {"1 thread": "1", "default threads": None}


def run_demo_once(source: Path, threads: str | None, out: Path) -> dict:
    """One cached demo in a fresh process: wall, user and system seconds, peak memory, its own time.

    Example::

        run_demo_once(Path("."), "1", Path("/tmp/demo-out"))["wall_seconds"]   # about 50 on 2 cores
    """
    path = os.pathsep.join([str(source.resolve()), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    command = [sys.executable, "-m", "neuronscope", "demo", "--quiet", "--out", str(out)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"neuronscope demo failed in {source}:\n{output[-2000:]}")
    printed = re.search(r"done in ([0-9.]+) s", output)
    return {"wall_seconds": wall, "user_seconds": usage.ru_utime, "system_seconds": usage.ru_stime,
            "peak_resident_mb": usage.ru_maxrss / 1024,
            "printed_seconds": float(printed.group(1)) if printed else None}


def commit_of(source: Path) -> str | None:
    """The checkout's short commit hash (None outside git), so results say which code ran."""
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, action="append", default=None,
                        help="a checkout whose package to run (repeatable; default: this one)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sources = args.source or [Path(__file__).resolve().parents[1]]
    for source in sources:
        if not (source / "neuronscope" / "__init__.py").is_file():
            raise ValueError(f"--source {source} holds no neuronscope package")
    runs: dict[str, dict[str, list[dict]]] = {str(s): {name: [] for name in THREADS} for s in sources}
    with tempfile.TemporaryDirectory() as scratch:
        for source in sources:  # warm-up: fills the organism cache and the file cache
            run_demo_once(source, "1", Path(scratch))
        for _ in range(args.repeats):
            for source in sources:
                for name, threads in THREADS.items():
                    runs[str(source)][name].append(run_demo_once(source, threads, Path(scratch)))
    medians = {source: {name: statistics.median(r["wall_seconds"] for r in rows) for name, rows in by.items()}
               for source, by in runs.items()}
    record = {"commits": {str(s): commit_of(s) for s in sources}, "repeats": args.repeats,
              "cpu_count": os.cpu_count(), "median_wall_seconds": medians, "runs": runs}
    print(json.dumps(medians, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
