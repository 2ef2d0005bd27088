"""``neuronscope demo``: the whole story on the embedded model organism, in one command.

The organism and its oracle twin, unlearning (GA, GD, GD + SSIUU by default), the diagnosis,
both retraining attacks and a self-contained ``report.html``: the pipeline
(:mod:`neuronscope.bench.pipeline`) run by :func:`neuronscope.bench.demo.run_demo` with a
preset of ``DEMO_PRESETS``. This module only parses the flags.

Example:
    $ neuronscope demo --out demo-out          # the default preset
    $ neuronscope demo --fast --quiet          # a smaller world and organism
    $ neuronscope demo --methods "gd,gd+ssiuu(1e-3)"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuronscope.bench.demo import DemoResult, run_demo
from neuronscope.bench.presets import DEMO_PRESETS
from neuronscope.unlearning.recipe import parse_recipes

__all__ = ["PRESETS", "DemoResult", "add_parser", "run", "run_demo"]

PRESETS = DEMO_PRESETS  # the demo's presets, by the names of its --preset flag


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole story on the embedded organism and write report.html",
        description="Organism, unlearning (GA, GD, GD+SSIUU), diagnosis, both retraining attacks "
                    "(with the oracle) and a self-contained report.html.")
    parser.add_argument("--out", type=Path, default=Path("neuronscope-demo"),
                        help="output folder for report.html (default: ./neuronscope-demo)")
    parser.add_argument("--fast", dest="preset", action="store_const", const="fast", default="full",
                        help="the faster preset: a smaller world and the tiny organism")
    parser.add_argument("--preset", dest="preset", choices=sorted(PRESETS), default="full",
                        help="settings preset (default: full)")
    parser.add_argument("--size", default=None, choices=("small", "tiny"),
                        help="organism size (default: the preset's)")
    parser.add_argument("--people", type=int, default=None, help="people in the synthetic world")
    parser.add_argument("--methods", default=None,
                        help="comma-separated recipes, e.g. 'ga,gd,gd+ssiuu(0.01)' (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None,
                        help="organism cache folder (default: $NEURONSCOPE_CACHE or ~/.cache/neuronscope)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = (("size", args.size), ("n_people", args.people))
    overrides = {name: value for name, value in given if value is not None}
    if args.methods is not None:
        overrides["methods"] = parse_recipes(args.methods)
    result = run_demo(args.out, args.preset, seed=args.seed, quiet=args.quiet,
                      cache=args.cache if args.cache is not None else True, **overrides)
    print(f"report: {result.report.resolve()}")
    return 0
