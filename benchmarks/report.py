"""Turn the JSON results of the benchmark scripts into the markdown tables of docs/benchmarks.md.

    python benchmarks/report.py            # prints markdown for every results file present
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def fer_tables(data: dict) -> str:
    names = list(data["models"])
    keys = list(next(iter(data["models"].values()))["scores"])
    lines = [f"Command: `{data['command']}` — {data['date']}, torch threads {data['torch_threads']}.", "",
             "| test set | " + " | ".join(f"{n} acc / macro-F1" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in keys:
        cells = []
        for n in names:
            s = data["models"][n]["scores"].get(key)
            cells.append(f"{pct(s['accuracy'])} / {s['macro_f1']:.3f}" if s else "—")
        lines.append(f"| {key} (n={data['models'][names[0]]['scores'][key]['n']}) | " + " | ".join(cells) + " |")
    lines += ["", "| model | params | input | inference img/s (batch 256) |", "|---|---|---|---|"]
    for n in names:
        m = data["models"][n]
        lines.append(f"| {n} | {m['params']:,} | {m['input']} | {m['inference_img_per_s']:.0f} |")
    if "training" in data:
        t = data["training"]
        lines += ["", f"Training: {t['epochs']} epochs, median {t['median_epoch_seconds']:.0f} s per epoch "
                      f"({t['total_hours']:.2f} h in all, on a shared 2-core CPU); best PublicTest epoch {t['best_epoch']} "
                      f"({pct(t['best_publictest'])} %)."]
    return "\n".join(lines)


def adaptation_tables(data: dict) -> str:
    counts = f"; split counts {data['split_counts']}" if "split_counts" in data else ""
    lines = [f"Command: `{data['command']}` — {data['date']}{counts}.", ""]
    if "linear_probe" in data:
        lp = data["linear_probe"]
        lines.append(f"Linear probe (ImageNet MobileNetV2 {data['size']} px features + logistic regression, C={lp['C']} "
                     f"chosen on val): val {pct(lp['val_acc'])} %, **test {pct(lp['test']['accuracy'])} %**, "
                     f"macro-F1 {lp['test']['macro_f1']:.3f}.")
    if "zero_shot" in data:
        z = data["zero_shot"]
        lines.append(f"FER model zero-shot (7→4 mapped, grey): test {pct(z['accuracy'])} %, macro-F1 {z['macro_f1']:.3f}.")
    lines += ["", "| configuration | val acc (mean ± std) | test acc (mean ± std) | test macro-F1 | test recall happy / sad / hate / anger (best-val seed) | vote-agreeing test subset |",
              "|---|---|---|---|---|---|"]
    for name, r in data["configs"].items():
        best = max(r["runs"], key=lambda row: row["val_acc"])
        recall = " / ".join(pct(best["test"]["per_class"][c]["recall"]) for c in ("happy", "sad", "hate", "anger"))
        agree = best.get("agree_acc")
        lines.append(f"| {name} | {pct(r['val_acc']['mean'])} ± {pct(r['val_acc']['std'])} | "
                     f"{pct(r['test_acc']['mean'])} ± {pct(r['test_acc']['std'])} | "
                     f"{r['test_macro_f1']['mean']:.3f} | {recall} | {pct(agree) if agree is not None else '—'} |")
    return "\n".join(lines)


def kfold_table(data: dict) -> str:
    lines = [f"Command: `{data['command']}` — {data['date']}.", "",
             "| fold | val acc | test acc | test macro-F1 |", "|---|---|---|---|"]
    for row in data["folds"]:
        lines.append(f"| {row['fold']} | {pct(row['val_acc'])} | {pct(row['test']['accuracy'])} | "
                     f"{row['test']['macro_f1']:.3f} |")
    lines.append(f"| **mean ± std** | | **{pct(data['test_acc']['mean'])} ± {pct(data['test_acc']['std'])}** | "
                 f"{data['test_macro_f1']['mean']:.3f} ± {data['test_macro_f1']['std']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    for name, render in (("fer.json", fer_tables), ("adaptation/mobilenet.json", adaptation_tables),
                         *((f"adaptation/{p.name}", kfold_table) for p in sorted(RESULTS.glob("adaptation/kfold*.json"))), ("adaptation/emonet.json", adaptation_tables),
                         ("adaptation/finetune.json", adaptation_tables),
                         *((f"adaptation/{p.name}", adaptation_tables) for p in sorted(RESULTS.glob("adaptation/distill*.json")))):
        path = RESULTS / name
        if path.exists():
            print(f"### {name}\n")
            print(render(json.loads(path.read_text())))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
