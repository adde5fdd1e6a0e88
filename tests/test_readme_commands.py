"""Every ``emoadapt …`` command in README.md's code blocks is one the CLI accepts (issue #34): its
command exists and its options parse with that command's own parser (required options present,
choices and types valid). Running them needs the user's photos; parsing needs nothing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from emoadapt.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """The ``emoadapt`` lines of README's fenced shell blocks, continuation lines joined, comments cut."""
    commands, fence = [], None
    for line in README.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "text")
        elif fence in ("bash", "sh", "console", "text") and line.startswith("emoadapt "):
            commands.append(re.sub(r"\s+#.*$", "", line).strip())  # the comment after the command
    return commands


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    argv = shlex.split(command)[1:]
    if argv == ["--help"]:
        return  # the top-level help: tests/test_cli_help.py runs it
    parser = build_parser(only=argv[0])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command does not parse: {command} (exit {exc.code})")
    assert args.command == argv[0]
