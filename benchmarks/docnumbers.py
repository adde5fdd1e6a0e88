"""Every quoted figure has a source (issue #32): regenerate the marked numbers and tables of README.md,
the model cards (src/emoadapt/weights/*.md) and docs/**/*.md from the results files.

    python -m benchmarks.docnumbers            # rewrite every marked figure / table in place, list sources
    python -m benchmarks.docnumbers --check    # change nothing; exit 1 and list every figure that differs
    python -m benchmarks.docnumbers --sources  # which results file each marker reads
    make numbers                            # the same as the first line

Two kinds of marker, both HTML comments (invisible on GitHub):

* one figure read from a JSON file (or from a ``.safetensors`` file's metadata) by a key path;
  ``FILE@REV`` reads the file as committed at git revision REV (for docs/history.md: a results file
  that has since been rewritten for a newer model)::

      <!-- number: benchmarks/results/fer.json#models.emoadapt fer-cpu.scores.FER2013 PrivateTest.accuracy fmt=pct1 -->65.2 %<!-- /number -->

  The key path is split on ``.``; a segment that is not a key is joined with the next one
  (``pre_logits/h0/wd0.01``); integers index lists. Formats: see :data:`FORMATS`.

* a generated block or inline text, made by a named generator of :data:`GENERATORS` (which names
  the files it reads and says so under every block table)::

      <!-- table: fer-cpu-vs-mini-xception -->
      | … |
      <!-- /table -->

(Named ``docnumbers``, not ``numbers``: the scripts in benchmarks/ run with that folder first on
``sys.path``, where a ``numbers.py`` would shadow the standard library's ``numbers`` module.)

Nothing here imports torch: ``tests/test_numbers.py`` runs the check in well under a second. The
check also compares the weights sha256 that a results file declares (``weights_sha256`` at the top
level or in its ``provenance`` block, with ``model``) with the shipped one of that model name
(``src/emoadapt/weights/registry.json``); results of superseded models are listed in
:data:`SUPERSEDED` and quoted only from docs/history.md.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
REGISTRY = "src/emoadapt/weights/registry.json"

NUMBER_RE = re.compile(r"<!-- number: (?P<spec>[^>]*?) -->(?P<body>(?:(?!<!--).)*?)<!-- /number -->", re.S)
TABLE_RE = re.compile(r"<!-- table: (?P<name>[\w.-]+)(?P<args>(?: [^ >][^>]*?)?) -->(?P<body>(?:(?!<!-- table:).)*?)<!-- /table -->", re.S)

#: results files of models that are no longer shipped under the name they declare (quoted from docs/history.md only)
SUPERSEDED: set[str] = {
    # measured on the default of 2026-12-07 morning (aee3f79a…), replaced the same evening by the one with
    # scene stages 5-7 (issue #30, session 15); quoted as FILE@e75c5ad with that said beside them. The
    # faces study reads faces with the face branch, whose weights the new default kept unchanged.
    "benchmarks/results/faces/faces_in_scenes.json",
    "benchmarks/results/faces/faces_in_scenes_margins.json",
    "benchmarks/results/explain/int8_parity.json",
    "benchmarks/results/explain/speed_int8.json",
    "benchmarks/results/explain/speed_int8_loaded.json",
}


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md, the model cards and every page under docs/ (in a fixed order)."""
    files = [root / "README.md", *sorted((root / "src" / "emoadapt" / "weights").glob("*.md")),
             *sorted((root / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


# ---------------------------------------------------------------------------------------------- sources


class SourceError(ValueError):
    """A marker names a file or key that does not exist."""


@lru_cache(maxsize=None)
def _load(root: Path, rel: str) -> Any:
    if "@" in rel:  # a file as committed at a revision: figures of a superseded model (docs/history.md)
        import subprocess

        name, rev = rel.rsplit("@", 1)
        # the repository's history, also when ``root`` is a copy of its files (tests)
        shown = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode != 0:
            raise SourceError(f"no {name} at revision {rev} ({shown.stderr.strip()[:80]})")
        return json.loads(shown.stdout)
    path = root / rel
    if not path.is_file():
        raise SourceError(f"no such results file: {rel}")
    if path.suffix == ".safetensors":  # the JSON header: 8-byte length, then {"__metadata__": {...}, tensors}
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            meta = json.loads(handle.read(length)).get("__metadata__", {})
        return {k: _maybe_json(v) for k, v in meta.items()}
    return json.loads(path.read_text())


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def lookup(data: Any, key: str) -> Any:
    """``data`` at the dotted ``key`` (:func:`benchmarks.docnumbers_tables.lookup`), a missing key
    as a :class:`SourceError`."""
    from benchmarks.docnumbers_tables import lookup as find

    try:
        return find(data, key)
    except KeyError as exc:
        raise SourceError(exc.args[0]) from None


# ---------------------------------------------------------------------------------------------- formats


def _minus(text: str) -> str:
    return text.replace("-", "−")


def _fixed(n: int, scale: float = 1.0, suffix: str = "", signed: bool = False) -> Callable[[Any], str]:
    def fmt(x: Any) -> str:
        text = f"{float(x) * scale:{'+' if signed else ''}.{n}f}"
        return (_minus(text) if signed else text) + suffix
    return fmt


FORMATS: dict[str, Callable[[Any], str]] = {
    **{f"pct{n}": _fixed(n, 100, " %") for n in range(3)},    # 0.8247 -> "82.5 %"
    **{f"p{n}": _fixed(n, 100) for n in range(3)},             # 0.8247 -> "82.5" (percent, no sign)
    **{f"+p{n}": _fixed(n, 100, signed=True) for n in range(3)},  # 0.024 -> "+2.4", −0.01 -> "−1.0"
    **{f"f{n}": _fixed(n) for n in range(5)},                  # 0.81234 -> "0.812" (f3)
    **{f"+f{n}": _fixed(n, signed=True) for n in range(5)},
    "int": lambda x: f"{round(float(x)):,}",                   # 1233879 -> "1,233,879"
    "str": str,
    "sha8": lambda x: str(x)[:8],
}


def fmt_value(value: Any, name: str | None) -> str:
    if name is None:
        return str(value) if not isinstance(value, float) else f"{value:g}"
    if name not in FORMATS:
        raise SourceError(f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    return FORMATS[name](value)


# ---------------------------------------------------------------------------------------------- generators

from benchmarks.docnumbers_tables import GENERATORS  # noqa: E402  (no torch)


# ---------------------------------------------------------------------------------------------- marker passes


@dataclass
class Finding:
    doc: str
    line: int
    marker: str
    quoted: str
    expected: str | None
    sources: tuple[str, ...]
    error: str | None = None

    def __str__(self) -> str:
        where = f"{self.doc}:{self.line}"
        if self.error:
            return f"{where}: {self.marker}: {self.error}"
        return f"{where}: {self.marker}: quoted {self.quoted.strip()!r}, {', '.join(self.sources)} gives {self.expected.strip()!r}"


def _render_number(root: Path, spec: str) -> tuple[str, tuple[str, ...]]:
    match = re.fullmatch(r"(?P<file>[^#\s]+)#(?P<key>.*?)(?:\s+fmt=(?P<fmt>\S+))?\s*", spec)
    if not match:
        raise SourceError(f"bad number marker {spec!r} (want FILE#key.path [fmt=NAME])")
    value = lookup(_load(root, match["file"]), match["key"])
    return fmt_value(value, match["fmt"]), (match["file"],)


def _render_table(root: Path, name: str, args: str) -> tuple[str, tuple[str, ...]]:
    if name not in GENERATORS:
        raise SourceError(f"unknown table generator {name!r} (known: {', '.join(sorted(GENERATORS))})")
    read: list[str] = []

    def load(rel: str, required: bool = True) -> Any:
        if rel not in read:
            read.append(rel)
        try:
            return _load(root, rel)
        except SourceError:
            if required:
                raise
            return None  # a generator may render a placeholder for a file not yet written

    try:
        out = GENERATORS[name](load, args.strip())
    except (KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"generator {name!r} failed on {', '.join(read)}: {type(exc).__name__}: {exc}") from exc
    return out, tuple(read)


def process(text: str, root: Path = ROOT, doc: str = "") -> tuple[str, list[Finding], list[Finding]]:
    """(the text with every marker regenerated, the markers whose text changed, every marker read)."""
    changed: list[Finding] = []
    seen: list[Finding] = []

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def table(match: re.Match) -> str:
        marker = f"table: {match['name']}{match['args']}"
        try:
            out, files = _render_table(root, match["name"], match["args"])
        except SourceError as exc:
            finding = Finding(doc, line_of(match.start()), marker, match["body"], None, (), str(exc))
            changed.append(finding)
            seen.append(finding)
            return match.group(0)
        body = f"\n{out}\n" if "\n" in out or match["body"].startswith("\n") else out
        finding = Finding(doc, line_of(match.start()), marker, match["body"], body, files)
        seen.append(finding)
        if body != match["body"]:
            changed.append(finding)
        return match.group(0)[: match.start("body") - match.start()] + body + "<!-- /table -->"

    def number(match: re.Match) -> str:
        marker = f"number: {match['spec']}"
        try:
            out, files = _render_number(root, match["spec"])
        except SourceError as exc:
            finding = Finding(doc, line_of(match.start()), marker, match["body"], None, (), str(exc))
            changed.append(finding)
            seen.append(finding)
            return match.group(0)
        finding = Finding(doc, line_of(match.start()), marker, match["body"], out, files)
        seen.append(finding)
        if out != match["body"]:
            changed.append(finding)
        return f"<!-- number: {match['spec']} -->{out}<!-- /number -->"

    text = TABLE_RE.sub(table, text)
    # line numbers of numbers refer to the text after the tables were regenerated
    new = NUMBER_RE.sub(number, text)
    return new, changed, seen


def run(root: Path = ROOT, write: bool = False, files: list[Path] | None = None) -> tuple[list[Finding], list[Finding]]:
    """(findings that differ or fail, every marker read) over the docs; ``write`` rewrites them."""
    _load.cache_clear()
    changed, seen = [], []
    for path in files or doc_files(root):
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        old = path.read_text()
        new, c, s = process(old, root, rel)
        changed += c
        seen += s
        if write and new != old and not any(f.error for f in c):
            path.write_text(new)
    return changed, seen


# ---------------------------------------------------------------------------------------------- weights sha256


def shipped_sha(root: Path = ROOT) -> dict[str, str]:
    """{model name: weights sha256} of the shipped presets."""
    path = root / REGISTRY
    if path.is_file():
        return {name: entry["sha256"] for name, entry in json.loads(path.read_text()).items() if entry.get("sha256")}
    text = (root / "src" / "emoadapt" / "models" / "registry.py").read_text()  # older layout
    return dict(re.findall(r'"name":\s*"([\w.-]+)".*?"sha256":\s*"([0-9a-f]{64})"', text, re.S))


def declared_shas(data: Any) -> list[tuple[str, str]]:
    """[(model, weights sha256)] that a results file declares: ``model`` + ``weights_sha256`` strings,
    or ``weights_sha256`` as {model: sha256} for a run over several models."""
    if not isinstance(data, dict):
        return []
    block = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    model = block.get("model") or data.get("model")
    sha = block.get("weights_sha256") or data.get("weights_sha256")
    if isinstance(sha, dict):
        return [(name, value) for name, value in sha.items() if isinstance(value, str)]
    return [(model, sha)] if isinstance(model, str) and isinstance(sha, str) else []


def sha_mismatches(root: Path = ROOT, superseded: set[str] | None = None) -> list[str]:
    """Results files that declare a sha256 for a shipped model name other than the shipped one."""
    shipped = shipped_sha(root)
    superseded = SUPERSEDED if superseded is None else superseded
    problems = []
    for path in sorted((root / RESULTS).rglob("*.json")):
        rel = str(path.relative_to(root))
        if rel in superseded:
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        for model, sha in declared_shas(data):
            if model in shipped and sha != shipped[model]:
                problems.append(f"{rel}: declares {model} weights {sha[:12]}…, the shipped {model} is "
                                f"{shipped[model][:12]}… (rerun it, or move its figures to docs/history.md and list "
                                f"the file in benchmarks/docnumbers.py SUPERSEDED)")
    return problems


def history_only(root: Path, seen: list[Finding]) -> list[str]:
    """SUPERSEDED files quoted outside docs/history.md."""
    return [f"{f.doc}:{f.line}: quotes {s}, a superseded model's results (only docs/history.md may)"
            for f in seen for s in f.sources if s in SUPERSEDED and f.doc != "docs/history.md"]


# ---------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a figure differs")
    parser.add_argument("--sources", action="store_true", help="list every marker and the file it reads")
    args = parser.parse_args(argv)
    changed, seen = run(ROOT, write=not args.check)
    problems = sha_mismatches(ROOT) + history_only(ROOT, seen)
    if args.sources:
        for f in seen:
            print(f"{f.doc}:{f.line}: {f.marker.split(' fmt=')[0]}  <-  {', '.join(f.sources) or '?'}")
    errors = [f for f in changed if f.error]
    if args.check:
        for f in changed:
            print(f"differs: {f}")
    else:
        for f in changed:
            print(f"{'ERROR' if f.error else 'updated'}: {f}" if f.error else
                  f"updated {f.doc}:{f.line}: {f.marker.split(' fmt=')[0]}  <-  {', '.join(f.sources)}")
        files = sorted({s for f in seen for s in f.sources})
        print(f"{len(seen)} markers in {len({f.doc for f in seen})} files, from {len(files)} results files; "
              f"{len(changed) - len(errors)} updated")
    for p in problems:
        print(f"sha256: {p}")
    if errors or problems or (args.check and changed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
