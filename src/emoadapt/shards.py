"""Sharded batch prediction over very large collections: each rank (a torchrun process, or one task
of a job array with ``--shard i/n``) predicts its contiguous block of the sorted input list into its
own part file, and :func:`merge_parts` joins the parts in rank order, so the merged file equals a
single-process run row for row.

A part ``results.part-00001-of-00004.csv`` has a sidecar ``results.part-00001-of-00004.csv.json``
written when the rank starts: ``{"shard": 1, "of": 4, "images": <block size>, "first": <path>,
"last": <path>}``. The merge checks every part is there, counts each part's rows against its
sidecar and finds duplicated paths; with the input list (``inputs=``) it also names the missing
images. Any problem makes it report and return ``ok: False`` (``emoadapt merge`` exits 1).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

from .errors import EmoadaptError
from .fileio import atomic_write_bytes, atomic_write_json
from .results import path_from_text

T = TypeVar("T")

PART = re.compile(r"^(?P<stem>.+)\.part-(?P<shard>\d{5})-of-(?P<of>\d{5})(?P<suffix>\.csv|\.jsonl)$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n; ``EmoadaptError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise EmoadaptError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def shard_from_env(environ: dict | None = None) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when run under torchrun (or any launcher that sets them) with more than
    one process, else ``None``."""
    environ = os.environ if environ is None else environ
    try:
        rank, world = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise EmoadaptError("RANK and WORLD_SIZE must be integers") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise EmoadaptError(f"RANK {rank} is not in 0..{world - 1} (WORLD_SIZE {world})")
    return rank, world


def cores_per_rank(environ: dict | None = None) -> int:
    """Usable cores divided by the processes on this node (``LOCAL_WORLD_SIZE``, set by torchrun),
    at least 1: the default thread count of each rank, so N ranks do not oversubscribe the cores."""
    environ = os.environ if environ is None else environ
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


def shard_block(items: Sequence[T], shard: int, of: int) -> list[T]:
    """The ``shard``-th of ``of`` contiguous blocks of ``items`` (sizes differ by at most one); the
    blocks of 0..of-1 concatenated are ``items``."""
    n = len(items)
    return list(items[shard * n // of:(shard + 1) * n // of])


def part_path(output: str | Path, shard: int, of: int) -> Path:
    """``results.csv`` → ``results.part-00001-of-00004.csv``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.part-{shard:05d}-of-{of:05d}{output.suffix}")


def write_sidecar(part: Path, shard: int, of: int, block: Sequence[Path]) -> None:
    """What the merge checks a part against (see the module docstring)."""
    atomic_write_json(Path(f"{part}.json"), {"shard": shard, "of": of, "images": len(block),
                                             "first": str(block[0]) if block else None,
                                             "last": str(block[-1]) if block else None})


@dataclass
class MergeReport:
    """What :func:`merge_parts` found: ``rows`` written, ``missing_parts`` (shard numbers),
    ``short_parts`` ({part: (rows, expected)}), ``duplicates`` (paths seen more than once),
    ``missing`` (input paths with no row; only with ``inputs``)."""

    rows: int = 0
    parts: int = 0
    missing_parts: list[int] = field(default_factory=list)
    short_parts: dict[str, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing_parts or self.short_parts or self.duplicates or self.missing)

    def lines(self) -> list[str]:
        """One human-readable line per problem."""
        out = [f"part {i} is missing (no file)" for i in self.missing_parts]
        out += [f"{name}: {got} rows, its shard has {want} images" for name, (got, want) in self.short_parts.items()]
        out += [f"duplicated: {path}" for path in self.duplicates]
        out += [f"missing: {path}" for path in self.missing]
        return out


def find_parts(output: str | Path) -> list[Path]:
    """The part files of ``output`` beside it, in shard order."""
    output = Path(output)
    parts = [p for p in output.parent.glob(f"{output.stem}.part-*-of-*{output.suffix}")
             if (m := PART.match(p.name)) and m.group("stem") == output.stem]
    return sorted(parts, key=lambda p: int(PART.match(p.name).group("shard")))


def _rows(part: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(CSV header line or None for JSONL, [(path, line)]) of one part; a torn last line is left out."""
    try:
        text = part.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EmoadaptError(f"cannot read {part}: {exc}") from None
    lines = text.split("\n")[:-1]  # a line without its newline was cut by a kill: not a row
    if part.suffix == ".jsonl":
        return None, [(json.loads(line)["path"], line) for line in lines if line.strip()]
    if not lines:
        return None, []
    return lines[0], [(path_from_text(next(csv.reader([line]))[0]), line) for line in lines[1:]]


def merge_parts(output: str | Path, parts: Sequence[Path] | None = None,
                inputs: Sequence[Path] | None = None) -> MergeReport:
    """Join ``parts`` (default: :func:`find_parts`) into ``output`` (written atomically, rows in
    part order, the first row of a duplicated path kept) and check them; see :class:`MergeReport`."""
    output = Path(output)
    parts = list(parts) if parts else find_parts(output)
    if not parts:
        raise EmoadaptError(f"no part files {output.stem}.part-*-of-*{output.suffix} beside {output}")
    report = MergeReport(parts=len(parts))
    counts = {int(m.group("of")) for p in parts if (m := PART.match(p.name))}
    if len(counts) > 1:
        raise EmoadaptError(f"the parts come from runs with different shard counts: {sorted(counts)}")
    if counts:
        present = {int(PART.match(p.name).group("shard")) for p in parts if PART.match(p.name)}
        report.missing_parts = sorted(set(range(counts.pop())) - present)
    header, body, seen = None, [], set()
    for part in parts:
        part_header, rows = _rows(part)
        if part_header is not None:
            if header is not None and part_header != header:
                raise EmoadaptError(f"{part} has other columns than the first part: {part_header}")
            header = part_header
        sidecar = Path(f"{part}.json")
        if sidecar.exists():
            expected = int(json.loads(sidecar.read_text())["images"])
            if len({path for path, _ in rows}) != expected:
                report.short_parts[part.name] = (len({path for path, _ in rows}), expected)
        for path, line in rows:
            if path in seen:
                report.duplicates.append(path)
                continue
            seen.add(path)
            body.append(line)
    if inputs is not None:
        report.missing = [str(p) for p in inputs if os.fspath(p) not in seen]
    report.rows = len(body)
    text = "".join(line + "\n" for line in ([header] if header is not None else []) + body)
    atomic_write_bytes(output, text.encode("utf-8"))
    return report

