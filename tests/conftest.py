"""Shared test helpers: where the shared datasets are, and skipping when they are absent."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path

import pytest

from emoadapt.data.locate import KNOWN
from emoadapt.data.locate import data_home as _data_home


def skip_without(name: str) -> Path:
    """Path of the shared dataset ``name`` (fer2013, ckplus48, jaffe, emotion6); skips the test when
    it is not unpacked under ``emoadapt.data.locate.data_home()`` (``$EMOADAPT_DATA``)."""
    path = _data_home() / KNOWN[name]
    if not path.exists():
        pytest.skip(f"dataset {name} not found at {path} (unpack ../shared/data/unpack.sh or set EMOADAPT_DATA)")
    return path


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel.

    A 224 px model on a batch of 256 images allocates and frees GB-sized activations layer after
    layer; by default each one is a fresh ``mmap`` whose pages the kernel must fault in and zero,
    which cost more system than user time (FER2013 PrivateTest through the default model: 12 M page
    faults per 256 images). Reusing the heap cuts that test's CPU time about 3×; no result changes.
    Returns whether the settings took (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    largest = 2**31 - 1  # bytes (a C int): in effect no limit
    return bool(libc.mallopt(m_mmap_threshold, largest) and libc.mallopt(m_trim_threshold, largest))


keep_freed_memory()


@pytest.fixture
def data_home() -> Path:
    return _data_home()


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (small models are faster so, and background jobs suffer less)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_CLASSES = ["happy", "sad", "hate", "anger"]


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    """A Predictor of :func:`save_tiny_model`'s network on the torch runtime, one torch thread (as the
    web server runs), shared by a module's tests."""
    import torch

    from emoadapt.api import Predictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Predictor(str(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")), runtime="torch")
    torch.set_num_threads(threads)


def png_bytes(height: int = 40, width: int = 50, seed: int = 0) -> bytes:
    """A random RGB PNG file of height × width pixels, as bytes (an upload)."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def save_tiny_model(path: Path, in_chans: int = 3, classes=TINY_CLASSES, seed: int = 0) -> Path:
    """A tiny random EmoNet (32 px, 4 IER classes unless ``classes`` says otherwise; weights drawn
    with ``seed``) saved as a weights file, for CLI, API and web tests."""
    import torch

    from emoadapt.models.emonet import EmoNet, EmoNetConfig
    from emoadapt.training.checkpoint import save_weights

    torch.manual_seed(seed)
    model = EmoNet(EmoNetConfig(in_chans=in_chans, input_size=32, width=0.125, batch_norm=True, head="pool",
                                hidden=(16,), num_classes=len(classes))).eval()
    save_weights(path, model, model.config.to_dict(), {"classes": list(classes)})
    return path


def write_image(path: Path, rng, mode: str = "RGB", size: int = 32) -> None:
    """A random ``size`` px RGB or grey (``mode="L"``) image file."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 255, (size, size, 3 if mode == "RGB" else 1), dtype=np.uint8)
    Image.fromarray(pixels if mode == "RGB" else pixels[:, :, 0], mode).save(path)


def write_faces_and_target(root: Path, rng, per_class: int = 7, size: int = 32) -> None:
    """``root/fer``: FER2013 layout (train/<class>/Training_*.jpg ×2 and test/<class>/PrivateTest_*.jpg,
    48 px grey, every FER class); ``root/target``: a folder per IER class with ``per_class`` RGB PNGs."""
    from emoadapt.data.labels import FER_CLASSES, IER_CLASSES

    for label in FER_CLASSES:
        for i in range(2):
            write_image(root / "fer" / "train" / label / f"Training_{label}{i}.jpg", rng, "L", 48)
        write_image(root / "fer" / "test" / label / f"PrivateTest_{label}.jpg", rng, "L", 48)
    for label in IER_CLASSES:
        for i in range(per_class):
            write_image(root / "target" / label / f"{i}.png", rng, size=size)


def save_tiny_affect_model(path: Path, source: str = "fused", hidden: int = 0) -> Path:
    """A tiny random FusionNet (64 px; face branch at 48 px, 16-d hidden layer, 4 IER classes) saved
    as a weights file with a random affect-heads sidecar ``<stem>.affect.safetensors`` next to it."""
    import torch

    from emoadapt.models.affect import AffectConfig, AffectHeads, save_affect, sidecar_path
    from emoadapt.models.efficientnet_lite import EfficientNetLiteConfig
    from emoadapt.models.fusion import FusionConfig, FusionNet
    from emoadapt.models.weights import save_weights, sha256

    torch.manual_seed(0)
    config = FusionConfig(face=EfficientNetLiteConfig(input_size=48).to_dict(),
                          scene=EfficientNetLiteConfig(input_size=64).to_dict(), hidden=16, num_classes=4,
                          input_size=64)
    model = FusionNet(config).eval()
    save_weights(path, model, config.to_dict(), {"classes": list(TINY_CLASSES)})
    width = 2560 if source == "fused" else 16
    heads = AffectHeads(AffectConfig(source=source, in_features=width, hidden=hidden))
    with torch.no_grad():  # standardise the (tiny) random features so that images give different outputs
        from emoadapt.models.affect import model_features

        features = model_features(model, torch.rand(8, 3, 64, 64))[source]
        heads.input_mean.copy_(features.mean(0))
        heads.input_std.copy_(features.std(0).clamp_min(1e-12))
        heads.va_std.fill_(2.0)
    save_affect(sidecar_path(path), heads, sha256(path))
    return path
