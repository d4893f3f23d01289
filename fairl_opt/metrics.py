"""Evaluation metrics for recovered linear rewards ``r(y) = theta @ phi(y)``.

Three families of metric live here:

* **Preference fit** -- :func:`pairwise_accuracy` scores a reward vector
  ``theta`` against preference pairs given as feature differences.
* **Classification** -- :func:`fit_threshold` and
  :func:`classification_metrics` treat a scalar reward as a score for a
  binary label (1 = positive / "good" / "non-toxic").
* **Reward distances** -- :func:`starc_distance` and :func:`epic_distance`
  compare two reward functions evaluated on the same completions, ignoring
  what preference data cannot identify: a positive scale factor and an
  additive constant per prompt (removed by :func:`canonicalise_rewards`).

Every function validates its inputs and raises :class:`ValueError` with a
message that names the offending argument (and, for non-finite values, the
first bad index, e.g. ``"rewards_a[3] is nan"``).

Only numpy is used.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pairwise_accuracy",
    "fit_threshold",
    "classification_metrics",
    "canonicalise_rewards",
    "starc_distance",
    "epic_distance",
]

#: A canonicalised reward whose largest magnitude is at most this fraction of
#: the raw reward's largest magnitude is treated as identically zero (it is
#: then indistinguishable from floating-point cancellation noise).
ZERO_REL_TOL = 1e-12

_NUMERIC_KINDS = "biuf"


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _describe(value: float) -> str:
    if np.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def _first_nonfinite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), arr.shape)
        where = ", ".join(str(int(i)) for i in idx)
        raise ValueError(f"{name}[{where}] is {_describe(float(arr[idx]))}")


def _as_numeric(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{name} must contain real numbers, got dtype {arr.dtype}"
        )
    return arr.astype(np.float64, copy=False)


def _as_vector(x, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty, finite, 1-D float64 array."""
    arr = _as_numeric(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must be non-empty")
    _first_nonfinite(arr, name)
    return arr


def _check_same_length(arr: np.ndarray, name: str, n: int, ref: str) -> None:
    if arr.shape[0] != n:
        raise ValueError(
            f"{name} has length {arr.shape[0]} but {ref} has length {n}"
        )


def _as_labels(labels, n: int, ref: str) -> np.ndarray:
    """Return ``labels`` as a 1-D bool array of length ``n``."""
    arr = _as_numeric(labels, "labels")
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    _check_same_length(arr, "labels", n, ref)
    bad = (arr != 0) & (arr != 1)  # nan compares unequal to both
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"labels[{i}] is {float(arr[i])!r}; expected 0/1 or False/True"
        )
    return arr == 1


def _prompt_index(prompt_ids, n: int, ref: str) -> np.ndarray:
    """Map ``prompt_ids`` to integer group codes ``0..k-1``."""
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1:
        raise ValueError(f"prompt_ids must be 1-D, got shape {ids.shape}")
    _check_same_length(ids, "prompt_ids", n, ref)
    if ids.dtype.kind in "fc":
        _first_nonfinite(ids, "prompt_ids")
    try:
        _, inverse = np.unique(ids, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            f"prompt_ids must be mutually comparable values: {exc}"
        ) from exc
    return inverse.reshape(-1)


def _canonicalise(r: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Subtract group means from a validated reward vector (no checks)."""
    if groups is None:
        c = r - r.mean()
        return c - c.mean()
    counts = np.bincount(groups)
    c = r - (np.bincount(groups, weights=r) / counts)[groups]
    # second pass removes the rounding error left by the first
    return c - (np.bincount(groups, weights=c) / counts)[groups]


def _unit_distance(ua: np.ndarray, ub: np.ndarray) -> float:
    """``||ua - ub||`` for unit vectors, accurate near both 0 and 2.

    Uses ``||ua - ub||**2 + ||ua + ub||**2 == 4`` and takes the square root
    of whichever of the two is the smaller, so that e.g. ``ub == -ua`` gives
    exactly 2.
    """
    minus = float(np.linalg.norm(ua - ub))
    plus = float(np.linalg.norm(ua + ub))
    if minus <= plus:
        return minus
    return float(np.sqrt(max(0.0, 4.0 - plus * plus)))


def _unit_canonical(r: np.ndarray, groups: np.ndarray | None) -> np.ndarray | None:
    """Canonicalise and L2-normalise ``r``; ``None`` if it is (numerically) zero.

    ``r`` is first divided by its largest magnitude, which neither distance
    depends on and which rules out overflow in the sums and norms.
    """
    scale = float(np.max(np.abs(r)))
    if scale == 0.0:
        return None
    c = _canonicalise(r / scale, groups)
    cmax = float(np.max(np.abs(c)))
    if cmax <= ZERO_REL_TOL:  # relative to the scaled raw reward, max |r| = 1
        return None
    c = c / cmax
    return c / np.linalg.norm(c)


# ---------------------------------------------------------------------------
# preference fit
# ---------------------------------------------------------------------------


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
    ValueError
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
        raise ValueError(
            f"delta must be 2-D with shape (n, d), got shape {delta.shape}"
        )
    if delta.shape[0] == 0:
        raise ValueError("delta must have at least one row")
    if delta.shape[1] != theta.shape[0]:
        raise ValueError(
            f"delta has {delta.shape[1]} columns but theta has length "
            f"{theta.shape[0]}"
        )
    _first_nonfinite(delta, "delta")
    with np.errstate(over="ignore", invalid="ignore"):
        scores = delta @ theta
    return float(np.mean(scores > 0))


# ---------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------


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
    ValueError
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
        raise ValueError(f"criterion must be 'accuracy' or 'f1', got {criterion!r}")
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
    ValueError
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
    t = np.asarray(threshold)
    if t.ndim != 0 or t.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"threshold must be a real scalar, got {threshold!r}"
        )
    t = float(t)
    if not np.isfinite(t):
        raise ValueError(f"threshold is {_describe(t)}; must be finite")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
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


# ---------------------------------------------------------------------------
# reward distances
# ---------------------------------------------------------------------------


def canonicalise_rewards(rewards, prompt_ids=None) -> np.ndarray:
    """Remove the per-prompt additive constant from a reward vector.

    Preferences only compare completions of the same prompt, so a reward is
    identified only up to an additive constant per prompt.  This returns
    ``rewards`` minus the mean reward of its prompt (the global mean when
    ``prompt_ids`` is None).

    Parameters
    ----------
    rewards : array_like, shape (n,)
        Finite rewards, non-empty.
    prompt_ids : array_like, shape (n,), optional
        Prompt identifier of each completion (any mutually comparable
        values: ints, strings, ...).  Float ids must be finite.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Canonicalised rewards; they sum to (about) zero within every prompt.

    Raises
    ------
    ValueError
        On invalid ``rewards`` or ``prompt_ids``, or if the result overflows.

    Examples
    --------
    >>> canonicalise_rewards([1.0, 3.0, 10.0, 20.0], prompt_ids=["a", "a", "b", "b"])
    array([-1.,  1., -5.,  5.])
    """
    r = _as_vector(rewards, "rewards")
    groups = (
        None
        if prompt_ids is None
        else _prompt_index(prompt_ids, r.shape[0], "rewards")
    )
    scale = float(np.max(np.abs(r)))
    if scale == 0.0:
        return np.zeros_like(r)
    # work on r / scale so that the group sums cannot overflow
    with np.errstate(over="ignore", invalid="ignore"):
        c = _canonicalise(r / scale, groups) * scale
    if not np.all(np.isfinite(c)):
        raise ValueError(
            "canonicalised rewards overflow float64; rescale rewards"
        )
    return c


def _pair(rewards_a, rewards_b, prompt_ids):
    a = _as_vector(rewards_a, "rewards_a")
    b = _as_vector(rewards_b, "rewards_b")
    _check_same_length(b, "rewards_b", a.shape[0], "rewards_a")
    groups = (
        None
        if prompt_ids is None
        else _prompt_index(prompt_ids, a.shape[0], "rewards_a")
    )
    return a, b, groups


def starc_distance(rewards_a, rewards_b, prompt_ids=None) -> float:
    """STARC distance between two rewards on the same completions.

    Each reward is canonicalised (:func:`canonicalise_rewards`), divided by
    its L2 norm, and the L2 distance between the two unit vectors is
    returned.  The result lies in ``[0, 2]``; it is invariant to positive
    scaling of either reward and to adding any per-prompt constant, and it is
    a pseudometric (symmetric, triangle inequality).  ``r`` vs ``-r`` gives 2.

    **Zero rewards.**  A canonicalised reward that is identically zero (its
    largest magnitude at most ``1e-12`` times the raw reward's largest
    magnitude, or exactly zero -- e.g. a reward constant within every prompt)
    carries no preference information; its normalised version is taken to be
    the zero vector.  The distance is then the norm of the other normalised
    reward: 1 if the other is nonzero, 0 if both are zero.

    Parameters
    ----------
    rewards_a, rewards_b : array_like, shape (n,)
        Finite rewards of the same ``n`` completions, non-empty.
    prompt_ids : array_like, shape (n,), optional
        Prompt of each completion; None treats all as one prompt.

    Returns
    -------
    float
        Distance in ``[0, 2]``.

    Raises
    ------
    ValueError
        On non-1-D, empty, non-finite or different-length rewards, or invalid
        ``prompt_ids``.

    Examples
    --------
    >>> starc_distance([0.0, 1.0, 2.0], [5.0, 7.0, 9.0])
    0.0
    >>> starc_distance([0.0, 1.0, 2.0], [2.0, 1.0, 0.0])
    2.0
    """
    a, b, groups = _pair(rewards_a, rewards_b, prompt_ids)
    ua = _unit_canonical(a, groups)
    ub = _unit_canonical(b, groups)
    if ua is None and ub is None:
        return 0.0
    if ua is None or ub is None:
        return 1.0
    return min(_unit_distance(ua, ub), 2.0)


def epic_distance(rewards_a, rewards_b, prompt_ids=None) -> float:
    """EPIC distance: Pearson distance between canonicalised rewards.

    Returns ``sqrt((1 - rho) / 2)`` where ``rho`` is the Pearson correlation
    of the two canonicalised rewards (:func:`canonicalise_rewards`).  The
    result lies in ``[0, 1]``: 0 for rewards equal up to positive scale and
    per-prompt constants, 1 for ``r`` vs ``-r``.  It is computed as half the
    L2 distance between the centred, unit-norm vectors, which equals the
    formula above but keeps full precision near 0 and 1.

    Parameters
    ----------
    rewards_a, rewards_b : array_like, shape (n,)
        Finite rewards of the same ``n`` completions, non-empty.
    prompt_ids : array_like, shape (n,), optional
        Prompt of each completion; None treats all as one prompt.

    Returns
    -------
    float
        Distance in ``[0, 1]``.

    Raises
    ------
    ValueError
        On invalid inputs (as :func:`starc_distance`), or if either
        canonicalised reward has zero variance (largest magnitude at most
        ``1e-12`` times the raw reward's, as in :func:`starc_distance`), where
        the correlation is undefined.

    Examples
    --------
    >>> epic_distance([0.0, 1.0, 2.0], [2.0, 1.0, 0.0])
    1.0
    >>> round(epic_distance([0.0, 1.0, 2.0], [0.0, 0.0, 1.0]), 4)
    0.2588
    """
    a, b, groups = _pair(rewards_a, rewards_b, prompt_ids)
    units = []
    for name, r in (("rewards_a", a), ("rewards_b", b)):
        u = _unit_canonical(r, groups)
        if u is not None:  # Pearson centres globally; a no-op up to rounding
            u = _unit_canonical(u, None)
        if u is None:
            raise ValueError(
                f"{name} has zero variance after canonicalisation (constant "
                "within every prompt); EPIC distance is undefined"
            )
        units.append(u)
    return min(0.5 * _unit_distance(units[0], units[1]), 1.0)
