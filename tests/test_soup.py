"""Model soups: the average is element-wise, batch-norm statistics are re-estimated exactly, and the
greedy soup keeps a run only when validation does not drop."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from soup import average_state_dicts, greedy_soup, refresh_batch_norm


def test_average_is_elementwise_and_keeps_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor(9)}
    mean = average_state_dicts([a, b])
    torch.testing.assert_close(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["steps"].item() == 5
    with pytest.raises(ValueError, match="same architecture"):
        average_state_dicts([a, {"w": torch.zeros(3), "steps": torch.tensor(1)}])


def test_refreshed_batch_norm_holds_the_exact_statistics_of_the_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 4, 4, 3), dtype=np.uint8)
    model = nn.Sequential(nn.BatchNorm2d(3))
    model[0].running_mean.fill_(7.0)  # stale statistics, as after averaging
    refresh_batch_norm(model, images, batch_size=8, flip=False)
    pixels = torch.from_numpy(images).float().div(255).permute(3, 0, 1, 2).reshape(3, -1)
    torch.testing.assert_close(model[0].running_mean, pixels.mean(1))
    per_batch_var = pixels.reshape(3, 4, -1).var(2, unbiased=True).mean(1)  # four equal batches, unbiased each
    torch.testing.assert_close(model[0].running_var, per_batch_var)
    assert not model.training and model[0].momentum == 0.1


def test_greedy_soup_skips_a_run_that_would_lower_validation():
    runs = [{"w": torch.tensor([v])} for v in (1.0, 5.0, 1.4)]
    val_scores = [0.9, 0.8, 0.7]  # visited in this order: run 0, then 1, then 2

    def score(members):  # best near w = 1.2: adding run 1 (w -> 3) hurts, run 2 (w -> 1.2) helps
        return -abs(average_state_dicts(members)["w"].item() - 1.2)

    kept, best = greedy_soup(runs, val_scores, score)
    assert kept == [0, 2] and best == pytest.approx(0.0, abs=1e-6)
