"""Shared test helpers: where the shared datasets are, and skipping when they are absent."""

from __future__ import annotations

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


def save_tiny_model(path: Path, in_chans: int = 3) -> Path:
    """A tiny random 4-class EmoNet (32 px) saved as a weights file, for CLI, API and web tests."""
    import torch

    from emoadapt.models.emonet import EmoNet, EmoNetConfig
    from emoadapt.training.checkpoint import save_weights

    torch.manual_seed(0)
    model = EmoNet(EmoNetConfig(in_chans=in_chans, input_size=32, width=0.125, batch_norm=True, head="pool",
                                hidden=(16,), num_classes=4)).eval()
    save_weights(path, model, model.config.to_dict(), {"classes": TINY_CLASSES})
    return path
