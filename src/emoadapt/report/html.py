"""``report.html``: the report as one self-contained page — plain Python string formatting, every
figure embedded as a base64 PNG, no script, no external resource. Every number on it is read from
the report dict (the content of report.json)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from ..results import plain_uncertainty
from .stats import EXAMPLE_KINDS

KIND_TITLES = {"confident_correct": "most confident correct", "confident_errors": "most confident errors",
               "least_confident": "least confident"}

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:1.8em}h3{margin-top:1.2em}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;
word-break:break-all}figure{display:inline-block;margin:4px;vertical-align:top;text-align:center}
figcaption{font-size:12px;max-width:280px}img{max-width:100%}.row{display:flex;flex-wrap:wrap;gap:4px}
.kind{border-left:3px solid #ddd;padding-left:6px;margin-right:10px}
.ci{color:#666;font-size:90%}.err{color:#a00}.note{color:#555;font-size:90%}
"""


def _png(out: Path, name: str | None) -> str:
    if not name:
        return ""
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _img(out: Path, name: str, alt: str, caption: str = "") -> str:
    tail = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{_png(out, name)}" alt="{escape(alt)}" title="{escape(alt)}">{tail}</figure>'


def pct(value: float | None) -> str:
    """A rate as the page shows it: one decimal, percent (the test reads it back)."""
    return "–" if value is None else f"{100 * value:.1f} %"


def _ci(interval: list[float]) -> str:
    return f'<span class="ci">[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]</span>'


def _header(report: dict) -> str:
    data = report["data"]
    rows = [("models", ", ".join(escape(m["name"]) for m in report["models"])),
            ("data", f"{escape(data['path'])} (layout {escape(data['layout'])}, {data['images']} images)"),
            ("split", escape(data["split"]) + (f" of manifest {escape(data['manifest'])}" if data["manifest"] else "")),
            ("faces (--source)", escape(data["source"] or "none")), ("date", escape(report["date"])),
            ("run time", f"{report['seconds']:.0f} s")]
    table = "".join(f'<tr><th class="l">{k}</th><td class="l">{v}</td></tr>' for k, v in rows)
    command = f"<pre>{escape(report['command'])}</pre>" if report.get("command") else ""
    return f"<h1>{escape(report['title'])}</h1><table>{table}</table><p>Command:</p>{command}"


def _summary(report: dict) -> str:
    rows = []
    for i, m in enumerate(report["models"]):
        metrics, curves = m["metrics"], m["calibration"]
        ece = " → ".join(f"{c['ece']:.3f}" for c in curves.values())
        rows.append(f'<tr><td class="l">{escape(m["name"])}</td><td>{metrics["n"]}</td>'
                    f'<td><span id="accuracy-{i}" class="accuracy" data-value="{metrics["accuracy"]}">'
                    f'{pct(metrics["accuracy"])}</span> {_ci(metrics["accuracy_ci"])}</td>'
                    f'<td><span id="macro-f1-{i}">{pct(metrics["macro_f1"])}</span> {_ci(metrics["macro_f1_ci"])}</td>'
                    f'<td>{ece}</td><td>{len(m["errors"])}</td><td class="l">{escape(m["mapping"].upper())}</td></tr>')
    return ("<h2>Summary</h2><table><tr><th class='l'>model</th><th>images</th><th>accuracy [95 % CI]</th>"
            "<th>macro-F1 [95 % CI]</th><th>ECE</th><th>unreadable</th><th class='l'>classes</th></tr>"
            + "".join(rows) + "</table><p class='note'>Intervals: percentile bootstrap over images "
            f"({report['settings']['bootstrap']} resamples). ECE: {report['settings']['bins']} equal-width "
            "confidence bins; with a calibration temperature, before → after it. Probabilities as "
            "<code>emoadapt predict</code> gives them (the model's input fit, test-time flip, calibration).</p>")


def _per_class(m: dict) -> str:
    rows = "".join(f'<tr><td class="l">{escape(c)}</td><td>{pct(r["precision"])} {_ci(r["precision_ci"])}</td>'
                   f'<td>{pct(r["recall"])} {_ci(r["recall_ci"])}</td><td>{pct(r["f1"])} {_ci(r["f1_ci"])}</td>'
                   f'<td>{r["support"]}</td></tr>' for c, r in m["metrics"]["per_class"].items())
    return ("<table><tr><th class='l'>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            + rows + "</table>")


def _confusion_table(m: dict) -> str:
    classes = m["metrics"]["classes"]
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    rows = "".join(
        f'<tr><th class="l">{escape(c)}</th>' + "".join(
            f"<td>{n} <span class='ci'>({100 * r:.0f} %)</span></td>"
            for n, r in zip(m["metrics"]["confusion"][i], m["metrics"]["confusion_normalised"][i])) + "</tr>"
        for i, c in enumerate(classes))
    return f"<table><tr><th class='l'>true \\ predicted</th>{head}</tr>{rows}</table>"


def _calibration(m: dict, out: Path) -> str:
    items = "".join(f"<li>{escape(name)}: ECE {c['ece']:.3f}, mean confidence {pct(c['mean_confidence'])}, "
                    f"accuracy {pct(c['accuracy'])}</li>" for name, c in m["calibration"].items())
    note = ("" if m["temperature"] not in (None, 1.0) else
            "<p class='note'>The model has no calibration temperature, so there is no before-scaling curve.</p>")
    return f"<h3>Calibration</h3><ul>{items}</ul>{note}" + _img(out, m["figures"]["calibration"], "reliability diagram")


def _examples(m: dict, out: Path) -> str:
    parts = ["<h3>Examples per class</h3><p class='note'>DnCShap overlays explain the predicted class "
             "(red: regions that raised its probability; values above the 70th percentile of |φ|, colour bar in "
             "probability per pixel). Thumbnails without a colour bar are beyond the explanation budget.</p>"]
    examples_dir = out / "examples"
    for c in m["classes"]:
        mine = [e for e in m["examples"] if e["true"] == c]
        if not mine:
            continue
        parts.append(f"<h4>{escape(c)}</h4>")
        groups = []
        for kind in EXAMPLE_KINDS:
            chosen = sorted((e for e in mine if e["kind"] == kind), key=lambda e: e["rank"])
            if not chosen:
                groups.append(f"<div class='kind'><p><b>{KIND_TITLES[kind]}</b></p><p class='note'>none</p></div>")
                continue
            figures = []
            for e in chosen:
                ex = e["explanation"]
                cost = f"; {ex['evaluations']} evaluations, {ex['seconds']:.2f} s" if ex else "; not explained"
                caption = (f"{escape(Path(e['path']).name)}<br>true {escape(e['true'])}, predicted "
                           f"{escape(e['predicted'])} ({e['confidence']:.2f}); p(true) {e['p_true']:.2f}{cost}")
                if e.get("uncertain"):  # the same verdict as predict, the web page and the API
                    caption += f"<br><b>uncertain</b>: {escape(plain_uncertainty(e.get('uncertain_reason')))}"
                if "valence" in e:  # a model with affect heads (issue #23)
                    top = max(e["distribution"], key=e["distribution"].get)
                    caption += (f"<br>valence {e['valence']:.1f}, arousal {e['arousal']:.1f} (1–9); "
                                f"distribution: {escape(top)} {e['distribution'][top]:.0%}")
                figures.append(_img(examples_dir, e["image"], f"{c} {kind} {e['rank'] + 1}", caption))
                if e.get("layer_grid"):
                    figures.append(_img(examples_dir, e["layer_grid"], f"{c} {kind} {e['rank'] + 1} layers",
                                        "layer-wise DnCShap of the same image and class"))
            groups.append(f"<div class='kind'><p><b>{KIND_TITLES[kind]}</b></p><div class='row'>{''.join(figures)}"
                          "</div></div>")
        parts.append(f"<div class='row'>{''.join(groups)}</div>")
    return "".join(parts)


def _errors(m: dict) -> str:
    unlabelled = (f"<p class='note'>{m['unlabelled']} images without one of these classes were left out.</p>"
                  if m.get("unlabelled") else "")
    if not m["errors"]:
        return unlabelled + "<p class='note'>Every image was readable.</p>"
    items = "".join(f"<li>{escape(e['path'])}: {escape(e['reason'])}</li>" for e in m["errors"])
    return (unlabelled + f"<h3 class='err'>Unreadable images ({len(m['errors'])}), left out</h3>"
            f"<ul class='err'>{items}</ul>")


def _model(m: dict, out: Path) -> str:
    missing = (f"<p class='note'>Taps not in this model, skipped: {escape(', '.join(m['missing_taps']))}</p>"
               if m["missing_taps"] else "")
    weights = f"{escape(m['weights'] or '-')} (sha256 {escape((m['sha256'] or '-')[:16])}…)"
    restricted = (" (FER probabilities restricted to the mapped classes and renormalised)"
                  if len(m["model_classes"]) != len(m["classes"]) else "")
    return (f"<h2>{escape(m['name'])}</h2><p class='note'>{escape(m['architecture'])}, {m['input_size']} px, "
            f"{m['in_chans']} channel(s); weights {weights}; scored in {escape(', '.join(m['classes']))}"
            f"{restricted}"
            f"</p>{missing}<h3>Metrics</h3>{_per_class(m)}<h3>Confusion matrix</h3>{_confusion_table(m)}"
            + _img(out, m["figures"]["confusion"], "confusion matrix") + _calibration(m, out) + _examples(m, out)
            + _errors(m))


def _embeddings(report: dict, out: Path) -> str:
    if not report["embeddings"]:
        return ""
    parts = ["<h2>Embedding plots</h2><p class='note'>Activations averaged over positions, standardised and "
             "projected to 2-D; circles: the report's images, triangles: FER2013 faces (with --source); grey: "
             "no class.</p>"]
    for e in report["embeddings"]:
        counts = "; ".join(f"{escape(name)} at {escape(c['tap'])}: {c['images']} images, {c['faces']} faces"
                           for name, c in e["models"].items())
        parts.append(f"<p>{counts}</p>" + _img(out, e["file"], f"embedding {e['file']}"))
    return "".join(parts)


def render_html(report: dict[str, Any], out: str | Path) -> str:
    out = Path(out)
    body = (_header(report) + _summary(report) + _embeddings(report, out)
            + "".join(_model(m, out) for m in report["models"]))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
