"""Where datasets live: ``$EMOADAPT_DATA``, else ``./.cache/data`` (what ``make``/CI unpack
``../shared/data`` into)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetLayoutError

KNOWN = {
    "fer2013": "fer2013",
    "ckplus48": "ckplus48/CK+48",
    "jaffe": "jaffe/jaffedbase",
    "emotion6": "emotion6/Emotion6",
}


def data_home() -> Path:
    return Path(os.environ.get("EMOADAPT_DATA", Path.cwd() / ".cache" / "data"))


def dataset_path(name: str, required: bool = True) -> Path | None:
    """Path of a known dataset under :func:`data_home`, or ``None``/error when absent."""
    path = data_home() / KNOWN[name]
    if path.exists():
        return path
    if required:
        raise DatasetLayoutError(f"dataset {name} not found at {path}; unpack it with ../shared/data/unpack.sh "
                                 f"{data_home()} or set EMOADAPT_DATA")
    return None
