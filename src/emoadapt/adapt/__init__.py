"""Feature-based domain adaptation from faces (FER) to generic images (IER), SPEC §3."""

from __future__ import annotations

from torch import nn

from .coral import CORAL
from .mmd import LinearMMD, MultiKernelMMD


class NoDiscrepancy(nn.Module):
    """The ablation baseline: always 0."""

    def forward(self, f_s, f_t):
        return f_s.new_zeros(())


DISCREPANCIES = {"mmd": MultiKernelMMD, "linear-mmd": LinearMMD, "coral": CORAL, "none": NoDiscrepancy}


def make_discrepancy(name: str) -> nn.Module:
    """``mmd`` (multi-kernel Gaussian, default), ``linear-mmd``, ``coral`` or ``none``."""
    try:
        return DISCREPANCIES[name]()
    except KeyError:
        raise ValueError(f"unknown discrepancy {name!r}; choose from {', '.join(DISCREPANCIES)}") from None


__all__ = ["CORAL", "DISCREPANCIES", "LinearMMD", "MultiKernelMMD", "NoDiscrepancy", "make_discrepancy"]
