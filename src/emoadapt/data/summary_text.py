"""The readable text of a dataset summary (:func:`emoadapt.data.summarize`): what ``emoadapt data
summary`` prints and what ``benchmarks/data_summary.py`` records beside the figures."""

from __future__ import annotations

from typing import Any


def _table(rows: list[list[Any]], header: list[str]) -> str:
    """Right-aligned text table; the first column is left-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def class_split_table(classes: list[str], split_classes: dict[str, dict[str, int]]) -> str:
    """Counts per class (rows) and split (columns), with totals, as an aligned text table."""
    splits = list(split_classes)
    rows = [[c] + [split_classes[s].get(c, 0) for s in splits] + [sum(split_classes[s].get(c, 0) for s in splits)]
            for c in classes]
    rows.append(["total"] + [sum(split_classes[s].values()) for s in splits] +
                [sum(sum(v.values()) for v in split_classes.values())])
    return _table(rows, ["class"] + splits + ["total"])


def format_summary(summary: dict[str, Any]) -> str:
    """The readable report printed by ``emoadapt data summary``."""
    out = [f"dataset  {summary['name']}  ({summary['root']})",
           f"samples  {summary['samples']}" + (f" in {summary['files']} files" if summary["files"] != summary["samples"]
                                               else "")]
    if summary.get("subjects"):
        out.append(f"subjects {summary['subjects']}")
    out += ["", class_split_table(list(summary["classes"]), summary["split_classes"])]
    if "ier" in summary:
        out += ["", "IER classes: " + ", ".join(f"{c} {n}" for c, n in summary["ier"].items())]
    if "vote_agrees" in summary:
        agree = ", ".join(f"{c} {n}/{summary['classes'][c]}" for c, n in summary["vote_agrees"].items())
        out.append(f"folder = unique vote argmax: {agree}")
    sizes = summary.get("sizes")
    if sizes:
        out.append("")
        out.append(f"image sizes (headers of {sizes['sampled']} of {sizes['files']} files):")
        for axis in ("width", "height"):
            if sizes[axis]:
                out.append(f"  {axis:<6} min {sizes[axis]['min']}  median {sizes[axis]['median']:g}  "
                           f"max {sizes[axis]['max']}")
        out.append("  modes  " + ", ".join(f"{m} {n}" for m, n in sizes["modes"].items()))
        out.append("  format " + ", ".join(f"{m} {n}" for m, n in sizes["formats"].items()))
        for bad in sizes["unreadable"][:10]:
            out.append(f"  unreadable: {bad['path']} ({bad['reason']})")
    return "\n".join(out)
