"""The training reports' metrics (``emoadapt.training.metrics``, numpy only) agree with scikit-learn's."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from emoadapt.training.metrics import classification_report


@pytest.mark.parametrize("seed", range(6))
def test_report_matches_scikit_learn_with_missing_and_never_predicted_classes(seed):
    rng = np.random.default_rng(seed)
    k, n = 5, int(rng.integers(1, 40))
    labels = rng.integers(0, k - 1 - seed % 2, n)  # the last class (or two) never occurs
    probs = rng.random((n, k))
    probs[:, seed % k] = 0  # one class is never predicted
    report = classification_report(labels, probs, [f"c{i}" for i in range(k)])
    preds = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=range(k), zero_division=0)
    assert report["confusion"] == confusion_matrix(labels, preds, labels=range(k)).tolist()
    assert report["macro_f1"] == pytest.approx(f1_score(labels, preds, labels=range(k), average="macro",
                                                        zero_division=0), abs=1e-12)
    rows = [report["per_class"][f"c{i}"] for i in range(k)]
    np.testing.assert_allclose([r["precision"] for r in rows], precision, atol=1e-12)
    np.testing.assert_allclose([r["recall"] for r in rows], recall, atol=1e-12)
    np.testing.assert_allclose([r["f1"] for r in rows], f1, atol=1e-12)
    assert [r["support"] for r in rows] == support.tolist()
    assert report["accuracy"] == pytest.approx(float((preds == labels).mean()))


def test_an_empty_split_reports_nan_accuracy_and_zero_counts():
    report = classification_report(np.zeros(0, int), np.zeros((0, 3)), ["a", "b", "c"])
    assert report["n"] == 0 and np.isnan(report["accuracy"]) and report["macro_f1"] == 0.0
    assert report["confusion"] == [[0] * 3] * 3
