"""LP-FT's first step: fit a network's fresh linear layer as a logistic-regression probe.

Kumar et al. (2022, "Fine-tuning can distort pretrained features") fit the linear head on frozen
features first (LP), then fine-tune everything (FT), so the early, large gradients of a random head
do not rewrite the backbone. Here the probe is the scene baseline's protocol: pooled features of
each training image averaged with those of its mirror image, ``StandardScaler`` +
``LogisticRegression`` with ``C`` chosen by inner 5-fold CV; the scaler is folded into the layer, so
the network computes the probe's decision function exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.transforms import uint8_to_tensor
from .config import ConfigError

#: Inverse L2 strengths the inner cross-validation chooses from (the scene probe's grid).
PROBE_C_GRID = (0.003, 0.01, 0.03, 0.1)


@torch.no_grad()
def frozen_features(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled pre-logit features (N, D) of uint8 images (N, S, S, C), each averaged with its mirror image;
    the model runs in eval mode (batch-norm statistics as trained)."""
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = uint8_to_tensor(images[start:start + batch_size])
        both = model.forward_head(model.forward_features(torch.cat([x, x.flip(-1)])), pre_logits=True)
        chunks.append(((both[:len(x)] + both[len(x):]) / 2).numpy())
    model.train(was_training)
    return np.concatenate(chunks)


def fit_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Standardised L2 logistic regression on ``features`` (N, D), ``C`` from :data:`PROBE_C_GRID` by
    stratified inner 5-fold CV. Returns the weight (K, D) and bias (K,) of the same decision function
    on unstandardised features, and the chosen ``C``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                          {"logisticregression__C": list(PROBE_C_GRID)},
                          cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    search.fit(features, labels)
    scaler, logistic = search.best_estimator_.named_steps.values()
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = logistic.coef_ / scale
    bias = logistic.intercept_ - weight @ scaler.mean_
    return weight, bias, float(search.best_params_["logisticregression__C"])


def linear_layer(model: nn.Module) -> nn.Linear:
    """The model's final linear layer, which must act on the pooled features directly (no dense layers)."""
    classifier = model.classifier
    layer = classifier[-1] if isinstance(classifier, nn.Sequential) else classifier
    if not isinstance(layer, nn.Linear) or len(getattr(model, "dense", ())) > 0:
        raise ConfigError("--head probe needs a linear head on the pooled features: pass --bottleneck 0")
    return layer


def probe_head(model: nn.Module, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Set ``model``'s fresh linear layer to the probe fitted on ``images`` (N, S, S, C uint8) and IER
    ``labels`` (N,); returns the chosen ``C``. Every class must be present in ``labels``."""
    layer = linear_layer(model)
    if len(np.unique(labels)) != layer.out_features:
        raise ConfigError(f"the probe needs training images of all {layer.out_features} classes")
    weight, bias, c = fit_probe(frozen_features(model, images), labels, seed)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    return c
