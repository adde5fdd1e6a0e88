"""Each discrepancy against a NumPy reference, with unequal batch sizes."""

import numpy as np
import pytest
import torch

from emoadapt.adapt import CORAL, LinearMMD, MultiKernelMMD, make_discrepancy


def _np_mk_mmd(s, t, multipliers):
    joint = np.concatenate([s, t])
    d2 = ((joint[:, None, :] - joint[None, :, :]) ** 2).sum(-1)
    n = len(joint)
    mean = d2.sum() / (n * (n - 1))
    k = sum(np.exp(-d2 / (2 * m * mean)) for m in multipliers)
    ns = len(s)
    return k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean()


def _np_coral(s, t):
    cs, ct = np.cov(s, rowvar=False), np.cov(t, rowvar=False)
    return ((cs - ct) ** 2).sum() / (4 * s.shape[1] ** 2)


@pytest.fixture
def batches():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 5)), rng.normal(loc=0.7, size=(9, 5))


def test_multi_kernel_mmd_matches_numpy(batches):
    s, t = batches
    mult = (0.5, 1.0, 2.0)
    got = MultiKernelMMD(mult)(torch.tensor(s), torch.tensor(t))
    assert float(got) == pytest.approx(_np_mk_mmd(s, t, mult), rel=1e-6)


def test_linear_mmd_and_coral_match_numpy(batches):
    s, t = batches
    assert float(LinearMMD()(torch.tensor(s), torch.tensor(t))) == pytest.approx(
        ((s.mean(0) - t.mean(0)) ** 2).sum(), rel=1e-9)
    assert float(CORAL()(torch.tensor(s), torch.tensor(t))) == pytest.approx(_np_coral(s, t), rel=1e-9)


@pytest.mark.parametrize("name", ["mmd", "linear-mmd", "coral"])
def test_discrepancy_is_small_for_one_distribution_and_large_for_two(name):
    gen = torch.Generator().manual_seed(0)
    same = make_discrepancy(name)(torch.randn(64, 8, generator=gen), torch.randn(48, 8, generator=gen))
    shifted = make_discrepancy(name)(torch.randn(64, 8, generator=gen), 2 * torch.randn(48, 8, generator=gen) + 1)
    assert float(shifted) > 5 * float(same) >= 0


def test_none_is_zero_and_unknown_names_are_refused():
    assert float(make_discrepancy("none")(torch.ones(3, 2), torch.zeros(4, 2))) == 0
    with pytest.raises(ValueError, match="unknown discrepancy"):
        make_discrepancy("kl")


def test_mmd_gradients_flow_to_both_batches():
    s = torch.randn(6, 3, requires_grad=True)
    t = torch.randn(5, 3, requires_grad=True)
    MultiKernelMMD()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
