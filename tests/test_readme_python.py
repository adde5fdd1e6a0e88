"""README.md's Python example runs as written (issue #34): every ```python block is executed, in
order, with the default model, in a folder where the file names it uses (photo.jpg, a.jpg, b.jpg,
b.png) are bundled sample images and ``my_net`` (the "any nn.Module" of the example) is a tiny
4-class network. The comments that show results are checked against what the calls return: keys,
types, shapes and the evaluation count."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLES = ROOT / "src" / "emoadapt" / "samples"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def tiny_net():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten()).eval()


def test_the_readme_has_a_python_example():
    assert python_blocks(), "README.md has no ```python block"


@pytest.fixture(scope="module")
def readme_namespace(tmp_path_factory):
    """The README's Python blocks run in a folder with the files they name; their namespace."""
    import os

    folder = tmp_path_factory.mktemp("readme")
    for name, sample in (("photo.jpg", "chelsea.jpg"), ("a.jpg", "coffee.jpg"), ("b.jpg", "rocket.jpg")):
        shutil.copy(SAMPLES / sample, folder / name)
    from PIL import Image

    Image.open(SAMPLES / "astronaut.jpg").save(folder / "b.png")
    namespace = {"my_net": tiny_net(), "__name__": "readme"}
    here = os.getcwd()
    os.chdir(folder)
    try:
        for block in python_blocks():
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(here)
    return namespace


def test_readme_results_are_what_the_comments_say(readme_namespace):
    import numpy as np

    import emoadapt
    from emoadapt.attribution import settings

    ns = readme_namespace
    result = emoadapt.analyze(str(SAMPLES / "chelsea.jpg"))
    for key in ("emotion", "dominant_emotion", "uncertain", "uncertain_reason", "ood_score", "valence", "arousal",
                "distribution"):
        assert key in result, key
    assert set(result["emotion"]) == {"happy", "sad", "hate", "anger"}
    explanation = ns["explanation"]
    assert explanation.values.shape == (2 ** settings.DEPTH,)
    assert np.isclose(explanation.values.sum(), explanation.full_value - explanation.base_value, atol=1e-4)
    assert ns["probs"].shape == (2, 4)
    assert list(ns["layers"]) == ["s4", "s5"]  # the taps the example names
    for layer in ns["layers"].values():  # the default depth, or less where the layer's map is too small to split
        assert 1 <= layer.depth <= settings.DEPTH and layer.values.shape == (2 ** layer.depth,)
        assert np.isclose(layer.values.sum(), layer.full_value - layer.base_value, atol=1e-4)
    text = README.read_text()
    assert f"depth {settings.DEPTH}" in text and f"{2 ** settings.DEPTH} regions" in text
