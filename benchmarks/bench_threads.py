"""How the real-model path scales from one thread to two on this machine (wall time).

The ``real`` preset's budget is stated per seed in process CPU time on one thread (what can be
measured while other jobs share the machine). A user runs one seed alone with torch's default
threads; this benchmark measures the factor between the two: a GD-sized forward and backward
pass on SmolLM2-135M-Instruct (the whole forget set plus 16 retain facts, as one unlearning step
of the preset), one thread and two threads interleaved in one process, wall time, the ratio of
medians. Run it on an otherwise idle machine: wall time is the quantity measured.

Usage:
    python benchmarks/bench_threads.py --repeats 5 --out benchmarks/results/real-threads.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text
from neuronscope.scoring import answer_token_logprobs, batch_for


def _step_seconds(model, batch: ns.FactBatch, threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    picked, mask = answer_token_logprobs(model(batch.tokens), batch)
    (-(picked.sum() / mask.sum())).backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=42, help="rows per pass (26 forget + 16 retain)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    model = ns.pretrained("smollm2-135m-instruct")
    facts = ns.real_facts()[: args.rows]
    batch = batch_for(model, facts)
    _step_seconds(model, batch, 1)  # warm-up
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (1, 2):
            runs[threads].append(_step_seconds(model, batch, threads))
    medians = {t: statistics.median(v) for t, v in runs.items()}
    record = {"rows": args.rows, "repeats": args.repeats, "wall_seconds": runs,
              "median_seconds": medians, "speedup_two_threads": medians[1] / medians[2],
              "torch": torch.__version__}
    print(json.dumps({k: record[k] for k in ("median_seconds", "speedup_two_threads")}, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
