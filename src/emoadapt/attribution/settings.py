"""Explanation defaults and their validation, in one torch-free place.

The CLI (``explain``, ``predict --explain``, ``demo``), the Python API, the web app and the
explainers themselves read their defaults from here and check user values with these functions,
so a default or a range is written once. Importing this module does not import torch (the CLI
builds its ``--help`` from it).

Every check raises :class:`~emoadapt.errors.EmoadaptError` (a ``ValueError``) with a message that
names the option and the accepted values.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import EmoadaptError

#: Partition depth T of DnCShap: 2**T regions (5: 32 regions of 28 × 56 px on the 224 px model; with
#: both contexts the whole tree costs 124 model evaluations, docs/dncshap.md §8).
DEPTH = 5
#: Largest depth the web app lets a client ask for (2**10 regions).
MAX_DEPTH = 10
#: Budget of model evaluations (``None``: the whole tree, see :func:`tree_evaluations`).
MAX_EVALS: int | None = None
#: Largest budget the web app lets a client ask for.
MAX_EVALS_LIMIT = 4 * 2 ** MAX_DEPTH
#: Images per model call, everywhere (explainers, faithfulness curves, CLI, web). 16, not 64: the same speed on a
#: CPU at a third of the peak memory (make run's: benchmarks/results/run_memory.json, docs/reliability.md).
BATCH_SIZE = 16
#: What absent pixels become: a name, a number or a tensor (see ``resolve_baseline``).
BASELINES = ("zero", "mean", "blur")
BASELINE = "zero"
#: What absent cells of a layer become (layer-wise DnCShap).
LAYER_BASELINES = ("zero", "mean-activation")
#: DnCShap variants: the clean, efficient one and the authors' recursion with its quirks.
VARIANTS = ("clean", "reference")
VARIANT = "clean"
#: The context in which a node of the tree is split (docs/dncshap.md §3): "both" averages the
#: rest-of-image-present and rest-of-image-absent games (Owen-style); the others use one of them.
CONTEXTS = ("both", "present", "absent")
CONTEXT = "both"
#: How the image is cut into regions (docs/dncshap.md §2): "grid" halves every node at its middle;
#: "content" cuts each node where its two halves are most uniform in colour (edges between objects).
REGIONS = ("grid", "content")
REGION = "grid"


def check_depth(depth: Any, maximum: int | None = None) -> int:
    """``depth`` as an int in ``0..maximum`` (no upper bound when ``maximum`` is None)."""
    return _checked_int(depth, "depth", 0, maximum)


def check_max_evals(max_evals: Any, maximum: int | None = None, name: str = "max_evals") -> int | None:
    """A budget of model evaluations: ``None`` or ``"full"`` (the whole tree) or an int ≥ 2."""
    if max_evals is None or max_evals == "full":
        return None
    return _checked_int(max_evals, name, 2, maximum, " or 'full'")


def _checked_int(value: Any, name: str, minimum: int, maximum: int | None, alternative: str = "") -> int:
    """``value`` (an int or a string of digits, not a bool) as an int in ``minimum..maximum``; the
    error names ``name`` and any ``alternative`` the caller also accepts."""
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            raise EmoadaptError(f"{name} must be an integer of at least {minimum}{alternative}, got {value!r}")
        value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise EmoadaptError(f"{name} must be {bound}{alternative}, got {value}")
    return value


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """``batch_size`` as an int of at least 1 (digit strings accepted)."""
    if isinstance(batch_size, str) and batch_size.strip().isdigit():
        batch_size = int(batch_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EmoadaptError(f"{name} must be an integer of at least 1, got {batch_size!r}")
    return batch_size


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise EmoadaptError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def parse_baseline(value: str) -> str | float:
    """A baseline given as text (CLI, web form): one of :data:`BASELINES` or a number."""
    if value in BASELINES:
        return value
    try:
        return float(value)
    except ValueError:
        raise EmoadaptError(f"baseline must be {', '.join(BASELINES)} or a number, got {value!r}") from None


def check_target(target: Any, classes: Sequence[str] | None = None, outputs: int | None = None) -> int | None:
    """A target given as a class name or index → its index (``None``: the predicted class).

    ``classes`` are the model's class names (needed for names); ``outputs`` its number of outputs
    (checked when known)."""
    if target is None:
        return None
    if isinstance(target, str):
        if classes and target in classes:
            return list(classes).index(target)
        if target.strip().isdigit():
            target = int(target)
        else:
            known = f"; the model's classes are {', '.join(classes)}" if classes else " (the model has no class names)"
            raise EmoadaptError(f"unknown class {target!r}{known}")
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise EmoadaptError(f"target must be a class name or a class index, got {target!r}")
    count = outputs if outputs is not None else (len(classes) if classes else None)
    if count is not None and target >= count:
        raise EmoadaptError(f"target {target} is not a class index of a model with {count} outputs")
    return target


def tree_evaluations(depth: int, context: str = CONTEXT) -> int:
    """Model evaluations of the whole tree at ``depth`` (clean variant, no ties to resolve):
    2**(T+1) with one context, 2**(T+2) − 4 with both (the root split costs 2 either way)."""
    if depth == 0:
        return 2
    return 2 ** (depth + 1) if context != "both" else 2 ** (depth + 2) - 4


def explanation_evaluations(depth: int, max_evals: int | None = None, context: str = CONTEXT) -> int:
    """Model evaluations of one DnCShap explanation (clean variant) at ``depth``: the whole tree
    (:func:`tree_evaluations`), exactly; or the budget ``max_evals`` when it is smaller (the
    explainer never spends more, and stops less than one split — 4 evaluations — short of it).
    ``depth`` is the depth the explainer uses: the requested one capped by the input's size.
    The web app's cost guard uses this same count (tests/test_serve_cost.py checks they agree)."""
    tree = tree_evaluations(depth, context)
    return tree if max_evals is None else min(tree, max_evals)


def layer_evaluations(depth: int, context: str = CONTEXT) -> int:
    """Model evaluations of one layer of a layer-wise explanation at ``depth``: the forward pass
    that computes the activation plus the whole tree (layer-wise explanations take no budget)."""
    return 1 + tree_evaluations(depth, context)
