"""A reward as a ranker of pairs (:func:`pairwise_accuracy`) and as a score for a binary label
(:func:`fit_threshold`, :func:`classification_metrics`)."""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.metrics._checks import _NUMERIC_KINDS, _as_labels, _as_numeric, _as_vector, _describe, _first_nonfinite


def pairwise_accuracy(theta, delta) -> float:
    """Fraction of preference pairs that a linear reward ranks correctly.

    Row ``i`` of ``delta`` is ``phi(y_chosen) - phi(y_rejected)`` for pair
    ``i``; the pair is counted correct iff ``delta[i] @ theta > 0``.  Ties
    (a score of exactly zero) count as wrong.

    Parameters
    ----------
    theta : array_like, shape (d,)
        Reward weights.  Finite, non-empty.
    delta : array_like, shape (n, d)
        Feature differences, one preference pair per row.  Finite, ``n >= 1``.

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.

    Raises
    ------
    DataError
        If ``theta`` is not a non-empty finite 1-D array, or ``delta`` is not a
        finite 2-D array with at least one row and ``len(theta)`` columns.

    Examples
    --------
    >>> pairwise_accuracy([1.0, 0.0], [[1.0, 5.0], [-1.0, 0.0], [0.0, 3.0]])
    0.3333333333333333
    """
    theta = _as_vector(theta, "theta")
    delta = _as_numeric(delta, "delta")
    if delta.ndim != 2:
        raise DataError(
            f"delta must be 2-D with shape (n, d), got shape {delta.shape}"
        )
    if delta.shape[0] == 0:
        raise DataError("delta must have at least one row")
    if delta.shape[1] != theta.shape[0]:
        raise DataError(
            f"delta has {delta.shape[1]} columns but theta has length "
            f"{theta.shape[0]}"
        )
    _first_nonfinite(delta, "delta")
    with np.errstate(over="ignore", invalid="ignore"):
        scores = delta @ theta
    return float(np.mean(scores > 0))


def fit_threshold(rewards, labels, criterion: str = "accuracy") -> float:
    """Reward threshold that maximises accuracy (or, with ``criterion="f1"``, the F1 score of the
    positive class) of ``reward > threshold``.

    The rule predicts the positive class (label 1) iff ``reward >
    threshold``.  Candidate thresholds are the midpoints between consecutive
    sorted unique rewards, plus one value below and one above every reward:
    ``min - m`` and ``max + m`` with ``m = max(1, max - min)``.  Among the
    candidates with the highest accuracy the smallest is returned, so the
    result is deterministic.

    With a single class present the answer is therefore below every reward
    (all positive) or above every reward (all negative).

    Parameters
    ----------
    rewards : array_like, shape (n,)
        Finite scores, non-empty.
    labels : array_like, shape (n,)
        Booleans or 0/1 values; 1 is the positive ("good") class.

    Returns
    -------
    float
        The threshold.

    Raises
    ------
    DataError
        If ``rewards`` is not a non-empty finite 1-D array, or ``labels`` has a
        different length or a value other than 0/1.

    Examples
    --------
    >>> fit_threshold([0.0, 2.0, 1.0, 3.0], [0, 0, 1, 1])
    0.5
    """
    r = _as_vector(rewards, "rewards")
    y = _as_labels(labels, r.shape[0], "rewards")

    values, inverse = np.unique(r, return_inverse=True)
    inverse = inverse.reshape(-1)
    pos_at = np.bincount(inverse, weights=y, minlength=values.size)
    neg_at = np.bincount(inverse, weights=~y, minlength=values.size)
    n_pos = int(y.sum())
    # candidate j = -1 (below all) .. k-1 (above all): predict positive for
    # values[j+1:], negative for values[:j+1]
    neg_le = np.concatenate(([0.0], np.cumsum(neg_at)))
    pos_gt = n_pos - np.concatenate(([0.0], np.cumsum(pos_at)))
    if criterion == "accuracy":
        score = np.rint(neg_le + pos_gt).astype(np.int64)
    elif criterion == "f1":
        fp = (r.size - n_pos) - neg_le
        fn = n_pos - pos_gt
        denom = 2 * pos_gt + fp + fn
        score = np.where(denom > 0, 2 * pos_gt / np.where(denom > 0, denom, 1.0), 0.0)
    else:
        raise DataError(f"criterion must be 'accuracy' or 'f1', got {criterion!r}")
    j = int(np.argmax(score)) - 1  # first maximum = smallest threshold

    lo, hi = float(values[0]), float(values[-1])
    if j == -1:
        margin = max(1.0, hi - lo)
        t = lo - margin
        return t if t < lo else float(np.nextafter(lo, -np.inf))
    if j == values.size - 1:
        margin = max(1.0, hi - lo)
        t = hi + margin
        return t if np.isfinite(t) else hi
    a, b = float(values[j]), float(values[j + 1])
    mid = (a + b) / 2
    if not np.isfinite(mid):  # a + b overflowed
        mid = a / 2 + b / 2
    # any t in [a, b) induces the same split; guard against rounding onto b
    return mid if a <= mid < b else a


def _roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half (inputs already validated)."""
    _, inverse = np.unique(scores, return_inverse=True)
    inverse = inverse.reshape(-1)
    pos_at = np.bincount(inverse, weights=y)
    neg_at = np.bincount(inverse, weights=~y)
    neg_below = np.cumsum(neg_at) - neg_at
    u = float(np.sum(pos_at * (neg_below + 0.5 * neg_at)))
    return u / (float(pos_at.sum()) * float(neg_at.sum()))


def classification_metrics(rewards, labels, threshold) -> dict[str, float]:
    """Accuracy, F1 and ROC-AUC of a reward used as a binary classifier.

    A sample is predicted positive iff ``reward > threshold``.

    * ``accuracy`` -- fraction of correct predictions.
    * ``f1`` -- F1 score of the positive class, ``2 TP / (2 TP + FP + FN)``
      (0.0 if the denominator is zero, as sklearn's ``zero_division=0``).
    * ``roc_auc`` -- threshold-free: the Mann-Whitney statistic, i.e. the
      probability that a random positive outscores a random negative, ties
      counted half.  Equals ``sklearn.metrics.roc_auc_score(labels, rewards)``.

    Parameters
    ----------
    rewards : array_like, shape (n,)
        Finite scores, non-empty.
    labels : array_like, shape (n,)
        Booleans or 0/1 values; 1 is the positive class.  Both classes must
        be present.
    threshold : float
        Finite decision threshold, e.g. from :func:`fit_threshold`.

    Returns
    -------
    dict
        ``{"accuracy": float, "f1": float, "roc_auc": float}``.

    Raises
    ------
    DataError
        On invalid ``rewards``/``labels``/``threshold``, or if ``labels``
        contains only one class (ROC-AUC is then undefined).

    Examples
    --------
    >>> m = classification_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.3)
    >>> m["accuracy"], round(m["f1"], 4), m["roc_auc"]
    (0.75, 0.8, 0.75)
    """
    r = _as_vector(rewards, "rewards")
    y = _as_labels(labels, r.shape[0], "rewards")
    try:
        t = np.asarray(threshold)
    except (TypeError, ValueError):  # e.g. a ragged list
        t = np.asarray(None)
    if t.ndim != 0 or t.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"threshold must be a real scalar, got {threshold!r}"
        )
    t = float(t)
    if not np.isfinite(t):
        raise DataError(f"threshold is {_describe(t)}; must be finite")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise DataError(
            "labels contains only one class "
            f"({'positive' if n_pos else 'negative'}); ROC-AUC is undefined"
        )

    pred = r > t
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    denom = 2 * tp + fp + fn
    return {
        "accuracy": float(np.mean(pred == y)),
        "f1": 2 * tp / denom if denom else 0.0,
        "roc_auc": _roc_auc(r, y),
    }
