"""The explainers that ``benchmarks/explainers.py`` compares, each as one function
``(model, image, target, budget, tree) -> map (H, W)``, and the model wrapper every library wants
(probabilities from onnxruntime, one thread). DnCShap's variants, shap Partition/Exact, captum
KernelShap/Lime/Occlusion/FeatureAblation/LayerGradCam, the ``lime`` package and a random map;
:data:`METHODS` are run by default, :data:`VARIANTS` with ``--methods``."""

from __future__ import annotations

import numpy as np
import torch

from emoadapt.api import Predictor
from emoadapt.attribution import DnCShap, build_partition
from emoadapt.attribution import paint

TREE_DEPTH = 6  # the regions every region-based method gets: 64 of them
BUDGETS = (64, 128, 512)


# --- the model as every library wants it -----------------------------------------------------

class Model:
    """A shipped model: an onnxruntime session behind a counting (N, C, H, W) → probabilities function."""

    def __init__(self, name: str):
        self.predictor = Predictor(name, runtime="onnx", threads=1)
        self.name, self.session = name, self.predictor.session
        self.input_name = self.session.get_inputs()[0].name
        self.size, self.channels = self.predictor.input_size, self.predictor.channels
        self.evaluations = 0
        self._int8 = None

    def probs(self, images: torch.Tensor | np.ndarray, session=None) -> np.ndarray:
        """(N, C, H, W) → (N, K) softmax probabilities of ``session`` (default: the fp32 one)."""
        session = session or self.session
        batch = np.asarray(images.detach().cpu() if torch.is_tensor(images) else images, dtype=np.float32)
        out = []
        for i in range(0, len(batch), 64):
            logits = session.run(None, {self.input_name: batch[i:i + 64]})[0].astype(np.float64)
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append(e / e.sum(1, keepdims=True))
        self.evaluations += len(batch)
        return np.concatenate(out)

    def int8_probs(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """:meth:`probs` of the model's shipped int8 copy (emoadapt.models.int8), what the product's
        explanations evaluate masked images with on CPUs with VNNI."""
        if self._int8 is None:
            self._int8 = Predictor(self.name, runtime="onnx", threads=1, precision="int8").explain_session
        return self.probs(images, self._int8)

    def torch_probs(self, images: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.probs(images), dtype=torch.float32)


def region_tree(size: int):
    part = build_partition(size, size, TREE_DEPTH)
    leaves = part.leaves
    mask = np.zeros((size, size), dtype=np.int64)
    for i, (t, l, b, r) in enumerate(leaves):
        mask[t:b, l:r] = i
    # scipy linkage matrix of the same binary tree (leaves 0..M-1, clusters M.. bottom-up)
    rows, ids = [], list(range(len(leaves)))
    for level in range(TREE_DEPTH - 1, -1, -1):
        nxt = []
        for i in range(2 ** level):
            a, b = ids[2 * i], ids[2 * i + 1]
            rows.append([a, b, TREE_DEPTH - level, 2 ** (TREE_DEPTH - level)])
            nxt.append(len(leaves) + len(rows) - 1)
        ids = nxt
    return part, mask, np.array(rows, dtype=np.float64)


def compose(x: np.ndarray, mask: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N, M) 0/1 region indicators → (N, C, H, W) images, absent regions at 0 (the zero baseline)."""
    return x[None] * present[:, mask][:, None].astype(np.float32)


# --- the methods: (model, image, target, budget) → (map (H, W), region scores or None) ----------

def dncshap(**options):
    def run(m, x, target, budget, tree):
        depth = options.get("depth", TREE_DEPTH if budget <= 128 else 8)
        full = options.get("full", False)
        e = DnCShap(m.probs, depth=depth, output="probs", max_evals=None if full else budget,
                    **{k: v for k, v in options.items() if k not in ("depth", "full")}).attribute(x, target)
        return e.map
    return run


def dncshap_full(context, int8=False):
    """The whole tree at the deepest depth whose cost fits the budget; ``int8``: the masked images
    evaluated by the model's int8 copy (the map is still scored on the fp32 model)."""
    from emoadapt.attribution.settings import tree_evaluations

    def run(m, x, target, budget, tree):
        depth = max(d for d in range(12) if tree_evaluations(d, context) <= budget)
        e = DnCShap(m.int8_probs if int8 else m.probs, depth=depth, context=context,
                    output="probs").attribute(x, target)
        return e.map
    return run


def reference(m, x, target, budget, tree):
    depth = int(np.log2(budget)) - 1
    return DnCShap(m.probs, depth=depth, variant="reference", output="probs").attribute(x, target).map


def _shap_game(m, x, target, mask):
    xn = x.numpy()
    return lambda z: m.probs(compose(xn, mask, np.asarray(z) > 0.5))[:, target]


def shap_partition(m, x, target, budget, tree):
    import shap

    part, mask, linkage = tree
    masker = shap.maskers.Partition(np.zeros((1, linkage.shape[0] + 1)), clustering=linkage)
    explainer = shap.PartitionExplainer(_shap_game(m, x, target, mask), masker)
    values = explainer(np.ones((1, linkage.shape[0] + 1)), max_evals=budget, batch_size=64, silent=True).values[0]
    return paint(values, part.leaves, m.size, m.size)


def shap_exact(m, x, target, budget, tree):
    """Exact Owen values on the same tree (shap's ExactExplainer with a clustering); ignores the budget."""
    import shap

    part, mask, linkage = tree
    masker = shap.maskers.Partition(np.zeros((1, linkage.shape[0] + 1)), clustering=linkage)
    explainer = shap.ExactExplainer(_shap_game(m, x, target, mask), masker)
    values = explainer(np.ones((1, linkage.shape[0] + 1)), batch_size=64).values[0]
    return paint(values, part.leaves, m.size, m.size)


def _captum_mask(tree):
    return torch.as_tensor(tree[1])[None, None]


def kernel_shap(m, x, target, budget, tree):
    from captum.attr import KernelShap

    a = KernelShap(m.torch_probs).attribute(x[None], baselines=0.0, target=target, feature_mask=_captum_mask(tree),
                                            n_samples=budget, perturbations_per_eval=64)
    return a[0].sum(0).numpy()


def captum_lime(m, x, target, budget, tree):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    a = Lime(m.torch_probs, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(
        x[None], baselines=0.0, target=target, feature_mask=_captum_mask(tree), n_samples=budget,
        perturbations_per_eval=64)
    return a[0].sum(0).numpy()


def occlusion(m, x, target, budget, tree):
    from captum.attr import Occlusion

    s = m.size // 8
    a = Occlusion(m.torch_probs).attribute(x[None], sliding_window_shapes=(m.channels, s, s),
                                           strides=(m.channels, s, s), baselines=0.0, target=target,
                                           perturbations_per_eval=64)
    return a[0].sum(0).numpy()


def feature_ablation(m, x, target, budget, tree):
    from captum.attr import FeatureAblation

    a = FeatureAblation(m.torch_probs).attribute(x[None], baselines=0.0, target=target,
                                                 feature_mask=_captum_mask(tree), perturbations_per_eval=64)
    return a[0].sum(0).numpy()


def grad_cam(m, x, target, budget, tree):
    from captum.attr import LayerAttribution, LayerGradCam

    model = m.predictor.model.eval()
    layer = _cam_layer(model, x)
    m.evaluations += 1
    a = LayerGradCam(model, layer).attribute(x[None], target=target, relu_attributions=True)
    return LayerAttribution.interpolate(a, (m.size, m.size), "bilinear")[0, 0].detach().numpy()


def _cam_layer(model, x):
    """The last convolutional block whose output is at least 5 × 5 (a FusionNet: of its scene branch,
    the ImageNet one that reads the whole image; its face branch is not seen by Grad-CAM)."""
    network = model.branches["scene"] if isinstance(getattr(model, "branches", None), torch.nn.ModuleDict) else model
    blocks = list(getattr(network, "features", None) or getattr(network, "blocks"))
    sizes = []
    hooks = [b.register_forward_hook(lambda mod, i, o, s=sizes: s.append(o.shape[-1])) for b in blocks]
    with torch.no_grad():
        model(x[None])
    for h in hooks:
        h.remove()
    return [b for b, s in zip(blocks, sizes) if s >= 5][-1]


def lime_package(m, x, target, budget, tree):
    from lime import lime_image

    mask = tree[1]
    image = x.numpy().transpose(1, 2, 0).astype(np.float64)
    rgb = image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)

    def classify(batch):
        b = np.asarray(batch, dtype=np.float32).transpose(0, 3, 1, 2)
        return m.probs(b if m.channels == 3 else b[:, :1])

    explanation = lime_image.LimeImageExplainer(random_state=0).explain_instance(
        rgb, classify, labels=(target,), top_labels=None, hide_color=0, num_samples=budget,
        segmentation_fn=lambda _: mask, batch_size=64)
    scores = np.zeros(mask.max() + 1)
    for segment, weight in explanation.local_exp[target]:
        scores[segment] = weight
    return scores[mask]


def random_map(m, x, target, budget, tree):
    return np.random.default_rng(int(x.sum() * 1000) % 2**32).random((m.size, m.size))


class OwenTopDnCShap(DnCShap):
    """Experiment (session 12): DnCShap whose nodes at depth 2 are split in all four contexts of their
    ancestors' siblings (∅, S1, S2, S1 ∪ S2 — the exact Owen contexts, so the 8 regions of level 3
    get exact Owen values), the levels below in the two extreme contexts as usual; the tree is built
    level by level and, when the budget does not reach the whole last level, that level's splits go
    to the largest |allocations| first. Efficiency still holds (every split hands on its allocation)."""

    def refine(self, x, baseline, part, target):
        from emoadapt.attribution.dncshap import GameValues, in_leaf_order, replace_by_children, split_node
        from emoadapt.attribution.partition import box_masks

        root = np.stack([part.levels[0][0], np.zeros(4, dtype=np.int64)])
        u, target = self.evaluate_boxes(x, baseline, root, np.array([True, True]), target)
        values = GameValues(part, u[0], u[1])
        budget = np.inf if self.max_evals is None else self.max_evals - 2
        levels, index, alloc = np.array([0]), np.array([0]), u[:1] - u[1:]
        for d in range(part.depth):
            at = np.flatnonzero(levels == d)
            cost = 2 if d == 0 else (8 if d == 2 else 4)
            if len(at) * cost > budget:
                at = at[np.argsort(-np.abs(alloc[at]), kind="stable")][:int(budget // cost)]
            if not len(at):
                break
            lv, ix, parent_alloc = levels[at], index[at], alloc[at]
            contexts = ("absent",) if d == 0 else ("present", "absent")
            budget -= self.fill_values(values, values.needed(lv, ix, contexts), x, baseline, target)
            games = [values.game(c, lv, ix) for c in contexts]
            if d == 2:  # the two mixed contexts: the level-1 uncle S1 alone, the level-2 sibling S2 alone
                boxes = []
                for i in ix.tolist():
                    s1, s2 = part.levels[1][(i // 2) ^ 1], part.levels[2][i ^ 1]
                    for context in (s1, s2):
                        boxes += [(context, part.levels[3][2 * i]), (context, part.levels[3][2 * i + 1])]
                shown = []
                for start in range(0, len(boxes), self.batch_size):
                    chunk = boxes[start:start + self.batch_size]
                    first = box_masks(np.stack([a for a, _ in chunk]), x.shape[1], x.shape[2], x.device)
                    second = box_masks(np.stack([b for _, b in chunk]), x.shape[1], x.shape[2], x.device)
                    probs = self.function(torch.where(first | second, x[None], baseline[None]))
                    shown.append(probs[:, target])
                shown = np.concatenate(shown).reshape(len(ix), 2, 2)  # node, context (S1, S2), child (A, B)
                budget -= shown.size
                p = ix // 2
                s1_alone = np.array([values.alone[1][j ^ 1] for j in p])
                s1_with_node = np.array([values.without[2][i ^ 1] for i in ix])
                s2_alone = np.array([values.alone[2][i ^ 1] for i in ix])
                s2_with_node = np.array([values.alone[1][j] for j in p])
                games += [np.stack([s1_alone, shown[:, 0, 0], shown[:, 0, 1], s1_with_node]),
                          np.stack([s2_alone, shown[:, 1, 0], shown[:, 1, 1], s2_with_node])]
            levels, index, alloc = replace_by_children(levels, index, alloc, at, split_node(games, parent_alloc))
        scores, boxes = in_leaf_order(part, levels, index, alloc)
        return scores, boxes, u, target, int(levels.max())


def dncshap_owen_top(regions: str = "grid"):
    def run(m, x, target, budget, tree):
        e = OwenTopDnCShap(m.probs, depth=5, output="probs", max_evals=budget, regions=regions).attribute(x, target)
        return e.map
    return run


#: name → (function, budgets it runs at; None: its own fixed cost)
#: methods run at every budget on the first --budget-images images (the others at 128 only)
ALL_BUDGETS = ("DnCShap", "DnCShap present (before #17)", "shap Partition", "captum KernelShap")
METHODS = {
    "DnCShap": (dncshap_full("both"), BUDGETS),  # the default: both contexts, the whole tree that fits
    "DnCShap present (before #17)": (dncshap_full("present"), BUDGETS),
    "DnCShap reference": (reference, BUDGETS),
    "shap Partition": (shap_partition, BUDGETS),
    "shap Exact (Owen)": (shap_exact, None),
    "captum KernelShap": (kernel_shap, BUDGETS),
    "captum Lime": (captum_lime, BUDGETS),
    "lime": (lime_package, BUDGETS),
    "captum Occlusion": (occlusion, None),
    "captum FeatureAblation": (feature_ablation, None),
    "captum LayerGradCam": (grad_cam, None),
    "random": (random_map, None),
}
DEFAULT = "DnCShap"
PEER = "shap Partition"
#: variants tried while improving DnCShap (run with --methods)
VARIANTS = {
    "DnCShap budget": (dncshap(), BUDGETS),
    "DnCShap budget T7": (dncshap(depth=7), BUDGETS),  # issue #33: depth 7 refined largest |score| first
    "DnCShap present budget": (dncshap(context="present"), BUDGETS),
    "DnCShap blur": (dncshap(baseline="blur"), BUDGETS),
    "DnCShap mean": (dncshap(baseline="mean"), BUDGETS),
    "DnCShap depth 10": (dncshap(depth=10), BUDGETS),
    "DnCShap content": (dncshap(depth=5, full=True, regions="content"), BUDGETS),
    "DnCShap content T4": (dncshap(depth=4, full=True, regions="content"), BUDGETS),
    "DnCShap T4": (dncshap(depth=4, full=True), BUDGETS),
    "DnCShap owen-top": (dncshap_owen_top(), BUDGETS),
    "DnCShap owen-top content": (dncshap_owen_top("content"), BUDGETS),  # session 18: the two insertion leads together
    "DnCShap int8": (dncshap_full("both", int8=True), BUDGETS),  # the product's path on CPUs with VNNI
}
