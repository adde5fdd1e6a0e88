"""Small statistics shared by the benchmarks."""

from __future__ import annotations

import numpy as np


def standard_error(values) -> float:
    """The standard error of the mean of ``values``: sample sd (n − 1) / √n (NaN for fewer than 2)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values)))
