"""DnCShap: partition, Shapley axioms, cost, the reference variant and the result object."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from emoadapt.attribution import DnCShap, Explanation, build_partition, max_depth, resolve_baseline
from emoadapt.attribution.dncshap import TIE_TOLERANCE
from emoadapt.attribution.settings import CONTEXTS, tree_evaluations


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


def tiny_cnn(seed: int, channels: int = 3, height: int = 8, width: int = 6, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * height * width, classes)).eval()


def compose(image: torch.Tensor, baseline: torch.Tensor, boxes, present) -> torch.Tensor:
    """One image: the pixels of the boxes in ``present`` from ``image``, the rest from ``baseline``."""
    out = baseline.clone()
    for index in present:
        top, left, bottom, right = (int(v) for v in boxes[index])
        out[:, top:bottom, left:right] = image[:, top:bottom, left:right]
    return out


def brute_force_shapley(value, image, baseline, boxes) -> np.ndarray:
    """Exact Shapley values of the regions ``boxes`` by enumerating all coalitions."""
    n = len(boxes)
    v = {s: value(compose(image, baseline, boxes, s))
         for r in range(n + 1) for s in itertools.combinations(range(n), r)}
    phi = np.zeros(n)
    for i in range(n):
        for s in v:
            if i not in s:
                weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                phi[i] += weight * (v[tuple(sorted(s + (i,)))] - v[s])
    return phi


def model_value(model, target):
    def value(image: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(model(image[None]).double(), dim=1)[0, target])
    return value


def quadrant_means(images: torch.Tensor) -> torch.Tensor:
    """(N, C, 8, 8) → (N, 4) means of the quadrants TL, TR, BL, BR (the leaves at depth 2)."""
    return torch.stack([images[:, :, r:r + 4, c:c + 4].mean(dim=(1, 2, 3)) for r in (0, 4) for c in (0, 4)], 1)


def two_class(score: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(score)
    return torch.stack([p, 1 - p], dim=1)


# --- partition ------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width,depth", [(13, 7, 5), (1, 16, 4), (3, 8, 4), (32, 32, 6), (8, 6, 3)])
def test_leaves_tile_the_image(height, width, depth):
    part = build_partition(height, width, depth)
    cover = np.zeros((height, width), dtype=int)
    for top, left, bottom, right in part.leaves:
        assert bottom > top and right > left
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()
    assert len(part.leaves) == 2 ** depth
    assert [len(level) for level in part.levels] == [2 ** d for d in range(depth + 1)]


def test_rows_first_alternating_and_odd_sizes():
    part = build_partition(13, 7, 2)
    assert part.levels[1].tolist() == [[0, 0, 6, 7], [6, 0, 13, 7]]  # first split divides the height
    assert part.levels[2].tolist() == [[0, 0, 6, 3], [0, 3, 6, 7], [6, 0, 13, 3], [6, 3, 13, 7]]


def test_one_pixel_high_region_is_split_along_the_other_axis():
    part = build_partition(1, 16, 3)
    assert all((axes == 1).all() for axes in part.axes)
    assert part.leaves.tolist() == [[0, 2 * i, 1, 2 * i + 2] for i in range(8)]
    part = build_partition(3, 4, 3)  # rows 1 | 2, then columns: level 2 meets two 1×2 and two 2×2 boxes
    assert part.axes[2].tolist() == [1, 1, 0, 0]


def test_max_depth_and_cap():
    assert (max_depth(1, 1), max_depth(2, 2), max_depth(1, 16), max_depth(13, 7)) == (0, 2, 4, 5)
    with pytest.raises(ValueError):
        build_partition(2, 2, 3)
    explanation = DnCShap(tiny_cnn(0, height=2, width=2), depth=9).attribute(torch.rand(3, 2, 2))
    assert (explanation.depth, explanation.requested_depth, len(explanation.values)) == (2, 9, 4)
    assert explanation.evaluations == tree_evaluations(2)


# --- Shapley properties ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("baseline", ["zero", "mean", "blur"])
@pytest.mark.parametrize("context", CONTEXTS)
def test_two_regions_equal_brute_force_shapley(seed, baseline, context):
    model, image = tiny_cnn(seed, height=7, width=5), torch.rand(3, 7, 5, generator=torch.Generator().manual_seed(seed))
    explanation = DnCShap(model, depth=1, baseline=baseline, context=context).attribute(image)
    base, _ = resolve_baseline(baseline, image)
    expected = brute_force_shapley(model_value(model, explanation.target), image, base, explanation.boxes)
    np.testing.assert_allclose(explanation.values, expected, atol=1e-6)


def test_additive_game_gives_exact_shapley_at_every_leaf():
    weights = torch.randn(8, 8, generator=torch.Generator().manual_seed(3)).double()

    def linear(images):  # v(S) = Σ w·x over the present pixels + const: additive in regions
        score = (images[:, 0].double() * weights).sum(dim=(1, 2)) + 0.5
        return torch.stack([score, -score], dim=1)

    image = torch.rand(1, 8, 8)
    for context in CONTEXTS:
        explanation = DnCShap(linear, depth=4, context=context).attribute(image, target=0)
        value = lambda x: float(linear(x[None])[0, 0])
        expected = [value(compose(image, torch.zeros_like(image), explanation.boxes, [i])) - 0.5
                    for i in range(16)]
        np.testing.assert_allclose(explanation.values, expected, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("height,width,depth", [(13, 7, 1), (13, 7, 3), (13, 7, 5), (13, 7, 9), (8, 6, 4), (1, 9, 3)])
@pytest.mark.parametrize("variant_context", CONTEXTS)
def test_efficiency_on_random_models(seed, height, width, depth, variant_context):
    model = tiny_cnn(seed, height=height, width=width)
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed + 10))
    for baseline in ("zero", 0.5):
        e = DnCShap(model, depth=depth, baseline=baseline, context=variant_context).attribute(image)
        assert abs(e.values.sum() - (e.full_value - e.base_value)) < 1e-5
        assert abs(float(e.map.sum(dtype=np.float64)) - e.values.sum()) < 1e-5
        assert e.map.shape == (height, width) and e.map.dtype == np.float32


@pytest.mark.parametrize("context", CONTEXTS)
def test_symmetric_siblings_get_equal_scores(context):
    def model(images):  # symmetric in TL ↔ TR, with interactions everywhere
        m = quadrant_means(images)
        s, p = m[:, 0] + m[:, 1], m[:, 0] * m[:, 1]
        return two_class(2 * s + 3 * p - 4 * m[:, 2] * m[:, 3] + m[:, 3] ** 2 + s * m[:, 3])

    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(4))
    image[:, :4, 4:] = image[:, :4, :4]
    values = DnCShap(model, depth=2, context=context).attribute(image, target=0).values
    assert abs(values[0] - values[1]) < 1e-12 and abs(values[0]) > 1e-3


@pytest.mark.parametrize("context", CONTEXTS)
def test_symmetric_halves_get_mirrored_scores(context):
    def model(images):  # invariant under swapping the top and bottom halves
        m = quadrant_means(images)
        return two_class(3 * m[:, 0] * m[:, 3] + 3 * m[:, 2] * m[:, 1] - 2 * m[:, 1] - 2 * m[:, 3] + m[:, 0] ** 2
                         + m[:, 2] ** 2)

    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(5))
    image[:, 4:] = image[:, :4]
    values = DnCShap(model, depth=2, context=context).attribute(image, target=0).values
    np.testing.assert_allclose(values[:2], values[2:], atol=1e-12)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("depth", [2, 3])
def test_ignored_region_scores_zero(context, depth):
    def model(images):  # ignores the top-left quadrant; TR interacts with the bottom half
        m = quadrant_means(images)
        return two_class(4 * m[:, 1] * m[:, 2] - 3 * m[:, 3] + 2 * m[:, 1] + m[:, 2] * m[:, 3] - m[:, 1] ** 2)

    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(6))
    e = DnCShap(model, depth=depth, context=context).attribute(image, target=0)
    in_tl = (e.boxes[:, 2] <= 4) & (e.boxes[:, 3] <= 4)
    assert in_tl.sum() == 2 ** (depth - 2)
    assert np.abs(e.values[in_tl]).max() == 0.0
    assert np.abs(e.values[~in_tl]).min() > TIE_TOLERANCE


def half_max(images: torch.Tensor) -> torch.Tensor:
    """f = max(mean(TR), mean(BR)): ignores the left half; TR matters only while BR is low."""
    m = quadrant_means(images)
    return two_class(8 * torch.maximum(m[:, 1], m[:, 3]) - 4)


def half_product(images: torch.Tensor) -> torch.Tensor:
    """f = mean(TR) · mean(BR): ignores the left half; TR and BR matter only together."""
    m = quadrant_means(images)
    return two_class(8 * m[:, 1] * m[:, 3] - 1)


@pytest.mark.parametrize("model", [half_max, half_product])
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_dummy_regions_score_zero_when_the_sibling_matters_only_through_outside_regions(model, context, depth,
                                                                                         baseline):
    """Issue #17 defect 2: the left half is ignored; its regions score 0 at every depth and context,
    also where the right-hand sibling is silent in the node's own context (max: TR below BR)."""
    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(depth))
    image[:, 4:, 4:] += 0.5  # BR above TR: with the rest present, TR changes nothing either
    e = DnCShap(model, depth=depth, context=context, baseline=baseline).attribute(image.clamp(0, 1), target=0)
    left = e.boxes[:, 3] <= 4
    assert left.sum() == len(e.values) // 2
    np.testing.assert_allclose(e.values[left], 0.0, atol=1e-12)
    np.testing.assert_allclose(e.values.sum(), e.full_value - e.base_value, atol=1e-12)


def brute_force_owen(value, image, baseline, part) -> np.ndarray:
    """Exact Owen values of the leaves of a binary partition: for each leaf, the mean over the
    2**T unions S of its ancestors' siblings of v(S ∪ leaf) − v(S)."""
    depth, phi = part.depth, []
    for leaf in range(2 ** depth):
        siblings = [((leaf >> (depth - d)) ^ 1, d) for d in range(1, depth + 1)]  # (index, level)
        total = 0.0
        for chosen in itertools.product([False, True], repeat=depth):
            boxes = [part.levels[d][i] for (i, d), c in zip(siblings, chosen) if c]
            with_leaf = boxes + [part.leaves[leaf]]
            total += value(compose(image, baseline, with_leaf, range(len(with_leaf)))) - \
                value(compose(image, baseline, boxes, range(len(boxes))))
        phi.append(total / 2 ** depth)
    return np.array(phi)


@pytest.mark.parametrize("seed", [0, 1])
def test_both_contexts_give_exact_owen_values_at_depth_two(seed):
    model, image = tiny_cnn(seed, height=8, width=6), torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(seed))
    e = DnCShap(model, depth=2, context="both").attribute(image)
    base, _ = resolve_baseline("zero", image)
    expected = brute_force_owen(model_value(model, e.target), image, base, build_partition(8, 6, 2))
    np.testing.assert_allclose(e.values, expected, atol=1e-6)


def test_deterministic():
    model, image = tiny_cnn(7, height=13, width=7), torch.rand(3, 13, 7)
    first, second = (DnCShap(model, depth=4, baseline="blur").attribute(image) for _ in range(2))
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.map, second.map)


# --- cost -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["clean", "reference", "present", "absent"])
@pytest.mark.parametrize("depth", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("batch_size", [3, 64])
def test_evaluation_count_of_the_whole_tree(variant, depth, batch_size):
    calls = []

    def model(images):
        calls.append(len(images))
        return two_class(images.mean(dim=(1, 2, 3)))

    context = variant if variant in CONTEXTS else "both"
    explainer = DnCShap(model, depth=depth, variant="reference" if variant == "reference" else "clean",
                        context=context, batch_size=batch_size)
    explanation = explainer.attribute(torch.rand(1, 16, 16))
    expected = 2 ** (depth + 1) if variant == "reference" else tree_evaluations(depth, context)
    assert explanation.evaluations == sum(calls) == explainer.function.evaluations == expected
    if variant != "reference":
        assert expected == (2 ** (depth + 1) if context != "both" else max(2, 2 ** (depth + 2) - 4))
    assert max(calls) <= batch_size


# --- the reference variant ------------------------------------------------------------------

def _reference_recursion(value, image: torch.Tensor, baseline: torch.Tensor, depth: int) -> dict:
    """Direct transcription of the original recursion as SPEC §4 describes it, quirks included:
    children are shown as whole-image slabs (mask not restricted to the region), φ(B) reuses p2
    where p1 is meant, and the child's context value is passed down as a sum. Returns
    {leaf box: score} for the finest level only."""
    height, width = image.shape[1:]
    scores = {}

    def keep(top, left, bottom, right):
        masked = baseline.clone()
        masked[:, top:bottom, left:right] = image[:, top:bottom, left:right]
        return masked

    def recurse(top, left, bottom, right, level, p0, p12):
        if level % 2 == 0:
            mid = (top + bottom) // 2
            a, b = (top, left, mid, right), (mid, left, bottom, right)
            p1, p2 = value(keep(top, 0, mid, width)), value(keep(mid, 0, bottom, width))
        else:
            mid = (left + right) // 2
            a, b = (top, left, bottom, mid), (top, mid, bottom, right)
            p1, p2 = value(keep(0, left, height, mid)), value(keep(0, mid, height, right))
        phi_a = 0.5 * (p1 - p0) + 0.5 * (p12 - p2)
        phi_b = 0.5 * (p2 - p0) + 0.5 * (p12 - p2)
        if level + 1 == depth:
            scores[a], scores[b] = phi_a, phi_b
            return
        recurse(*a, level + 1, p0 + p2, p1)
        recurse(*b, level + 1, p0 + p1, p2)

    recurse(0, 0, height, width, 0, value(baseline), value(image))
    return scores


def test_reference_variant_matches_the_direct_transcription():
    weights = np.random.default_rng(8).normal(size=(2, 3, 8, 8))

    def model(images):  # NumPy, row-independent: batched and single calls give identical floats
        x = images.numpy().astype(np.float64)
        logits = np.stack([np.tanh(x * weights[k]).sum(axis=(1, 2, 3)) for k in range(2)], axis=1)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(9))
    for depth in (1, 2, 3):
        e = DnCShap(model, depth=depth, variant="reference", batch_size=5).attribute(image)
        value = lambda x: float(model(x[None])[0, e.target])
        expected = _reference_recursion(value, image, torch.zeros_like(image), depth)
        assert [tuple(b) for b in e.boxes.tolist()] == list(expected)
        np.testing.assert_allclose(e.values, list(expected.values()), rtol=0, atol=1e-12)


def test_reference_variant_matches_transcription_on_a_torch_model():
    model, image = tiny_cnn(10, height=8, width=8), torch.rand(3, 8, 8)
    e = DnCShap(model, depth=3, variant="reference").attribute(image)
    expected = _reference_recursion(model_value(model, e.target), image, torch.zeros_like(image), 3)
    np.testing.assert_allclose(e.values, list(expected.values()), atol=1e-6)
    assert abs(e.values.sum() - (e.full_value - e.base_value)) > 1e-3  # the quirks break efficiency


# --- baselines, inputs, result object -------------------------------------------------------

def test_baselines():
    image = torch.rand(3, 12, 10)
    mean, name = resolve_baseline("mean", image)
    assert name == "mean" and torch.allclose(mean[:, 3, 4], image.mean(dim=(1, 2)))
    constant = torch.full((3, 12, 10), 0.3)
    blurred, name = resolve_baseline("blur", constant)
    assert name.startswith("blur(") and torch.allclose(blurred, constant, atol=1e-6)
    assert resolve_baseline("blur", image)[0].std() < image.std()
    assert torch.equal(resolve_baseline(0.25, image)[0], torch.full_like(image, 0.25))
    per_channel = torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    assert torch.equal(resolve_baseline(per_channel, image)[0][:, 5, 5], per_channel.view(3))
    for bad in ("black", torch.zeros(2, 1, 1)):
        with pytest.raises(ValueError):
            resolve_baseline(bad, image)


def test_input_shapes_and_target_checks():
    model = tiny_cnn(11)
    image = torch.rand(3, 8, 6)
    a = DnCShap(model, depth=2).attribute(image)
    b = DnCShap(model, depth=2).attribute(image[None])
    np.testing.assert_array_equal(a.values, b.values)
    assert DnCShap(model, depth=2).attribute(image, target=1).target == 1
    with pytest.raises(ValueError):
        DnCShap(model, depth=2).attribute(image, target=3)
    with pytest.raises(ValueError):
        DnCShap(model).attribute(torch.rand(2, 3, 8, 6))
    for bad in ({"variant": "paper"}, {"context": "half"}, {"depth": -1}, {"batch_size": 0}, {"output": "p"}):
        with pytest.raises(ValueError):
            DnCShap(model, **bad)


def test_explanation_save_load_roundtrip(tmp_path):
    e = DnCShap(tiny_cnn(12), depth=3, class_names=("a", "b", "c")).attribute(torch.rand(3, 8, 6))
    assert e.target_name == ("a", "b", "c")[e.target]
    json_path = e.save(tmp_path / "out" / "img.v1")
    assert json_path.name == "img.v1.json" and (tmp_path / "out" / "img.v1.npy").exists()
    loaded = Explanation.load(json_path)
    for name, value in e.to_dict().items():
        assert loaded.to_dict()[name] == value
    np.testing.assert_array_equal(loaded.map, e.map)
    assert e.save(tmp_path).name == "explanation.json"
    assert Explanation.load(tmp_path).depth == 3


# --- evaluation budget (max_evals) ---------------------------------------------------------

@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("batch_size", [4, 64])
def test_budget_one_split_short_of_the_tree_merges_one_leaf_pair(context, batch_size):
    """One split short of the whole tree: every node but one deepest parent is split, so every
    other leaf carries its full-tree score and the unsplit pair carries their sum."""
    model, image, depth = tiny_cnn(3, height=13, width=7), torch.rand(3, 13, 7), 4
    full = DnCShap(model, depth=depth, context=context).attribute(image)
    short = tree_evaluations(depth, context) - (4 if context == "both" else 2)
    budgeted = DnCShap(model, depth=depth, context=context, batch_size=batch_size, max_evals=short).attribute(image)
    assert budgeted.evaluations == short and len(budgeted.values) == 2 ** depth - 1
    merged = [i for i, box in enumerate(budgeted.boxes) if not (full.boxes == box).all(1).any()]
    assert len(merged) == 1
    pair = np.flatnonzero((full.boxes[:, :2] >= budgeted.boxes[merged[0], :2]).all(1)
                          & (full.boxes[:, 2:] <= budgeted.boxes[merged[0], 2:]).all(1))
    assert len(pair) == 2
    np.testing.assert_allclose(budgeted.values[merged[0]], full.values[pair].sum(), atol=1e-12)
    others = np.delete(budgeted.values, merged[0])
    np.testing.assert_allclose(others, np.delete(full.values, pair), atol=1e-12)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("max_evals", [2, 3, 9, 24, 100])
def test_budget_is_kept_and_scores_stay_efficient(context, max_evals):
    model, image = tiny_cnn(4, height=16, width=12), torch.rand(3, 16, 12)
    e = DnCShap(model, depth=6, context=context, max_evals=max_evals, batch_size=8).attribute(image)
    cost = 4 if context == "both" else 2  # per split below the root (which costs two)
    assert max_evals - cost < e.evaluations <= max_evals or (max_evals < 4 and e.evaluations == 2)
    splits = len(e.values) - 1
    assert e.evaluations == 2 + (2 + cost * (splits - 1) if splits else 0) and e.max_evals == max_evals
    np.testing.assert_allclose(e.values.sum(), e.full_value - e.base_value, atol=1e-12)
    areas = (e.boxes[:, 2] - e.boxes[:, 0]) * (e.boxes[:, 3] - e.boxes[:, 1])
    assert areas.sum() == 16 * 12 and (areas > 0).all()  # the regions tile the image…
    np.testing.assert_allclose(e.map.sum(), e.values.sum(), atol=1e-5)  # …without overlap (paint adds up)


@pytest.mark.parametrize("context", CONTEXTS)
def test_budget_refines_where_the_scores_are(context):
    """Only the bottom-right quadrant moves the output: the budget goes there, the rest stays coarse."""
    def model(images):
        return two_class(8 * quadrant_means(images)[:, 3] - 2)

    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(2))
    cost = 4 if context == "both" else 2
    e = DnCShap(model, depth=6, context=context, max_evals=4 + cost * 11).attribute(image, target=0)
    in_br = (e.boxes[:, 0] >= 4) & (e.boxes[:, 1] >= 4)
    areas = (e.boxes[:, 2] - e.boxes[:, 0]) * (e.boxes[:, 3] - e.boxes[:, 1])
    assert in_br.sum() >= 2 * (~in_br).sum()
    assert areas[in_br].max() < areas[~in_br].min()
    assert e.depth == 6 and e.requested_depth == 6
    np.testing.assert_allclose(e.values[~in_br], 0.0, atol=1e-12)


def test_budget_options_are_checked():
    for bad in ({"max_evals": 1}, {"max_evals": 10, "variant": "reference"}):
        with pytest.raises(ValueError, match="max_evals"):
            DnCShap(tiny_cnn(0), **bad)
    full = DnCShap(tiny_cnn(0), depth=2).attribute(torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(0)))
    roomy = DnCShap(tiny_cnn(0), depth=2, max_evals=1000).attribute(
        torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(0)))
    np.testing.assert_array_equal(full.values, roomy.values)  # a budget above the tree's cost changes nothing
    assert roomy.evaluations == tree_evaluations(2)
