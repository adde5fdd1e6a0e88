"""Safe image decoding: the one function every reader, command and server in emoadapt uses.

``decode_image`` turns a file path or raw bytes into a correct ``PIL.Image`` in mode ``RGB`` or
``L`` — or raises :class:`~emoadapt.errors.ImageDecodeError` naming the file and the reason.
It never returns a silently wrong picture:

* EXIF orientation is applied (a phone photo shot in portrait comes out upright);
* every Pillow mode is converted explicitly: ``1``, ``L``, ``P``, ``RGB`` as usual; modes with
  alpha (``LA``, ``RGBA``, ``PA``, ``P`` with a transparency entry) are composited on a
  background (white by default) instead of dropping alpha, which would reveal whatever colour
  hides under transparent pixels; ``CMYK`` and ``YCbCr`` via Pillow's converters; the
  high-bit-depth modes ``I;16*``, ``I`` and ``F`` are rescaled to 0..255 (see ``_to_8bit``)
  instead of being clipped, which would turn most 16-bit images white;
* animated images (GIF, APNG, WebP, multi-page TIFF) give their first frame;
* images with more than ``max_pixels`` pixels are refused *before* their pixels are decoded
  (decompression bombs);
* zero-byte, truncated, corrupt and non-image files raise ``ImageDecodeError``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError

#: Default pixel limit (width × height): 50 megapixels, e.g. 8660 × 5773. Large enough for any
#: camera photo, small enough that a decompression bomb cannot exhaust memory (RGB float32 of
#: 50 Mpx is 600 MB).
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}


def decode_image(
    source: ImageSource,
    *,
    mode: str = "RGB",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
) -> Image.Image:
    """Decode ``source`` (a path or the bytes of a file) into a loaded image in ``mode``.

    Args:
        source: file path or raw file bytes.
        mode: ``"RGB"`` (3 channels, 8 bit) or ``"L"`` (grey, 8 bit).
        max_pixels: refuse images with more than this many pixels (width × height).
        background: RGB colour that transparent pixels are composited on.
        name: name used in error messages for byte input (default ``"<bytes>"``).

    Returns:
        A fully loaded ``PIL.Image.Image`` in ``mode``, EXIF-upright, first frame only.

    Raises:
        ImageDecodeError: reason ``missing``, ``empty``, ``not-an-image``, ``too-many-pixels``,
            ``truncated``, ``corrupt`` or ``unsupported-mode``.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    label, data = _read_bytes(source, name)
    if len(data) == 0:
        raise ImageDecodeError(label, "empty", "the file has zero bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(label, "not-an-image", "Pillow does not recognise the format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(label, "too-many-pixels", str(exc)) from None
    except Exception as exc:  # a header so broken (or cut short) that Pillow fails while identifying it
        raise ImageDecodeError(label, _failure_reason(exc), f"{type(exc).__name__}: {exc}") from None

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(label, "corrupt", f"size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            label, "too-many-pixels",
            f"{width}x{height} = {width * height:,} pixels > limit {max_pixels:,}; raise max_pixels if you trust the file",
        )
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(label, "too-many-pixels", str(exc)) from None
    except OSError as exc:
        raise ImageDecodeError(label, _failure_reason(exc), str(exc)) from None
    except Exception as exc:  # Pillow raises SyntaxError, ValueError, struct.error... on bad data
        raise ImageDecodeError(label, "corrupt", f"{type(exc).__name__}: {exc}") from None

    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # broken EXIF block: the pixels are fine, the orientation is unknown
        raise ImageDecodeError(label, "corrupt", f"unreadable EXIF orientation: {exc}") from None
    return _convert(image, mode, background, label)


def probe_image(source: ImageSource, *, name: str | None = None) -> dict[str, object]:
    """Read only the header of an image: ``{"width", "height", "mode", "format"}``, with width and
    height as displayed (EXIF rotation by 90° swaps them). Pixels are not decoded, so this is fast
    and safe on any file; it raises :class:`ImageDecodeError` (``missing``, ``empty``,
    ``not-an-image``, ``too-many-pixels``, ``truncated``, ``corrupt``) when the header is unreadable."""
    label, data = _read_bytes(source, name)
    if len(data) == 0:
        raise ImageDecodeError(label, "empty", "the file has zero bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # PNG keeps EXIF after the pixels unless it is already in the header: never load() here
            has_exif = image.format != "PNG" or "exif" in image.info
            if has_exif and image.getexif().get(0x0112) in (5, 6, 7, 8):  # Orientation: transposed
                width, height = height, width
            return {"width": width, "height": height, "mode": image.mode, "format": image.format}
    except UnidentifiedImageError:
        raise ImageDecodeError(label, "not-an-image", "Pillow does not recognise the format") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(label, "too-many-pixels", str(exc)) from None
    except Exception as exc:
        raise ImageDecodeError(label, _failure_reason(exc), f"{type(exc).__name__}: {exc}") from None


def _failure_reason(exc: Exception) -> str:
    """``truncated`` when Pillow ran out of data (``image file is truncated``, ``Truncated File
    Read``), else ``corrupt``."""
    return "truncated" if "truncated" in str(exc).lower() else "corrupt"


def _read_bytes(source: ImageSource, name: str | None) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name or "<bytes>", bytes(source)
    path = Path(source)
    if not path.exists():
        raise ImageDecodeError(str(path), "missing", "no such file")
    if not path.is_file():
        raise ImageDecodeError(str(path), "not-an-image", "not a regular file")
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(str(path), "missing", str(exc)) from None


def _convert(image: Image.Image, mode: str, background: tuple[int, int, int], label: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit ``RGB`` or ``L`` without losing or inventing content."""
    src = image.mode
    if src == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif src == "PA":
        image = image.convert("RGBA")
    elif src.startswith("I;16") or src in ("I", "F"):
        image = _to_8bit(image)
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, background + (255,))
        image = Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(label, "unsupported-mode", f"cannot convert {src} to {mode}: {exc}") from None


def _to_8bit(image: Image.Image) -> Image.Image:
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
