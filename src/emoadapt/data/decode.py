"""Safe image decoding: the one function every reader, command and server in emoadapt uses.

``decode_image`` turns a file path or raw bytes into a correct ``PIL.Image`` in mode ``RGB`` or
``L`` — or raises :class:`~emoadapt.errors.ImageDecodeError` naming the file and the reason.
It never returns a silently wrong picture:

* EXIF orientation is applied (a phone photo shot in portrait comes out upright);
* every Pillow mode is converted explicitly: ``1``, ``L``, ``P``, ``RGB`` as usual; modes with
  alpha (``LA``, ``RGBA``, ``PA``, ``P`` with a transparency entry) are composited on a
  background (white by default) instead of dropping alpha, which would reveal whatever colour
  hides under transparent pixels; ``CMYK`` and ``YCbCr`` via Pillow's converters; the
  high-bit-depth modes ``I;16*``, ``I`` and ``F`` are rescaled to 0..255 (see :func:`emoadapt.data.modes.to_8bit`)
  instead of being clipped, which would turn most 16-bit images white;
* animated images (GIF, APNG, WebP, multi-page TIFF) give their first frame;
* images with more than ``max_pixels`` pixels, a side longer than ``max_side`` or an aspect
  ratio above ``max_aspect`` are refused from the header, *before* any pixel buffer is allocated
  (decompression bombs; a 1 × 14,000,000 PNG of 27 KB would otherwise ask the resize for gigabytes);
* zero-byte, truncated, corrupt and non-image files raise ``ImageDecodeError``; so does a JPEG whose
  entropy-coded data libjpeg reports as corrupt (``Corrupt JPEG data: …``, which Pillow ignores and
  which would give a garbled picture), checked with the libjpeg that Pillow ships (see
  :func:`jpeg_warnings`);
* paths, bytes, ``PIL.Image`` objects and NumPy arrays all go through the same checks and the same
  conversion (:func:`decode_image` accepts each), so one picture gives one result whatever its type.

``ImageDecodeError`` (a ``ValueError``) is the only exception it raises for bad input; its
``reason`` is one of :data:`REASONS`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError
from .modes import array_to_image, convert_mode

#: Default pixel limit (width × height): 50 megapixels, e.g. 8660 × 5773. Large enough for any
#: camera photo, small enough that a decompression bomb cannot exhaust memory (RGB float32 of
#: 50 Mpx is 600 MB).
DEFAULT_MAX_PIXELS = 50_000_000

#: Longest accepted side in pixels (the JPEG and WebP format limit); a longer side is refused.
DEFAULT_MAX_SIDE = 65_535

#: Largest accepted ratio of the long side to the short side. Preprocessing scales the short side
#: to the model's input size, so an extreme strip (1 × 1,000,000) would become a huge picture;
#: 100 leaves room for any panorama.
DEFAULT_MAX_ASPECT = 100.0

#: Every ``ImageDecodeError.reason``.
REASONS = ("missing", "empty", "not-an-image", "too-many-pixels", "too-large", "bad-aspect-ratio",
           "truncated", "corrupt", "unsupported-mode")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

def decode_image(
    source: ImageSource,
    *,
    mode: str = "RGB",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    reduce_to: int | None = None,
) -> Image.Image:
    """Decode ``source`` into a loaded image in ``mode``.

    Args:
        source: a file path, the raw bytes of a file, a ``PIL.Image`` (its current frame) or a
            NumPy array (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA: ``uint8`` 0–255,
            ``uint16`` 0–65535 (as 16-bit files), ``bool``, other integers within 0–255 (or
            0–65535, as 16 bit) or floats within 0–1 (or 0–255).
        mode: ``"RGB"`` (3 channels, 8 bit) or ``"L"`` (grey, 8 bit).
        max_pixels: refuse images with more than this many pixels (width × height).
        background: RGB colour that transparent pixels are composited on.
        name: name used in error messages for in-memory input (default ``"<bytes>"``,
            ``"<PIL.Image>"``, ``"<array>"``).
        max_side: refuse images with a side longer than this.
        max_aspect: refuse images whose long side exceeds ``max_aspect`` × the short side.
        reduce_to: for a file or bytes in JPEG, let libjpeg decode at 1/2, 1/4 or 1/8 scale (Pillow's
            draft mode: the DCT does the downscaling, 2–6× less work) while the short side stays at
            least ``reduce_to`` pixels; ``None`` (default): full size. The limits apply to the full
            size; other formats are decoded at full size. See docs/scaling.md for how much this
            changes the probabilities.

    Returns:
        A fully loaded ``PIL.Image.Image`` in ``mode``, EXIF-upright, first frame only (a new
        object: a ``PIL.Image`` passed in is not modified).

    Raises:
        ImageDecodeError: reason one of :data:`REASONS`.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    limits = (max_pixels, max_side, max_aspect)
    if isinstance(source, Image.Image):
        return _from_pil(source, name or "<PIL.Image>", mode, background, limits)
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "<array>", mode, background, limits)
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ImageDecodeError(name or f"<{type(source).__name__}>", "not-an-image",
                               f"unsupported input type {type(source).__name__}; pass a path, bytes, "
                               "a PIL image or a NumPy array")
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

    check_size(image.size, label, max_pixels=max_pixels, max_side=max_side, max_aspect=max_aspect)
    if reduce_to and image.format == "JPEG":
        _draft(image, int(reduce_to))
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
    if image.format in ("JPEG", "MPO"):
        problems = [w for w in jpeg_warnings(data) or () if _is_corruption(w)]
        if problems:
            raise ImageDecodeError(label, "corrupt", f"libjpeg: {problems[0]}")
    return _upright_and_convert(image, label, mode, background, limits)


def _draft(image: Image.Image, short_side: int) -> None:
    """Ask libjpeg for the smallest DCT scale (1, 1/2, 1/4, 1/8) that keeps the short side of the
    JPEG ``image`` (not yet loaded) at least ``short_side`` pixels."""
    width, height = image.size
    scale = next((s for s in (8, 4, 2) if min(width, height) >= s * short_side), 1)
    if scale > 1:  # Pillow picks min(width // w, height // h) = scale for this request (sides ≥ 2 × 8)
        image.draft(image.mode, (width // scale, height // scale))


def check_size(size: tuple[int, int], label: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_side: int = DEFAULT_MAX_SIDE, max_aspect: float = DEFAULT_MAX_ASPECT) -> None:
    """Refuse a (width, height) before anything of that size is allocated: ``corrupt`` for a zero
    side, ``too-large``, ``too-many-pixels`` or ``bad-aspect-ratio``."""
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ImageDecodeError(label, "corrupt", f"size {width}x{height}")
    if max(width, height) > max_side:
        raise ImageDecodeError(label, "too-large", f"{width}x{height}: a side is longer than the limit of "
                               f"{max_side:,} pixels; raise max_side if you trust the file")
    if width * height > max_pixels:
        raise ImageDecodeError(
            label, "too-many-pixels",
            f"{width}x{height} = {width * height:,} pixels > limit {max_pixels:,}; raise max_pixels if you trust the file",
        )
    if max(width, height) > max_aspect * min(width, height):
        raise ImageDecodeError(label, "bad-aspect-ratio", f"{width}x{height}: the long side is more than "
                               f"{max_aspect:g} times the short side; crop the image or raise max_aspect")


def _upright_and_convert(image: Image.Image, label: str, mode: str, background: tuple[int, int, int],
                         limits: tuple[int, int, float]) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # broken EXIF block: the pixels are fine, the orientation is unknown
        raise ImageDecodeError(label, "corrupt", f"unreadable EXIF orientation: {exc}") from None
    return convert_mode(image, mode, background, label)


def _from_pil(image: Image.Image, label: str, mode: str, background: tuple[int, int, int],
              limits: tuple[int, int, float]) -> Image.Image:
    """A ``PIL.Image`` given by the caller: the same size checks, EXIF orientation, alpha and
    high-bit-depth handling as a file (its current frame; the caller's object is left as it is)."""
    max_pixels, max_side, max_aspect = limits
    check_size(image.size, label, max_pixels=max_pixels, max_side=max_side, max_aspect=max_aspect)
    try:
        image.load()
    except Exception as exc:  # a lazily opened file that turns out to be truncated or corrupt
        raise ImageDecodeError(label, _failure_reason(exc), f"{type(exc).__name__}: {exc}") from None
    return _upright_and_convert(image, label, mode, background, limits)


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


def _is_corruption(message: str) -> bool:
    """libjpeg warnings that mean the picture is damaged (not e.g. an unknown JFIF version)."""
    return message.startswith(("Corrupt JPEG data", "Premature end of JPEG file"))


def jpeg_warnings(data: bytes) -> list[str] | None:
    """The warnings libjpeg emits while entropy-decoding the JPEG ``data`` (all scans, no IDCT:
    about as fast as reading the file), e.g. ``["Corrupt JPEG data: premature end of data segment"]``.

    Pillow decodes such damaged data without a word (a garbled or grey lower part). This asks the
    libjpeg(-turbo) that Pillow ships (or the system's) through ``ctypes``; it returns ``None``
    when no usable libjpeg is found (the check is then skipped). Call it only on data that Pillow
    already decoded: libjpeg then meets no fatal error (its error handler cannot unwind to Python)."""
    from . import _libjpeg

    return _libjpeg.warnings(data)


def _failure_reason(exc: Exception) -> str:
    """``truncated`` when Pillow ran out of data (``image file is truncated``, ``Truncated File
    Read``), else ``corrupt``."""
    return "truncated" if "truncated" in str(exc).lower() else "corrupt"


def _read_bytes(source: ImageSource, name: str | None) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name or "<bytes>", bytes(source)
    path = Path(source)
    try:
        exists, regular = path.exists(), path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, with a NUL byte...
        raise ImageDecodeError(str(path), "missing", str(exc)) from None
    if not exists:
        raise ImageDecodeError(str(path), "missing", "no such file")
    if not regular:
        raise ImageDecodeError(str(path), "not-an-image", "not a regular file")
    try:
        return str(path), path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(str(path), "missing", str(exc)) from None


def _from_array(array: np.ndarray, label: str, mode: str, background: tuple[int, int, int],
                limits: tuple[int, int, float]) -> Image.Image:
    """A NumPy array → the Pillow image a file with the same pixels would give (then as a file)."""
    max_pixels, max_side, max_aspect = limits
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageDecodeError(label, "unsupported-mode", f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) "
                               f"array, got shape {array.shape}")
    if array.size == 0:
        raise ImageDecodeError(label, "empty", f"the array has shape {array.shape}")
    check_size((array.shape[1], array.shape[0]), label, max_pixels=max_pixels, max_side=max_side,
               max_aspect=max_aspect)
    return convert_mode(array_to_image(array, label), mode, background, label)
