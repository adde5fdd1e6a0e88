"""Training and inference speed of EmoNet configurations on this CPU (how the `fer-cpu` preset was chosen).

    python benchmarks/model_speed.py

For each configuration: parameters, training images/s (AdamW, batch 64, 5 timed steps after one
warm-up) and inference images/s (batch 256). Prints a markdown table.
"""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

from emoadapt.models.emonet import EmoNet, EmoNetConfig

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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| width | input | params | train img/s | one FER2013 epoch (min) | inference img/s |\n|---|---|---|---|---|---|")
    for width, size, channels in CONFIGS:
        config = EmoNetConfig(num_classes=7, in_chans=channels, input_size=size, width=width, batch_norm=True,
                              head="pool", hidden=(256,), dropout=0.3)
        params = sum(p.numel() for p in EmoNet(config).parameters())
        train, infer = speed(config)
        print(f"| {width} | {size} px, {channels} ch | {params / 1e6:.2f} M | {train:.0f} | {28709 / train / 60:.1f} | "
              f"{infer:.0f} |", flush=True)


if __name__ == "__main__":
    main()
