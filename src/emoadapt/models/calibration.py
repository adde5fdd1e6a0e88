"""Confidence that a model can back: temperature scaling, an out-of-distribution score and the
``uncertain`` verdict every prediction carries (issue #22).

A calibration is a small JSON file beside the weights (``weights/<name>.calibration.json`` for a
shipped preset, named by its ``extra["calibration"]``; ``<stem>.calibration.json`` beside any other
``.safetensors`` file), written by ``emoadapt calibrate`` (:mod:`emoadapt.calibrate`). It holds

* ``temperature`` T > 0: probabilities are ``softmax(logits / T)``, T fitted on the validation
  split by minimising the negative log-likelihood;
* the OOD score: ``mahalanobis`` — the squared Mahalanobis distance of the ``pre_logits`` features
  (D,) to the training images' mean, in the top-k principal directions plus the residual, divided
  by D — or ``energy`` — ``-logsumexp(logits)`` (no features needed); higher means less like the
  training images;
* ``ood_threshold``: an image scoring above it is *unfamiliar* (chosen on validation so that a
  fixed share of the validation images, ``ood_quantile``, stay below it);
* ``min_confidence``: a top probability below it is *low confidence*.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError
from ..fileio import atomic_write_json

FORMAT = "emoadapt-calibration"
OOD_KINDS = ("mahalanobis", "energy")
#: without a calibration file: plain softmax, no OOD score, only the low-confidence rule
DEFAULT_MIN_CONFIDENCE = 0.4
#: pixel standard deviation (values in [0, 1]) under which an input is blank: a flat colour gives
#: 0, a photo typically 0.15–0.3; the model says "anger 0.88" for a black image, so it is checked
BLANK_SPREAD = 0.02


@dataclass
class Calibration:
    """See the module docstring. Arrays are lists in JSON; ``fitted`` records how it was made."""

    temperature: float = 1.0
    ood_kind: str | None = None
    ood_threshold: float | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    mean: np.ndarray | None = None         # (D,) training features' mean
    components: np.ndarray | None = None   # (k, D) principal directions (rows, unit length)
    variances: np.ndarray | None = None    # (k,) variance along each direction
    residual_variance: float | None = None  # mean variance of the D - k discarded directions
    fitted: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_features(self) -> bool:
        return self.ood_kind == "mahalanobis"

    @property
    def calibrated(self) -> bool:
        return bool(self.fitted)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits → (N, K) temperature-scaled softmax."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature)

    def ood_scores(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray | None:
        """(N,) OOD scores (higher: less like the training images), or ``None`` without an OOD score."""
        if self.ood_kind == "energy":
            return energy_scores(logits)
        if self.ood_kind == "mahalanobis":
            if features is None:
                raise CheckpointError("this calibration's OOD score needs the model's pre_logits features")
            return mahalanobis_scores(features, self.mean, self.components, self.variances, self.residual_variance)
        return None

    def judge(self, probs: np.ndarray, scores: np.ndarray | None,
              spread: np.ndarray | None = None) -> list[dict[str, Any]]:
        """One ``{"uncertain": bool, "uncertain_reason": str | None, "ood_score": float | None}`` per
        row; ``spread`` (N,) is each input's pixel standard deviation per channel, averaged over the
        channels ([0, 1] units); below :data:`BLANK_SPREAD` the image counts as blank (the scores
        cannot be trusted to catch that)."""
        verdicts = []
        for index, row in enumerate(np.asarray(probs)):
            score = None if scores is None else float(scores[index])
            reasons = []
            if spread is not None and float(spread[index]) < BLANK_SPREAD:
                reasons.append(f"a blank or nearly uniform image (pixel spread {float(spread[index]):.3f})")
            if score is not None and self.ood_threshold is not None and score > self.ood_threshold:
                reasons.append(f"unlike the images the model was trained on (OOD score {score:.2f} > "
                               f"threshold {self.ood_threshold:.2f})")
            if float(row.max()) < self.min_confidence:
                reasons.append(f"low confidence (top probability {float(row.max()):.2f} < {self.min_confidence:.2f})")
            if not self.calibrated:
                reasons += ["no calibration for this model"] if reasons else []
            verdicts.append({"uncertain": bool(reasons), "uncertain_reason": "; ".join(reasons) or None,
                             "ood_score": None if score is None else round(score, 4)})
        return verdicts

    def to_dict(self) -> dict[str, Any]:
        data = {key: (value.tolist() if isinstance(value, np.ndarray) else value) for key, value in asdict(self).items()}
        return {"format": FORMAT, **data}

    def save(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "calibration") -> "Calibration":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{source} is not an emoadapt calibration file (format {FORMAT!r})")
        data = {k: v for k, v in data.items() if k != "format"}
        arrays = {k: (None if data.get(k) is None else np.asarray(data[k], dtype=np.float64))
                  for k in ("mean", "components", "variances")}
        try:
            calibration = cls(**{**data, **arrays})
        except TypeError as exc:
            raise CheckpointError(f"{source}: bad calibration fields ({exc})") from None
        if not calibration.temperature > 0 or calibration.ood_kind not in (None, *OOD_KINDS):
            raise CheckpointError(f"{source}: temperature must be > 0 and ood_kind one of {OOD_KINDS}")
        return calibration

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read calibration {path}: {exc}") from None
        return cls.from_dict(data, str(path))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def energy_scores(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits → (N,) ``-logsumexp(logits)``: low for confident, familiar inputs."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1)
    return -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def mahalanobis_scores(features: np.ndarray, mean: np.ndarray, components: np.ndarray, variances: np.ndarray,
                       residual_variance: float) -> np.ndarray:
    """(N, D) features → (N,) squared Mahalanobis distance / D under the fitted Gaussian: whitened
    projections on the k principal directions plus the residual's energy over its mean variance."""
    centred = np.asarray(features, dtype=np.float64) - mean
    projected = centred @ components.T                       # (N, k)
    residual = (centred ** 2).sum(axis=1) - (projected ** 2).sum(axis=1)
    distance = (projected ** 2 / variances).sum(axis=1) + np.maximum(residual, 0.0) / residual_variance
    return distance / centred.shape[1]


def fit_gaussian(features: np.ndarray, k: int = 32, floor: float = 1e-6) -> dict[str, Any]:
    """PCA Gaussian of (N, D) training features: ``mean``, ``components`` (k, D), ``variances`` (k,)
    and ``residual_variance`` (mean of the other D − k eigenvalues; all floored at ``floor``)."""
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    eigenvalues, vectors = np.linalg.eigh(np.cov(features - mean, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.maximum(eigenvalues[order], floor), vectors[:, order]
    k = max(1, min(k, features.shape[1] - 1))
    return {"mean": mean, "components": vectors[:, :k].T.copy(), "variances": eigenvalues[:k],
            "residual_variance": float(max(eigenvalues[k:].mean(), floor))}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the mean negative log-likelihood of ``labels`` under
    ``softmax(logits / T)`` (golden-section search on log T; the NLL is convex in 1/T)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)

    def nll(log_t: float) -> float:
        probs = softmax(logits / np.exp(log_t))
        return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())

    low, high = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean over ``bins`` equal-width confidence bins of |accuracy − confidence|, weighted
    by the bin's share of the images (top-class confidence)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher for ``positives`` (ties count ½)."""
    negatives, positives = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def calibration_path_for(weights: str | Path) -> Path:
    """Where a ``.safetensors`` file's calibration lives: ``<stem>.calibration.json`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".calibration.json")


def load_calibration(meta: dict[str, Any]) -> "Calibration":
    """The :class:`~emoadapt.models.calibration.Calibration` the model's metadata points to
    (``calibration_path``), else the default (plain softmax, low-confidence rule only)."""
    if isinstance(meta.get("calibration"), dict):  # carried inside an exported .onnx file
        return Calibration.from_dict(meta["calibration"], f"{meta.get('name')}.onnx metadata")
    path = meta.get("calibration_path")
    if not path:
        return Calibration()
    calibration = Calibration.load(path)
    fitted_for, weights = calibration.fitted.get("weights_sha256"), meta.get("weights_sha256")
    if fitted_for and weights and fitted_for != weights:
        raise CheckpointError(f"{path} was fitted for other weights (sha256 {fitted_for[:12]}…, these are "
                              f"{weights[:12]}…): refit it with emoadapt calibrate (docs/web.md, 'Confidence')")
    return calibration
