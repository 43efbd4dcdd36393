"""Protocol ``mnist-4-8`` (see ``../shared/PROTOCOLS.md``).

* Data: ``mnist/mnist.pkl.gz`` = (train 50k, valid 10k, test 10k), read by
  :func:`streams.datasets.load_mnist` (restricted unpickler). Normal = every digit except 4 and 8.
* **Train** on the normal digits of train (40,299 images).
* **Tuning set** (model selection and threshold only): the normal digits of valid (8,008)
  plus every 8 of train and valid (4,875 + 976 = 5,851; label 1).
* **Threshold**: the point of the tuning set's PR curve closest to (precision 1, recall 1),
  Euclidean; a digit is anomalous when its score is **at or above** it.
  The recall-first alternative (an extra, not the protocol's): the highest threshold whose
  tuning recall is at least ``RECALL_TARGET`` (0.95).
* **Final test**: the normal digits of test (8,044) plus every 4 of test (982). The 4s of
  train and valid are never used.
* Report ROC AUC, PR AUC, and F1, precision, recall, accuracy at the tuned threshold;
  seeds 0, 1, 2, mean ± std.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NAME = "mnist-4-8"
ANOMALY_TUNE = 8
ANOMALY_TEST = 4
RECALL_TARGET = 0.95
SEEDS = (0, 1, 2)


@dataclass
class MnistSplit:
    """The three sets of ``mnist-4-8``; labels are 1 for the anomalous digit, 0 for normal.
    ``*_digits`` keep the original digit of every row (for reports)."""

    X_train: np.ndarray
    X_tune: np.ndarray
    y_tune: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    tune_digits: np.ndarray
    test_digits: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {
            "train": int(len(self.X_train)),
            "tune_normal": int((self.y_tune == 0).sum()),
            "tune_8": int((self.y_tune == 1).sum()),
            "test_normal": int((self.y_test == 0).sum()),
            "test_4": int((self.y_test == 1).sum()),
        }


def split(splits: Any) -> MnistSplit:
    """Build the protocol's sets from ``((Xtr, ytr), (Xva, yva), (Xte, yte))``.

    >>> import numpy as np
    >>> y = np.array([0, 4, 8, 1])
    >>> X = np.arange(4, dtype=np.float32)[:, None]
    >>> s = split(((X, y), (X, y), (X, y)))
    >>> s.sizes()
    {'train': 2, 'tune_normal': 2, 'tune_8': 2, 'test_normal': 2, 'test_4': 1}
    """
    (Xtr, ytr), (Xva, yva), (Xte, yte) = splits

    def normal(y):
        return (y != ANOMALY_TEST) & (y != ANOMALY_TUNE)

    X_tune = np.concatenate([Xva[normal(yva)], Xtr[ytr == ANOMALY_TUNE], Xva[yva == ANOMALY_TUNE]])
    d_tune = np.concatenate([yva[normal(yva)], ytr[ytr == ANOMALY_TUNE], yva[yva == ANOMALY_TUNE]])
    X_test = np.concatenate([Xte[normal(yte)], Xte[yte == ANOMALY_TEST]])
    d_test = np.concatenate([yte[normal(yte)], yte[yte == ANOMALY_TEST]])
    return MnistSplit(
        X_train=np.ascontiguousarray(Xtr[normal(ytr)]),
        X_tune=X_tune,
        y_tune=(d_tune == ANOMALY_TUNE).astype(np.int64),
        X_test=X_test,
        y_test=(d_test == ANOMALY_TEST).astype(np.int64),
        tune_digits=d_tune.astype(np.int64),
        test_digits=d_test.astype(np.int64),
    )


def load(data_dir: Any = None) -> MnistSplit:
    """The protocol's sets from the real data (``streams.datasets.load_mnist``)."""
    from streams.datasets import load_mnist

    return split(load_mnist(data_dir))


def recall_first_threshold(y: Any, scores: Any, target: float = RECALL_TARGET) -> float:
    """The highest threshold (``score >= t``) whose recall on ``y`` is at least ``target``.

    >>> recall_first_threshold([0, 1, 1, 1], [0.1, 0.5, 0.6, 0.9], target=0.6)
    0.6
    """
    y = np.asarray(y).astype(int).reshape(-1)
    s = np.sort(np.asarray(scores, dtype=float).reshape(-1)[y == 1])[::-1]
    k = max(1, int(np.ceil(target * len(s))))
    return float(s[k - 1])


def evaluate(tune_scores: np.ndarray, test_scores: np.ndarray, split_: MnistSplit) -> dict[str, Any]:
    """Protocol metrics for one model: the tuned thresholds (PR corner and recall-first) and the
    final-test metrics at each. Keys of the protocol's own threshold are unprefixed."""
    from monitor.evaluation import at_threshold, binary_metrics, pr_auc, pr_closest_to_corner, roc_auc

    thr = pr_closest_to_corner(split_.y_tune, tune_scores)
    thr_r = recall_first_threshold(split_.y_tune, tune_scores)
    out: dict[str, Any] = {
        "tune_roc_auc": roc_auc(split_.y_tune, tune_scores),
        "tune_pr_auc": pr_auc(split_.y_tune, tune_scores),
    }
    out.update(binary_metrics(split_.y_test, test_scores, thr, inclusive=True))
    tune_at = at_threshold(split_.y_tune, tune_scores, thr, inclusive=True)
    out["tune_f1"] = tune_at["f1"]
    rf = at_threshold(split_.y_test, test_scores, thr_r, inclusive=True)
    for k in ("threshold", "precision", "recall", "f1", "accuracy", "fpr", "tp", "fp", "fn", "tn"):
        out[f"recall_first_{k}"] = rf[k]
    return out
