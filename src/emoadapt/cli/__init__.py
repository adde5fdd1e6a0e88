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
        message = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(exc))
        print(f"emoadapt {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emoadapt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an exhausted resource: exit 3, distinct from 1 (some inputs failed)
        if args.debug or os.environ.get("EMOADAPT_DEBUG"):
            raise
        message = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in f"{type(exc).__name__}: {exc}")
        print(f"emoadapt {args.command}: internal error: {message} (run with --debug for the traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
