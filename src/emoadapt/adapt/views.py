"""Fixed banks of augmented views: random resized crops drawn once from a seed.

Adaptation on a 2-core CPU caches what the frozen layers compute, so augmentation cannot be drawn
afresh every step. Instead each training image gets ``V`` views drawn once — view 0 is the image
as is, view 1 its mirror image, views 2… random resized crops (area fraction ``scale``, aspect
``ratio``, mirrored half of the time) — and training samples one view per image per step. The
same crop boxes can be rendered at two sizes (a 160 px teacher and a 64 px student see the same
region), which is what distillation needs.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..errors import EmoadaptError


def crop_boxes(count: int, views: int, seed: int, *, scale: tuple[float, float] = (0.35, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """Crop boxes for ``count`` images, ``views`` each.

    Returns:
        (views, count, 5) float64: ``x0, y0, x1, y1`` as fractions of the image side, then a
        mirror flag (1.0 = flip left-right). View 0 is the whole image, view 1 the whole image
        mirrored (when ``views`` ≥ 2).
    """
    if views < 1:
        raise EmoadaptError(f"views must be at least 1, got {views}")
    rng = np.random.default_rng(seed)
    boxes = np.zeros((views, count, 5))
    boxes[:, :, 2:4] = 1.0
    if views >= 2:
        boxes[1, :, 4] = 1.0
    for v in range(2, views):
        boxes[v] = random_boxes(rng, count, scale=scale, ratio=ratio)
    return boxes


def random_boxes(rng: np.random.Generator, count: int, *, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """``count`` random resized crop boxes (area fraction in ``scale``, aspect in ``ratio``,
    mirrored half of the time), (count, 5) as in :func:`crop_boxes`."""
    area = rng.uniform(*scale, size=count)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=count))
    width = np.minimum(np.sqrt(area * aspect), 1.0)
    height = np.minimum(np.sqrt(area / aspect), 1.0)
    x0 = rng.uniform(0, 1, size=count) * (1 - width)
    y0 = rng.uniform(0, 1, size=count) * (1 - height)
    return np.stack([x0, y0, x0 + width, y0 + height, rng.uniform(size=count) < 0.5], axis=1)


def render_views(images: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut the boxes out of uint8 images and resize them (bilinear) to ``size``.

    Args:
        images: (N, S, S, C) uint8.
        boxes: (V, N, 5) from :func:`crop_boxes`.
    Returns:
        (V, N, size, size, C) uint8.
    """
    views, count = boxes.shape[:2]
    if count != len(images):
        raise EmoadaptError(f"{count} boxes per view for {len(images)} images")
    channels = images.shape[-1]
    out = np.empty((views, count, size, size, channels), dtype=np.uint8)
    side_y, side_x = images.shape[1:3]
    for n, image in enumerate(images):
        picture = Image.fromarray(image[:, :, 0] if channels == 1 else image)
        for v in range(views):
            x0, y0, x1, y1, mirror = boxes[v, n]
            crop = picture.resize((size, size), Image.Resampling.BILINEAR,
                                  box=(x0 * side_x, y0 * side_y, x1 * side_x, y1 * side_y))
            if mirror:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            pixels = np.asarray(crop)
            out[v, n] = pixels[:, :, None] if channels == 1 else pixels
    return out
