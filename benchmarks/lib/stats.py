"""Small statistics shared by the benchmarks."""

from __future__ import annotations

import numpy as np


def standard_error(values) -> float:
    """The standard error of the mean of ``values``: sample sd (n − 1) / √n (NaN for fewer than 2)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def stratified_folds(labels, seed: int, folds: int = 5):
    """(N,) int fold of each item: the test folds of ``StratifiedKFold(folds, shuffle=True,
    random_state=seed)`` over ``labels`` (issue #30's split; benchmarks/recipe_skf.py writes it as a manifest)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    fold = np.zeros(len(labels), int)
    for k, (_, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)):
        fold[test] = k
    return fold
