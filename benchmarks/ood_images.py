"""Generated images unlike Emotion6 photos, for measuring the OOD score (issue #22): matplotlib
plots, rendered text documents, UI-like screenshots, flat colours (black, white, grey, random) and
noise. Deterministic for a seed; no files, no downloads.

    from ood_images import generate
    images = generate(100, seed=1)   # list of (kind, PIL.Image RGB)
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

KINDS = ("plot", "document", "screenshot", "flat", "noise")
WORDS = ("the", "model", "result", "table", "value", "report", "data", "figure", "section", "page", "total",
         "revenue", "quarter", "update", "settings", "account", "profile", "search", "file", "open", "save")


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(240, 900)), int(rng.integers(200, 700))


def plot(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    kind = rng.integers(3)
    x = np.arange(20)
    if kind == 0:
        for _ in range(rng.integers(1, 4)):
            ax.plot(x, np.cumsum(rng.normal(size=20)))
    elif kind == 1:
        ax.bar(x[:8], rng.uniform(1, 10, 8))
    else:
        ax.scatter(rng.normal(size=60), rng.normal(size=60), s=8)
    ax.set_title(" ".join(rng.choice(WORDS, 3)))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _text_lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int], colour) -> None:
    left, top, right, bottom = box
    y = top
    while y < bottom - 12:
        line = " ".join(rng.choice(WORDS, int(rng.integers(3, 12))))
        draw.text((left, y), line[: max(1, (right - left) // 6)], fill=colour)
        y += int(rng.integers(12, 18))


def document(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    image = Image.new("RGB", (width, height), (255, 255, 255) if rng.random() < 0.8 else (245, 240, 225))
    draw = ImageDraw.Draw(image)
    draw.text((20, 10), " ".join(rng.choice(WORDS, 2)).upper(), fill=(0, 0, 0))
    _text_lines(draw, rng, (20, 34, width - 20, height - 10), (30, 30, 30))
    return image


def screenshot(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    background = tuple(int(v) for v in rng.integers(220, 256, 3)) if rng.random() < 0.7 else (32, 33, 36)
    ink = (20, 20, 20) if sum(background) > 300 else (230, 230, 230)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    bar = tuple(int(v) for v in rng.integers(0, 200, 3))
    draw.rectangle((0, 0, width, 28), fill=bar)
    draw.text((8, 8), " ".join(rng.choice(WORDS, 3)), fill=(255, 255, 255))
    side = int(rng.integers(0, width // 4))
    if side:
        draw.rectangle((0, 28, side, height), fill=tuple(int(v * 0.9) for v in background))
        _text_lines(draw, rng, (6, 40, side, height), ink)
    for _ in range(int(rng.integers(2, 6))):  # buttons and fields
        x, y = int(rng.integers(side + 10, max(side + 11, width - 110))), int(rng.integers(40, max(41, height - 30)))
        draw.rounded_rectangle((x, y, x + 100, y + 24), radius=4, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.text((x + 8, y + 6), str(rng.choice(WORDS)), fill=(255, 255, 255))
    _text_lines(draw, rng, (side + 12, 40, width - 10, height - 10), ink)
    return image


def flat(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    choice = rng.integers(4)
    colour = [(0, 0, 0), (255, 255, 255), (128, 128, 128), tuple(int(v) for v in rng.integers(0, 256, 3))][choice]
    return Image.new("RGB", (width, height), colour)


def noise(rng: np.random.Generator) -> Image.Image:
    width, height = _size(rng)
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # blocky colour noise
    return Image.fromarray(small).resize((width, height), Image.Resampling.NEAREST)


MAKERS = {"plot": plot, "document": document, "screenshot": screenshot, "flat": flat, "noise": noise}


def generate(count: int, seed: int) -> list[tuple[str, Image.Image]]:
    """``count`` images, the kinds in turn, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [(KINDS[i % len(KINDS)], MAKERS[KINDS[i % len(KINDS)]](rng)) for i in range(count)]
