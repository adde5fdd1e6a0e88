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
