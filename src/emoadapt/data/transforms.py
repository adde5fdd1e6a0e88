"""The few image transforms emoadapt needs, on Pillow images and torch tensors (no torchvision).

Colour order is RGB everywhere; tensors are float32 in [0, 1] with shape (C, H, W) or (N, C, H, W)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


#: ``crop``: the centre square of ``CROP_SHARE`` of the short side (the ImageNet evaluation crop:
#: short side to 256, centre 224)
CROP_SHARE = 0.875


def resize_center_crop(image: Image.Image, size: int, share: float = 1.0) -> Image.Image:
    """Resize so the short side is ``size / share`` px (bilinear, antialiased), then crop the centre
    ``size`` square (``share`` of the short side; 1.0 = all of it)."""
    width, height = image.size
    scale = size / share / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


#: How an image of any aspect ratio becomes the model's square input: ``squash`` resizes the whole
#: image to size × size; ``pad`` fits the whole image inside the square on mid-grey; ``centre``
#: resizes the short side and crops the centre square, losing the rest; ``crop`` is the centre
#: square of 87.5 % of the short side (the ImageNet evaluation crop). A model's own fit is in its
#: metadata (``fit``); ``DEFAULT_FIT`` is for models that name none.
FITS = ("squash", "pad", "centre", "crop")
DEFAULT_FIT = "squash"
PAD_GREY = 128  #: fill value of the padding (mid-grey, uint8)


def resize_squash(image: Image.Image, size: int) -> Image.Image:
    """The whole image resized to ``size`` × ``size`` (bilinear, antialiased); the aspect ratio changes."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)


def pad_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in a ``size`` square of a ``width`` × ``height`` image fitted inside it."""
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    return left, top, left + new_w, top + new_h


def resize_pad(image: Image.Image, size: int) -> Image.Image:
    """The whole image resized so its long side is ``size`` px, centred on a mid-grey square."""
    left, top, right, bottom = pad_box(*image.size, size)
    resized = image.resize((right - left, bottom - top), Image.Resampling.BILINEAR, reducing_gap=None)
    canvas = Image.new(image.mode, (size, size), PAD_GREY if image.mode == "L" else (PAD_GREY,) * 3)
    canvas.paste(resized, (left, top))
    return canvas


def fit_square(image: Image.Image, size: int, fit: str = DEFAULT_FIT) -> Image.Image:
    """``image`` as a ``size`` square by one of :data:`FITS`."""
    if fit == "squash":
        return resize_squash(image, size)
    if fit == "pad":
        return resize_pad(image, size)
    if fit in ("centre", "crop"):
        return resize_center_crop(image, size, CROP_SHARE if fit == "crop" else 1.0)
    from ..errors import EmoadaptError

    raise EmoadaptError(f"unknown fit {fit!r}; choose from {', '.join(FITS)}")


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


def image_to_tensor(image: Image.Image, size: int, channels: int, fit: str = "centre") -> torch.Tensor:
    """Decoded image → (C, size, size) float tensor in [0, 1]; ``channels`` is 1 (grey) or 3 (RGB);
    ``fit`` one of :data:`FITS` (default here ``centre``, the training views' geometry)."""
    image = image.convert("L" if channels == 1 else "RGB")
    return uint8_to_tensor(image_to_uint8(fit_square(image, size, fit)))


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


def square_to_image(values: np.ndarray, fit: str, width: int, height: int) -> np.ndarray:
    """A (S, S) array over the model's square input → (height, width) float32 over the original
    image (nearest neighbour, so region edges stay sharp), NaN where the image was not analysed
    (outside the centre square for ``centre`` and ``crop``). Values are copied, not rescaled."""
    values = np.asarray(values, dtype=np.float32)
    side = values.shape[0]
    if fit == "squash":
        return _resize_nearest(values, width, height)
    if fit == "pad":
        left, top, right, bottom = pad_box(width, height, side)
        return _resize_nearest(values[top:bottom, left:right], width, height)
    if fit not in ("centre", "crop"):
        from ..errors import EmoadaptError

        raise EmoadaptError(f"unknown fit {fit!r}; choose from {', '.join(FITS)}")
    crop = round(min(width, height) * (CROP_SHARE if fit == "crop" else 1.0))  # the square's side in original px
    left, top = (width - crop) // 2, (height - crop) // 2
    out = np.full((height, width), np.nan, dtype=np.float32)
    out[top:top + crop, left:left + crop] = _resize_nearest(values, crop, crop)
    return out


def _resize_nearest(values: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = np.minimum((np.arange(height) + 0.5) * values.shape[0] / height, values.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * values.shape[1] / width, values.shape[1] - 1).astype(int)
    return values[rows][:, cols]


def square_map_to_image(values: np.ndarray, fit: str, width: int, height: int) -> np.ndarray:
    """An attribution map over the (S, S) input (per input pixel) → (height, width) per original
    pixel: :func:`square_to_image`, rescaled so the analysed part keeps its sum (up to the nearest
    neighbour's rounding); NaN where the image was not analysed."""
    full = square_to_image(values, fit, width, height)
    side = values.shape[0]
    if fit == "pad":
        left, top, right, bottom = pad_box(width, height, side)
        analysed = (right - left) * (bottom - top)
    else:
        analysed = side * side
    return full * np.float32(analysed / max(1, int(np.isfinite(full).sum())))
