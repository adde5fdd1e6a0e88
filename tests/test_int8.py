"""The faster model pass (issue #33): constant pads in the ONNX export; the benchmarks' int8
quantisation (benchmarks/lib/int8.py) of a tiny model keeps its head in fp32 and stays close. Fast."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from emoadapt.models.efficientnet_lite import Conv2dSame

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.lib

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


class Tiny(torch.nn.Module):
    """Two "same" convs (stride 2 then 1), global pooling, a linear head: (N, 3, 16, 16) → (N, 2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = Conv2dSame(3, 8, 3, 2), Conv2dSame(8, 8, 3, 1)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.b(torch.relu(self.a(x))))
        return self.head(h.mean(dim=(2, 3)))


def _export(tmp_path):
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), (torch.rand(1, 3, 16, 16),), str(path), input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}}, dynamo=False)
    return path


def test_same_pads_export_as_constants(tmp_path):
    ops = [n.op_type for n in onnx.load(str(_export(tmp_path))).graph.node]
    assert "Shape" not in ops  # no shape arithmetic per conv
    assert ops.count("Pad") == 1  # the stride-2 conv's asymmetric pad; the stride-1 conv pads itself


def test_int8_copy_keeps_the_head_in_fp32_and_stays_close(tmp_path):
    from benchmarks.lib.int8 import head_nodes, quantize_int8

    fp32 = _export(tmp_path)
    rng = np.random.default_rng(0)
    images = {str(i): torch.from_numpy(rng.random((3, 16, 16), dtype=np.float32)) for i in range(12)}
    int8 = quantize_int8(fp32, tmp_path / "tiny.int8.onnx", images.__getitem__, list(images))
    model = onnx.load(str(int8))
    head = set(head_nodes(model))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert gemm.name in head and not set(gemm.input) & dequantized  # fp32 weights, fp32 input
    assert any(n.op_type == "Conv" and set(n.input) & dequantized for n in model.graph.node)
    x = rng.random((8, 3, 16, 16), dtype=np.float32)
    a = ort.InferenceSession(str(fp32)).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(int8)).run(None, {"images": x})[0]
    assert np.abs(a - b).max() < 0.05 * (np.abs(a).max() + 1e-6) + 0.02
