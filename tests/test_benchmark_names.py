"""Run folders of benchmarks/adaptation.py (adapt_common.py) are named by what makes runs differ, so ``--resume``
never continues a run made from another FER checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_fer_label_names_non_default_checkpoints_and_keeps_default_names():
    from adapt_common import DEFAULT_FER, fer_label as _fer_label

    assert _fer_label(DEFAULT_FER) == ""  # existing run folders keep their names
    assert _fer_label("runs/fer-wide/best.safetensors") == "fer-wide "
    assert _fer_label("runs/fer-wide/last.safetensors") == "fer-wide "
    assert _fer_label("weights/my-fer.safetensors") == "my-fer "
    assert _fer_label("runs/a/best.safetensors") != _fer_label("runs/b/best.safetensors")
