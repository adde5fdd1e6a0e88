"""Every adaptation command recorded beside its results (and in the docs) still parses, so the
figures in docs/ (docs/benchmarks.md and its pages) are reproduced by the same commands after the split of
benchmarks/adaptation.py into one module per experiment."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def recorded_commands() -> list[str]:
    commands = {json.loads(path.read_text()).get("command", "")
                for path in (ROOT / "benchmarks" / "results" / "adaptation").glob("*.json")}
    docs = sorted((ROOT / "docs").rglob("*.md"))  # benchmarks.md, its topic pages under docs/results/, history.md
    for doc in [*docs, ROOT / "README.md", *(ROOT / "src" / "emoadapt" / "weights").glob("*.md")]:
        text = doc.read_text().replace("\\\n", " ")
        commands |= {m.group(0) for m in re.finditer(r"python benchmarks/adaptation\.py[^`\n#]*", text)}
    return sorted(c for c in commands if "benchmarks/adaptation.py" in c)


@pytest.mark.parametrize("command", recorded_commands())
def test_recorded_adaptation_commands_parse(command):
    from adaptation import build_parser, part_named

    words = shlex.split(command)
    argv = words[words.index("benchmarks/adaptation.py") + 1:]
    if "--part" not in argv or argv.index("--part") == len(argv) - 1:
        pytest.skip("an incomplete command quoted in prose")
    try:
        build_parser(part_named(argv)).parse_args(argv)
    except SystemExit:
        if argv[-1].startswith("--"):  # a command cut off mid-sentence in the docs ("… --teacher")
            pytest.skip("a command cut off in prose")
        raise


def test_there_are_recorded_commands_for_every_part():
    from adaptation import PARTS

    parts = {shlex.split(c)[shlex.split(c).index("--part") + 1] for c in recorded_commands() if "--part" in c}
    assert set(PARTS) <= parts
