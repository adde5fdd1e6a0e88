"""Training and inference speed of EmoNet configurations on this CPU (how the `fer-cpu` preset was chosen).

    python benchmarks/model_speed.py [--repeats 3] [--out benchmarks/results/model_speed.json]

For each configuration: parameters, training images/s (AdamW, batch 64, 5 timed steps after one
warm-up) and inference images/s (batch 256), each the median of ``--repeats`` runs. Prints a markdown
table and writes ``--out`` (every run, with the provenance; random weights, so no model sha256).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from emoadapt.models.emonet import EmoNet, EmoNetConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib
from benchmarks.lib.provenance import provenance, write_json  # noqa: E402
from benchmarks.lib.speed import spread  # noqa: E402

CONFIGS = [  # (width, input px, channels)
    (0.25, 48, 1), (0.375, 48, 1), (0.5, 48, 1), (0.5, 64, 1), (0.25, 96, 3),
]


def speed(config: EmoNetConfig, batch: int = 64, steps: int = 5) -> tuple[float, float]:
    model = EmoNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.rand(batch, config.in_chans, config.input_size, config.input_size)
    y = torch.randint(0, config.num_classes, (batch,))
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train = batch * steps / (time.perf_counter() - started)
    model.eval()
    with torch.inference_mode():
        x = torch.rand(256, config.in_chans, config.input_size, config.input_size)
        model(x[:8])
        started = time.perf_counter()
        model(x)
    return train, 256 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "model_speed.json"))
    parser.add_argument("--configs", type=int, nargs="+", default=None, help="indices into CONFIGS (default: all)")
    args = parser.parse_args()
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| width | input | params | train img/s | one FER2013 epoch (min) | inference img/s |\n|---|---|---|---|---|---|")
    for width, size, channels in [CONFIGS[i] for i in args.configs] if args.configs else CONFIGS:
        config = EmoNetConfig(num_classes=7, in_chans=channels, input_size=size, width=width, batch_norm=True,
                              head="pool", hidden=(256,), dropout=0.3)
        params = sum(p.numel() for p in EmoNet(config).parameters())
        runs = [speed(config) for _ in range(args.repeats)]
        train, infer = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {width} | {size} px, {channels} ch | {params / 1e6:.2f} M | {train:.0f} | {28709 / train / 60:.1f} | "
              f"{infer:.0f} |", flush=True)
        rows.append({"width": width, "input_size": size, "channels": channels, "params": params,
                     "train_images_per_s": spread([r[0] for r in runs]),
                     "inference_images_per_s": spread([r[1] for r in runs])})
    write_json(args.out, {"what": "EmoNet training (AdamW, batch 64) and inference (batch 256) images/s, random weights",
                          "repeats": args.repeats, "rows": rows, **provenance(model=None)})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
