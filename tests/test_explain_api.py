"""The one-call API ``emoadapt.explain``: callable again and again, any model, batches (issue #17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import emoadapt
from emoadapt.errors import EmoadaptError
from emoadapt.attribution import DnCShap, Explanation


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


def tiny_cnn(seed: int = 0, size: int = 8, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * size * size, classes)).eval()


def test_top_level_explain_is_a_function_beside_the_attribution_subpackage():
    """Run in a fresh interpreter: importing the explainers' subpackage leaves ``emoadapt.explain``
    the plain function (a subpackage of the same name used to replace it)."""
    code = textwrap.dedent("""
        import inspect, torch, emoadapt
        assert inspect.isfunction(emoadapt.explain)
        f = lambda x: torch.softmax(x.mean(dim=(2, 3)), dim=1)
        image = torch.rand(3, 8, 8)
        first = emoadapt.explain(image, model=f, depth=2)
        second = emoadapt.explain(image, model=f, depth=2)
        from emoadapt.attribution import DnCShap, settings
        third = emoadapt.explain(image, model=f, depth=2)
        import emoadapt.attribution as ex
        assert ex.DnCShap is DnCShap and ex.settings.DEPTH == settings.DEPTH
        assert (first.values == second.values).all() and (first.values == third.values).all()
        import emoadapt.attribution.dncshap
        emoadapt.explain(image, model=f, depth=2)
        assert inspect.isfunction(emoadapt.explain) and "attribution" not in emoadapt.__all__
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_callable_function_batches_and_lists():
    def probs(images):  # a plain batch function: (N, C, H, W) -> probabilities
        return torch.softmax(torch.stack([images[:, 0].mean((1, 2)), images[:, 1].mean((1, 2)),
                                          images[:, 2].mean((1, 2))], 1) * 5, dim=1)

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    one = emoadapt.explain(images[0], model=probs, depth=2)
    assert isinstance(one, Explanation) and one.map.shape == (8, 8)
    batch = emoadapt.explain(images, model=probs, depth=2)
    as_list = emoadapt.explain(list(images), model=probs, depth=2, class_names=["r", "g", "b"], target="g")
    assert isinstance(batch, list) and len(batch) == len(as_list) == 3
    np.testing.assert_array_equal(batch[0].values, one.values)
    assert {e.target_name for e in as_list} == {"g"}
    direct = DnCShap(probs, depth=2).attribute(images[1])
    np.testing.assert_allclose(batch[1].values, direct.values, atol=1e-12)


def test_module_with_images_needs_an_input_size():
    model = tiny_cnn()
    picture = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)  # (H, W, 3) RGB
    e = emoadapt.explain(picture, model=model, input_size=8, depth=2)
    assert e.map.shape == (8, 8)
    batch = emoadapt.explain(np.stack([picture, picture]), model=model, input_size=8, depth=2)
    assert len(batch) == 2 and np.allclose(batch[0].values, batch[1].values)
    with pytest.raises(EmoadaptError, match="input_size"):
        emoadapt.explain(picture, model=model)
    with pytest.raises(EmoadaptError, match="unknown explain option"):
        emoadapt.explain(torch.rand(3, 8, 8), model=model, dpeth=2)


def test_onnx_file(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="install the 'onnx' extra")
    pytest.importorskip("onnx")
    model = tiny_cnn(1)
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}})
    assert ort is not None
    image = torch.rand(3, 8, 8)
    by_file = emoadapt.explain(image, model=str(path), depth=3)
    by_module = emoadapt.explain(image, model=model, depth=3)
    assert by_file.target == by_module.target
    np.testing.assert_allclose(by_file.values, by_module.values, atol=1e-5)
    picture = (np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)
    assert emoadapt.explain(picture, model=path, depth=1).map.shape == (8, 8)  # size read from the ONNX input


def test_shipped_model_by_name_with_a_batch_of_files():
    from importlib import resources
    from pathlib import Path

    samples = sorted(Path(str(resources.files("emoadapt") / "samples")).glob("*.jpg"))[:2]
    results = emoadapt.explain(samples, depth=1, target="happy")
    assert len(results) == 2 and all(e.target_name == "happy" for e in results)
    with pytest.raises(EmoadaptError, match="unknown class"):
        emoadapt.explain(samples[0], depth=1, target="joy")


def test_explanation_map_comes_back_at_the_image_resolution(tmp_path):
    """A shipped-style model (its own input fit) explaining a wide picture: ``map`` is (H, W) of the
    picture, the analysed pixels keep the regions' sum, ``input_map`` is the square input's map."""
    import numpy as np

    import emoadapt
    from conftest import save_tiny_model

    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    picture = np.random.default_rng(0).integers(0, 255, (18, 60, 3), dtype=np.uint8)
    explanation = emoadapt.explain(picture, model=str(weights), depth=3)
    assert explanation.map.shape == (18, 60) and explanation.input_map.shape == (32, 32)
    assert np.isclose(np.nansum(explanation.map), explanation.values.sum(), atol=1e-3)
    assert explanation.to_dict()["map_shape"] == [18, 60]
    tensor_explanation = emoadapt.explain(emoadapt.Predictor(str(weights)).preprocess(picture), model=str(weights),
                                          depth=3)
    assert tensor_explanation.map.shape == (32, 32) and tensor_explanation.input_map is None


def test_the_explained_class_is_the_predicted_class(tmp_path, monkeypatch):
    """One definition of a prediction: by default an explanation explains the class ``predict``
    reports (its test-time augmentation included), not the argmax of one model pass."""
    import numpy as np

    import emoadapt
    from conftest import save_tiny_model

    predictor = emoadapt.Predictor(str(save_tiny_model(tmp_path / "tiny.safetensors")))
    picture = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    single_pass = int(predictor.raw_logits(predictor.preprocess(picture)[None])[0].argmax())
    reported = (single_pass + 1) % len(predictor.classes)
    fake = np.full((1, len(predictor.classes)), 0.1, dtype=np.float32)
    fake[0, reported] = 0.7
    monkeypatch.setattr(predictor, "predict_tensors", lambda batch: fake)
    assert predictor.explain(picture, depth=2).target == reported
