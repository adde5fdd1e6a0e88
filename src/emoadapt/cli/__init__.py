"""The ``emoadapt`` command line: one module per command, heavy imports inside each command so
``emoadapt --help`` is instant, and one place that turns user errors into one-line messages."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import _commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emoadapt", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _commands.REGISTERED:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..errors import EmoadaptError

    try:
        return int(args.run(args) or 0)
    except EmoadaptError as exc:
        if args.debug or os.environ.get("EMOADAPT_DEBUG"):
            raise
        print(f"emoadapt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emoadapt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
