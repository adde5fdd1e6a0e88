"""Pixel formats → 8-bit ``RGB`` or ``L`` without losing or inventing content (used by
:func:`emoadapt.data.decode.decode_image`, which checks sizes and files first)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageDecodeError

_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}


def array_to_image(array: np.ndarray, label: str) -> Image.Image:
    """An array (H, W), (H, W, 3) or (H, W, 4) already checked for shape and size → the Pillow
    image a file with the same pixels would give: ``uint8`` as is, ``bool`` as 0/255, ``uint16``
    grey as an ``I;16`` file, floats within 0–1 scaled by 255, other values within 0–255 rounded,
    integers within 0–65535 divided by 257. Raises ``ImageDecodeError`` for other dtypes, NaN or
    values outside those ranges."""
    kind = array.dtype.kind
    if kind not in "buif":
        raise ImageDecodeError(label, "unsupported-mode", f"unsupported array dtype {array.dtype}")
    if kind == "b":
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16 and array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array))  # I;16, as a file
    elif array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageDecodeError(label, "corrupt", "the array has NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if kind == "f" and low >= 0 and high <= 1.0:
            values = values * 255.0
        elif low >= 0 and high <= 255:
            pass
        elif kind in "ui" and low >= 0 and high <= 65535:
            values = values / 257.0
        else:
            raise ImageDecodeError(label, "corrupt", f"array values {low:g}..{high:g} are outside 0..1 "
                                   "(float) and 0..255 (8 bit)")
        array = np.rint(values).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA


def convert_mode(image: Image.Image, mode: str, background: tuple[int, int, int], label: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit ``RGB`` or ``L`` without losing or inventing content."""
    src = image.mode
    if src == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif src == "PA":
        image = image.convert("RGBA")
    elif src.startswith("I;16") or src in ("I", "F"):
        image = to_8bit(image)
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        image = Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(label, "unsupported-mode", f"cannot convert {src} to {mode}: {exc}") from None


def to_8bit(image: Image.Image) -> Image.Image:
    """Rescale a high-bit-depth grey image to 8 bits.

    * ``I;16*`` (0..65535): divide by 257, so 65535 → 255 and 0 → 0.
    * ``I`` (32-bit int): values already within 0..255 are kept; within 0..65535 they are
      treated as 16 bit; otherwise the range [min, max] is stretched to 0..255.
    * ``F`` (float): values within [0, 1] are treated as intensities (× 255); otherwise the
      range [min, max] is stretched to 0..255. NaN becomes 0.
    """
    values = np.asarray(image, dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "I" and low >= 0 and high <= 255:
        scaled = values
    elif image.mode == "I" and low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1.0:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
