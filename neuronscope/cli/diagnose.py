"""``neuronscope diagnose``: erase or hide? D+/D-, calibrated spurious-neuron flags, verify.

Examples::
    neuronscope diagnose --before ckpt/original --after ckpt/unlearned \\
        --facts forget.jsonl --control retain.jsonl --out diagnosis.pt
    neuronscope diagnose --before base.attr.pt --after unlearned.attr.pt --facts forget.jsonl \\
        --control retain.jsonl --out diagnosis.pt --verify 0     # reuse saved attributions
    neuronscope diagnose --before ckpt/original --after ckpt/unlearned --facts forget.jsonl \\
        --control retain.jsonl --out paper.pt --definition paper --sites q k v o gate up mlp_post down
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import neuronscope as ns
from neuronscope.attribution.sites import MODULE_ORDER, resolve_sites
from neuronscope.attribution.spec import METHODS, POSITIONS, TARGETS
from neuronscope.diagnostics.api import DEFINITIONS, PERMUTE_BY, _is_attribution, check_definition
from neuronscope.diagnostics.patching import RESTORES
from neuronscope.facts import atomic_write_text

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose", help="compare a model before and after unlearning: erased or hidden?",
        description="Attribute the facts in both models, compute D+ (erasing) and D- (hiding) per MLP "
                    "neuron, flag neurons whose D- is above the null at a stated family-wise error "
                    "rate, and test causally whether the flagged neurons hide the facts.")
    parser.add_argument("--before", required=True,
                        help="original model: Hugging Face checkpoint folder (or a saved attribution .pt)")
    parser.add_argument("--after", required=True,
                        help="unlearned model: checkpoint folder (or a saved attribution .pt)")
    parser.add_argument("--facts", required=True, help="target (forgotten) facts, JSONL")
    parser.add_argument("--control", help="control facts JSONL, e.g. the retain facts (the null)")
    parser.add_argument("--control-after", help="a model fine-tuned from --before on unrelated data "
                                                "for as many steps (a second null)")
    parser.add_argument("--out", required=True, help="where to save the Diagnosis (.pt)")
    parser.add_argument("--csv", help="also write the per-neuron table as CSV")
    parser.add_argument("--definition", default="neuronscope", choices=DEFINITIONS,
                        help="neuronscope: D+/D- of scores summed over tokens (default); paper: the paper's "
                             "eqs. 4-5, per-token activation x gradient of P reduced by max/min over tokens")
    parser.add_argument("--sites", nargs="+", choices=MODULE_ORDER, metavar="SITE",
                        help="where the neurons are: one or more of " + ", ".join(MODULE_ORDER)
                             + " (default: mlp_post, the MLP neurons)")
    parser.add_argument("--top-m", type=int, default=100, metavar="M",
                        help="also report the sums of the M largest D+ and D- (the paper's m = 100)")
    parser.add_argument("--method", default=None, choices=METHODS,
                        help="attribution method (default: ig; grad_x_act with --definition paper)")
    parser.add_argument("--steps", type=int, default=None,
                        help="integration points per layer (default: adaptive, exact to 1 %%)")
    parser.add_argument("--target", default=None, choices=TARGETS,
                        help="default: logprob; prob (the paper's P) with --definition paper")
    parser.add_argument("--positions", default="prompt", choices=POSITIONS)
    parser.add_argument("--layers", type=int, nargs="+", help="model layers (default: all)")
    parser.add_argument("--alpha", type=float, default=0.01, help="family-wise false-positive rate")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--permute-by", default="auto", choices=PERMUTE_BY)
    parser.add_argument("--verify", type=int, default=20, metavar="N",
                        help="causal test against N random neuron sets (0: skip)")
    parser.add_argument("--restore", default="original", choices=RESTORES)
    parser.add_argument("--device", default="cpu", help="device for the models (cpu, cuda, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _source(path: str | None, device: str):
    """A model from a checkpoint folder, or a saved NeuronAttribution from a file."""

    if path is None:
        return None
    if Path(path).is_file():
        return ns.NeuronAttribution.load(path)
    return ns.load_model(path, device=device)


def _n_neurons(source, sites: list[str] | None, layers: list[int] | None) -> int:
    """How many neurons ``source`` (a model or a saved attribution) has at ``sites``."""
    if _is_attribution(source):
        return int(source.scores[0].numel())
    widths = sum(site.width for site in resolve_sites(source, sites, layers))
    return widths * (len(layers) if layers is not None else int(source.cfg.n_layers))


def run(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {args.alpha}")
    check_definition(args.definition, args.method)
    if args.top_m < 1:
        raise ValueError(f"--top-m must be a positive integer, got {args.top_m}")
    if args.verify < 0:
        raise ValueError(f"--verify must be >= 0, got {args.verify}")
    if args.control is None and args.control_after is None:
        raise ValueError("give a null: --control FILE.jsonl (e.g. the retain facts) and/or --control-after")
    facts = ns.FactSet.from_jsonl(args.facts)
    control = ns.FactSet.from_jsonl(args.control) if args.control else None
    start = time.perf_counter()
    before, after = _source(args.before, args.device), _source(args.after, args.device)
    control_after = _source(args.control_after, args.device)
    n_neurons = _n_neurons(before, args.sites, args.layers)  # also: a site this architecture lacks
    if args.top_m > n_neurons:
        raise ValueError(f"--top-m {args.top_m} is larger than the number of neurons ({n_neurons})")
    diag = ns.diagnose(before, after, facts, control=control, control_after=control_after,
                       method=args.method, steps=args.steps, target=args.target, positions=args.positions,
                       layers=args.layers, sites=args.sites, definition=args.definition, alpha=args.alpha,
                       n_permutations=args.permutations, permute_by=args.permute_by, seed=args.seed,
                       progress=not args.quiet)
    models = not _is_attribution(before) and not _is_attribution(after)
    if args.verify and diag.flagged and models:
        diag.verify(before, after, facts, n_random=args.verify, seed=args.seed, restore=args.restore,
                    control=control)
    elif args.verify and diag.flagged:
        print("verify skipped: it needs models, not saved attributions")
    path = diag.save(args.out)
    if args.csv:
        frame = diag.to_pandas()

        atomic_write_text(args.csv, frame.to_csv(index=False))
    print(diag.summary())
    top = diag.top_m(args.top_m)
    print(f"  top-{args.top_m} sums: D+ {top['d_plus']:.4g}   D- {top['d_minus']:.4g}")
    print(f"done in {time.perf_counter() - start:.1f} s -> {path}")
    return 0
