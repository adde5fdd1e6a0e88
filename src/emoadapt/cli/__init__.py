"""The ``emoadapt`` command line: one module per command, heavy imports inside each command so
``emoadapt --help`` is instant, and one place that turns user errors into one-line messages.

:func:`main` builds the options of the one command it runs; the others get only their name and
one-line help, so neither ``emoadapt --help`` nor ``emoadapt adapt --help`` imports torch."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from . import _commands


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``emoadapt`` parser with every command's options; with ``only`` (a command name, or
    ``""`` for none) the other commands get just their name and one-line help."""
    parser = argparse.ArgumentParser(prog="emoadapt", description="Which emotion (happy, sad, hate, anger) an image "
                                     "evokes, and why. Run emoadapt COMMAND --help for one command's options.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in _commands.COMMANDS:
        if only is None or command.NAME == only:
            command.register(sub)
        else:
            sub.add_parser(command.NAME, help=command.HELP)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named in ``argv`` (the first word that is one), or ``""``."""
    names = {command.NAME for command in _commands.COMMANDS}
    return next((word for word in argv if word in names), "")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_in(argv))
    args = parser.parse_args(argv)
    from .. import provenance
    from ..errors import EmoadaptError

    provenance.COMMAND = shlex.join(["emoadapt", *argv])  # what results files record as their command

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
