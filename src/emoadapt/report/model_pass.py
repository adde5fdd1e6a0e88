"""One model over the report's images: logits and pooled features of the embedding taps in one
pass, and the DnCShap explanations of the chosen examples (public explain API only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.labels import FER_CLASSES, fer_classes_in_ier_order
from ..data.transforms import fit_images, uint8_to_tensor


@dataclass
class Pass:
    """``logits`` (N, K) float32 in the model's own classes, ``features`` {tap: (N, D) float32}."""

    logits: np.ndarray
    features: dict[str, np.ndarray]


def default_taps(model: torch.nn.Module) -> list[str]:
    """pre_logits and the last spatial tap, as far as the model has them (names from ``model.taps``)."""
    from ..attribution import layer_taps

    taps = tuple(getattr(model, "taps", ()))
    spatial = layer_taps(model)
    return [t for t in dict.fromkeys(("pre_logits" if "pre_logits" in taps else None,
                                      spatial[-1] if spatial else None)) if t]


@torch.no_grad()
def run_model(model: torch.nn.Module, images: np.ndarray, taps: Sequence[str], *, batch_size: int = 32,
              desc: str = "predict", progress: bool = True) -> Pass:
    """Forward uint8 images (N, S, S, C) (fitted to the model's input first) once, keeping the
    logits and each tap's activation (a spatial one averaged over its positions)."""
    model.eval()
    images = fit_images(images, model.config.input_size, model.config.in_chans)
    wanted = tuple(dict.fromkeys(("logits", *taps)))
    forward = taps_forward(model, wanted)
    logits, features = [], {t: [] for t in taps}
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress,
                      leave=False):
        out = forward(uint8_to_tensor(images[start:start + batch_size]))
        logits.append(np.asarray(out["logits"], np.float32))
        for tap in taps:
            a = np.asarray(out[tap], np.float32)
            features[tap].append(a.mean(axis=(2, 3)) if a.ndim == 4 else a.reshape(len(a), -1))
    k = model.config.num_classes
    return Pass(np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
                {t: np.concatenate(v) if v else np.zeros((0, 1), np.float32) for t, v in features.items()})


def taps_forward(model: torch.nn.Module, taps: tuple[str, ...]):
    """images (N, C, S, S) → {tap: array}: an onnxruntime session exporting ``taps`` (cached on disk,
    several times faster than torch on a CPU), or the torch model when onnxruntime or the export
    is not available."""
    try:
        from ..models.onnx import onnx_session

        session = onnx_session(model, taps=taps)
    except Exception:  # no onnxruntime, or a model the exporter cannot trace: the torch model
        return lambda x: {k: v.float().numpy() for k, v in model.forward_taps(x, taps).items()}
    names, feed = [o.name for o in session.get_outputs()], session.get_inputs()[0].name
    return lambda x: dict(zip(names, session.run(None, {feed: x.numpy()})))


def model_target(predicted: int, mapping: str, model_classes: Sequence[str]) -> int:
    """The model output to explain for a predicted class of the report: a FER model scored in
    the IER classes explains the FER class behind the IER class (disgust for hate…)."""
    if mapping == "ier" and tuple(model_classes) == FER_CLASSES:
        return FER_CLASSES.index(fer_classes_in_ier_order()[predicted])
    return predicted


def picture_of(image: np.ndarray) -> np.ndarray:
    """uint8 (S, S, C) → float (S, S) grey or (S, S, 3) in [0, 1] for imshow."""
    array = image.astype(np.float32) / 255.0
    return array[:, :, 0] if array.shape[-1] == 1 else array


def explain_examples(predictor: Any, images: np.ndarray, examples: list[dict], out_dir: Path, *,
                     budget: int, layer_grids: int, depth: int, max_evals: int | None, model_classes: Sequence[str],
                     mapping: str, prefix: str = "", progress: bool = True) -> None:
    """Write an overlay PNG (explained, the first ``budget`` examples) or a thumbnail for every
    example, and a layer-wise grid for the first ``layer_grids`` explained ones; each example dict
    gets ``image``, ``explanation`` (or ``None``) and ``layer_grid`` (or ``None``). The explanations
    are the predictor's (:meth:`~emoadapt.predictor.Predictor.explainer`: onnxruntime when loaded,
    its calibration, the shared defaults), as in ``emoadapt explain`` and the web app."""
    from ..attribution import explain_layers, layer_taps, save_layer_grid
    from .figures import save_overlay_with_scale, save_thumbnail

    model = predictor.model
    images = fit_images(images, model.config.input_size, model.config.in_chans)
    explainer = predictor.explainer(depth, max_evals=max_evals)
    grids = 0
    bar = tqdm(examples, desc=f"explain {prefix.strip('-')}", unit="img", disable=not progress)
    for n, example in enumerate(bar):
        name = f"{prefix}{example['true']}-{example['kind']}-{example['rank'] + 1}"
        picture = picture_of(images[example["index"]])
        title = f"true {example['true']} · pred {example['predicted']} ({example['confidence']:.2f})"
        example.update(explanation=None, layer_grid=None)
        if n >= budget:
            example["image"] = save_thumbnail(picture, out_dir / f"{name}.png", title).name
            continue
        x = uint8_to_tensor(images[example["index"]][None])[0]
        target = model_target(example["predicted_index"], mapping, model_classes)
        result = explainer.attribute(x, target)
        example["image"] = save_overlay_with_scale(picture, result.map, out_dir / f"{name}.png", title).name
        example["explanation"] = {"target": result.target_name or str(result.target),
                                  "probability": round(float(result.probability), 4),
                                  "base_value": round(float(result.base_value), 4),
                                  "full_value": round(float(result.full_value), 4),
                                  "depth": int(result.depth), "evaluations": int(result.evaluations),
                                  "seconds": round(float(result.seconds), 3),
                                  "precision": getattr(predictor, "explain_precision", "fp32")}
        if grids < layer_grids and layer_taps(model):
            by_tap = explain_layers(model, x, depth=min(depth, 4), target=target, class_names=list(model_classes))
            example["layer_grid"] = save_layer_grid(x, by_tap, out_dir / f"{name}-layers.png").name
            grids += 1
