"""The ``neuronscope`` command line: one module per subcommand.

Each module in ``COMMANDS`` exposes ``add_parser(subparsers)`` (which registers its parser
and sets ``func``) and is imported lazily, so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from neuronscope._version import __version__

__all__ = ["build_parser", "main"]

# Subcommand modules under neuronscope.cli; add a name here to register a new command.
COMMANDS: tuple[str, ...] = ("demo", "attribute", "diagnose", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronscope",
        description="Neuron-level analysis of machine unlearning: erase or hide?",
    )
    parser.add_argument("--version", action="version", version=f"neuronscope {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"neuronscope.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"neuronscope.cli.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"neuronscope {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
