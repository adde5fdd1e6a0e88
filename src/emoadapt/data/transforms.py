"""The few image transforms emoadapt needs, on Pillow images and torch tensors (no torchvision).

Colour order is RGB everywhere; tensors are float32 in [0, 1] with shape (C, H, W) or (N, C, H, W)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the short side is ``size`` px (bilinear, antialiased), then crop the centre square."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def image_to_uint8(image: Image.Image) -> np.ndarray:
    """(H, W, C) uint8 array; grey images get C = 1."""
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def uint8_to_tensor(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) or (H, W, C) uint8 → (N, C, H, W) / (C, H, W) float32 in [0, 1].

    Computed in NumPy (a new array: inputs may be read-only), bit-identical to torch's
    ``permute(...).float().div_(255)``: torch would run these small element-wise ops on its
    intra-op thread pool, which costs tens of ms per image on a busy 2-core machine and, called
    from the decode threads of :mod:`emoadapt.pipeline`, starts one pool per thread."""
    array = np.asarray(batch, dtype=np.uint8)
    array = array.transpose(0, 3, 1, 2) if array.ndim == 4 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / np.float32(255.0))


#: ITU-R 601-2 luma weights, the ones Pillow's ``convert("L")`` uses
LUMA = (0.299, 0.587, 0.114)


def rgb_to_grey(batch: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB → (N, 1, H, W) luma, as Pillow's ``convert("L")`` (without its rounding)."""
    weights = torch.tensor(LUMA, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * weights).sum(dim=1, keepdim=True)


def image_to_tensor(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Decoded image → (C, size, size) float tensor in [0, 1]; ``channels`` is 1 (grey) or 3 (RGB)."""
    image = image.convert("L" if channels == 1 else "RGB")
    return uint8_to_tensor(image_to_uint8(resize_center_crop(image, size)))


def fit_images(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (N, S, S, C) → (N, size, size, channels): grey ↔ RGB and a bilinear resize per image."""
    if images.shape[1:] == (size, size, channels):
        return images
    mode = "L" if channels == 1 else "RGB"
    fitted = np.zeros((len(images), size, size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(image[:, :, 0] if image.shape[-1] == 1 else image).convert(mode)
        if picture.size != (size, size):
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
        fitted[i] = np.asarray(picture).reshape(size, size, channels)
    return fitted


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 images (…, C) with ``channels`` channels: grey (…, 1) is repeated to (…, 3)."""
    if images.shape[-1] == channels:
        return images
    if images.shape[-1] == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    from ..errors import EmoadaptError

    raise EmoadaptError(f"cannot match {images.shape[-1]} source channels to {channels} target channels")
