"""CORAL (Sun & Saenko, Deep CORAL 2016): distance between feature covariances.

    C_S = (S − mean(S))ᵀ (S − mean(S)) / (Ns − 1),   C_T likewise
    CORAL(S, T) = ‖C_S − C_T‖²_F / (4 D²)

``forward(f_s (Ns, D), f_t (Nt, D)) -> scalar``; the batch sizes may differ (each ≥ 2)."""

from __future__ import annotations

import torch
from torch import nn


def covariance(features: torch.Tensor) -> torch.Tensor:
    """(N, D) → (D, D) unbiased covariance."""
    centred = features - features.mean(0, keepdim=True)
    return centred.T @ centred / max(1, features.shape[0] - 1)


class CORAL(nn.Module):
    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        f_s, f_t = f_s.flatten(1), f_t.flatten(1)
        d = f_s.shape[1]
        return (covariance(f_s) - covariance(f_t)).pow(2).sum() / (4 * d * d)
