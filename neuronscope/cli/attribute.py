"""``neuronscope attribute``: attribute facts to MLP neurons and save a NeuronAttribution.

Examples::
    neuronscope attribute --out forget.attr.pt                       # the organism, its forget split
    neuronscope attribute --model ckpt/ --facts facts.jsonl --out a.pt --steps 32 --layers 10 11
"""

from __future__ import annotations

import argparse
import time

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.attribution.quadrature import QUADRATURES, canonical_quadrature
from neuronscope.attribution.spec import METHODS, POSITIONS, TARGETS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attribute", help="integrated-gradients attribution of facts to MLP neurons",
        description="Attribute each fact's P(answer | prompt) to every MLP neuron and save the result "
                    "(load it with ns.NeuronAttribution.load).")
    source = parser.add_argument_group("model and facts (default: the embedded organism)")
    source.add_argument("--model", help="local Hugging Face checkpoint folder")
    source.add_argument("--facts", help="facts JSONL (prompt, answer, ...); required with --model")
    source.add_argument("--size", default="small", choices=("small", "tiny"), help="organism size")
    source.add_argument("--people", type=int, default=400, help="people in the organism's world")
    source.add_argument("--split", default="forget", choices=("forget", "retain", "all"),
                        help="organism facts to attribute (family split, 10%% forget)")
    source.add_argument("--limit", type=int, help="attribute only the first N facts")
    parser.add_argument("--out", required=True, help="where to save the NeuronAttribution (.pt)")
    parser.add_argument("--method", default="ig", choices=METHODS)
    parser.add_argument("--steps", type=int, default=None,
                        help="integration points per layer (default: adaptive, exact to 1 %%)")
    parser.add_argument("--quadrature", default="gauss_legendre", type=canonical_quadrature,
                        help=f"one of {', '.join(QUADRATURES)}")
    parser.add_argument("--target", default="prob", choices=TARGETS)
    parser.add_argument("--positions", default="prompt", choices=POSITIONS)
    parser.add_argument("--layers", type=int, nargs="+", help="model layers (default: all)")
    parser.add_argument("--batch-size", type=int, help="facts per chunk (default: fit the memory budget)")
    parser.add_argument("--device", default="cpu", help="device for --model (cpu, cuda, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=5, help="print the top-k neurons")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace):
    if args.model:
        if not args.facts:
            raise ValueError("--model needs --facts FILE.jsonl")
        return ns.load_model(args.model, device=args.device), ns.FactSet.from_jsonl(args.facts)
    if args.facts:
        raise ValueError("--facts needs --model (the organism only knows its own world)")
    world = ns.FactWorld.synthetic(n_people=args.people, seed=args.seed)
    org = ns.organism(world, size=args.size, seed=args.seed, progress=not args.quiet)
    forget, retain = world.facts.split(forget=0.1, by="group", seed=args.seed)
    facts = {"forget": forget, "retain": retain, "all": world.facts}[args.split]
    return org.bridge, facts


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    model, facts = _load(args)
    if args.limit is not None:
        facts = facts[: args.limit]
    start = time.perf_counter()
    attr = attribute(model, facts, method=args.method, steps=args.steps, quadrature=args.quadrature,
                     target=args.target, positions=args.positions, layers=args.layers,
                     batch_size=args.batch_size, progress=not args.quiet)
    path = attr.save(args.out)
    print(attr)
    print(f"{len(facts)} facts in {time.perf_counter() - start:.1f} s -> {path}")
    if attr.convergence_delta is not None:
        gap = (attr.target_input[:, None] - attr.target_baseline).abs()
        worst = float((attr.convergence_delta.abs() / (gap + 1e-12)).max())
        print(f"completeness: max |delta| = {float(attr.convergence_delta.abs().max()):.2e} "
              f"(max relative {worst:.2e}; raise --steps if large)")
    if args.top:
        print(f"top {args.top} neurons by mean attribution (layer, neuron, value):")
        for layer, neuron, value in attr.top(args.top):
            print(f"  L{layer} N{neuron}: {value:+.4g}")
    return 0
