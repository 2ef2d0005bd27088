"""``neuronscope bench robustness``: methods x retraining attacks x seeds, tables and figure.

Example:
    neuronscope bench robustness --preset fast --out bench-out
    neuronscope bench robustness --preset full --seeds 0 1 2 --out docs/results
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuronscope.bench import parse_methods, robustness
from neuronscope.unlearning import split_recipes

__all__ = ["add_parser", "run_robustness"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (robustness to retraining attacks)")
    inner = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    robust = inner.add_parser("robustness", help="unlearn with each method, then attack (harmful "
                              "p=0.1, p=0.3, benign) against the oracle control")
    robust.add_argument("--preset", default="fast", choices=("smoke", "fast", "full", "real"),
                        help="smoke: seconds; fast: a few minutes (tiny organism); full: the "
                             "documented run (small organism); real: the paper's protocol on "
                             "SmolLM2-135M-Instruct and real-world facts (docs/real-model.md)")
    robust.add_argument("--out", default="bench-robustness", type=Path,
                        help="folder for robustness.json, robustness.md and robustness.html")
    robust.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the preset's)")
    robust.add_argument("--methods", help="comma-separated recipes, e.g. 'ga,gd,gd+ssiuu(1e-3)' "
                        "(default: the preset's)")
    robust.add_argument("--sweep", type=float, nargs="*", help="SSIUU lambdas for the sweep")
    robust.add_argument("--forget-by", choices=("group", "subject", "fact"),
                        help="forget-set kind (default: the preset's, whole families)")
    robust.add_argument("--target", help="forget accuracy to unlearn to: 'chance' (default), "
                        "'oracle' (the oracle's own forget accuracy) or a number")
    robust.add_argument("--quiet", action="store_true", help="no progress bar")
    robust.set_defaults(func=run_robustness)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def run_robustness(args: argparse.Namespace) -> int:
    if args.preset == "real":
        return _run_real(args)
    overrides = {}
    if args.methods:
        overrides["methods"] = parse_methods(args.methods)
    if args.sweep is not None:
        overrides["sweep"] = tuple(args.sweep)
    if args.forget_by:
        overrides["forget_by"] = args.forget_by
    if args.target:
        try:
            overrides["target"] = float(args.target)
        except ValueError:
            overrides["target"] = args.target
    result = robustness(args.preset, seeds=args.seeds, out=str(args.out), progress=not args.quiet,
                        **overrides)
    print(result.markdown())
    print(f"wrote {args.out / 'robustness.json'}, robustness.md, robustness.html")
    return 0


def _run_real(args: argparse.Namespace) -> int:
    given = [name for name in ("sweep", "forget_by", "target") if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise SystemExit(f"--preset real does not take {flags}")
    overrides = {}
    if args.methods:
        overrides["methods"] = tuple(split_recipes(args.methods))  # labelled as written
    result = robustness("real", seeds=args.seeds, out=str(args.out), progress=not args.quiet, **overrides)
    print(result.table())
    print(f"wrote {args.out / 'real.json'} and real.md")
    return 0
