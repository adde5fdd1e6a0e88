"""The explainers accept an nn.Module, a plain callable (torch or NumPy output) and an ONNX session."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from emoadapt.attribution.settings import tree_evaluations

from emoadapt.attribution import BatchFunction, DnCShap


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


def tiny_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))


def test_module_numpy_callable_and_probability_output_agree():
    model = tiny_cnn().eval()
    image = torch.rand(3, 9, 10)

    def numpy_probs(images):
        with torch.no_grad():
            return torch.softmax(model(images), dim=1).numpy()

    by_module = DnCShap(model, depth=4).attribute(image)
    by_numpy = DnCShap(numpy_probs, depth=4).attribute(image)
    by_logit_callable = DnCShap(lambda x: model(x), depth=4, output="logits").attribute(image)
    assert by_module.target == by_numpy.target == by_logit_callable.target
    np.testing.assert_allclose(by_numpy.values, by_module.values, atol=1e-6)
    np.testing.assert_allclose(by_logit_callable.values, by_module.values, atol=1e-6)


def test_module_in_training_mode_is_evaluated_in_eval_mode_and_restored():
    model = tiny_cnn().train()
    image = torch.rand(3, 9, 10)
    in_train = DnCShap(model, depth=3).attribute(image)
    assert model.training
    np.testing.assert_array_equal(in_train.values, DnCShap(model.eval(), depth=3).attribute(image).values)


def test_batch_function_counts_and_normalises():
    function = BatchFunction(lambda x: torch.zeros(len(x), 4), output="logits")
    probs = function(torch.rand(5, 1, 4, 4))
    assert probs.shape == (5, 4) and probs.dtype == np.float64
    np.testing.assert_allclose(probs, 0.25)
    function(torch.rand(2, 1, 4, 4))
    assert function.evaluations == 7
    assert BatchFunction(tiny_cnn()).output == "logits" and BatchFunction(lambda x: x).output == "probs"
    with pytest.raises(TypeError):
        BatchFunction(42)
    with pytest.raises(ValueError):
        BatchFunction(tiny_cnn(), output="softmax")


def test_onnxruntime_session_matches_the_module(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="install the 'onnx' extra to test ONNX sessions")
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    model = tiny_cnn(1).eval()
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(model, (torch.rand(1, 3, 8, 10),), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    image = torch.rand(3, 8, 10)
    by_session = DnCShap(session, depth=4, batch_size=7).attribute(image)
    by_module = DnCShap(model, depth=4).attribute(image)
    assert by_session.target == by_module.target and by_session.evaluations == tree_evaluations(4)
    np.testing.assert_allclose(by_session.values, by_module.values, atol=1e-5)
