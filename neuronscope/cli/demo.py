"""``neuronscope demo``: build or load the organism and show what it knows.

Later stages (unlearning, diagnosis, attacks, report) extend this command.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the whole story on the embedded organism")
    parser.add_argument("--size", default="small", choices=("small", "tiny"),
                        help="organism size (tiny is for quick looks)")
    parser.add_argument("--people", type=int, default=400, help="people in the synthetic world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import neuronscope as ns

    start = time.perf_counter()
    world = ns.FactWorld.synthetic(n_people=args.people, seed=args.seed)
    print(world)
    org = ns.organism(world, size=args.size, seed=args.seed, progress=not args.quiet)
    how = "loaded from cache" if org.record.get("cached") else f"trained in {org.record['seconds']:.1f} s"
    print(f"organism ({args.size}): {how}  [{org.path}]")
    forget, retain = world.facts.split(forget=0.1, by="group", seed=args.seed)
    rows = [("all facts", world.facts), ("forget split", forget), ("retain split", retain),
            ("paraphrases (held out)", world.paraphrases), ("benign corpus", world.benign)]
    print(f"{'split':<24}{'facts':>7}{'accuracy':>10}")
    for name, facts in rows:
        print(f"{name:<24}{len(facts):>7}{ns.accuracy(org.model, facts):>10.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
