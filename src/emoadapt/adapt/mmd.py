"""Maximum mean discrepancy between source and target feature batches.

Multi-kernel MMD (DAN, Long et al. 2015) with Gaussian kernels
``k(a, b) = Σ_u exp(−‖a − b‖² / (2 σ_u²))``, ``σ_u² = γ_u · m`` where ``m`` is the mean pairwise
squared distance of the joint batch (a data-driven bandwidth) and ``γ_u`` ∈ ``multipliers``:

    MMD²(S, T) = mean_{i,j} k(s_i, s_j) + mean_{i,j} k(t_i, t_j) − 2 mean_{i,j} k(s_i, t_j)

(the biased V-statistic, ≥ 0). Source and target batch sizes may differ.

Linear MMD: the squared distance between the batch means, ``‖mean(S) − mean(T)‖²`` (a linear kernel).
"""

from __future__ import annotations

import torch
from torch import nn


class GaussianKernel(nn.Module):
    """One Gaussian kernel whose bandwidth is ``multiplier`` × the mean pairwise squared distance."""

    def __init__(self, multiplier: float):
        super().__init__()
        self.multiplier = multiplier

    def forward(self, sq_dist: torch.Tensor, mean_sq_dist: torch.Tensor) -> torch.Tensor:
        return torch.exp(-sq_dist / (2 * self.multiplier * mean_sq_dist))


class MultiKernelMMD(nn.Module):
    """Multi-kernel Gaussian MMD². ``forward(f_s (Ns, D), f_t (Nt, D)) -> scalar``."""

    def __init__(self, multipliers: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)):
        super().__init__()
        self.kernels = nn.ModuleList(GaussianKernel(m) for m in multipliers)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([f_s.flatten(1), f_t.flatten(1)])
        sq_dist = torch.cdist(joint, joint).pow(2)
        mean_sq_dist = sq_dist.detach().sum() / max(1, joint.shape[0] * (joint.shape[0] - 1))
        mean_sq_dist = mean_sq_dist.clamp(min=1e-12)
        k = sum(kernel(sq_dist, mean_sq_dist) for kernel in self.kernels)
        ns = f_s.shape[0]
        return k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean()


class LinearMMD(nn.Module):
    """``‖mean(f_s) − mean(f_t)‖²``. ``forward(f_s (Ns, D), f_t (Nt, D)) -> scalar``."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return (f_s.flatten(1).mean(0) - f_t.flatten(1).mean(0)).pow(2).sum()
