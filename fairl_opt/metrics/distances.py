"""Distances between two rewards on the same completions, up to what preferences cannot identify:
a positive scale and an additive constant per prompt (STARC, EPIC)."""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.metrics._checks import _as_vector, _check_same_length, _prompt_index

#: A canonicalised reward whose largest magnitude is at most this fraction of
#: the raw reward's largest magnitude is treated as identically zero (it is
#: then indistinguishable from floating-point cancellation noise).
ZERO_REL_TOL = 1e-12


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
    DataError
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
        raise DataError(
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
    DataError
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
    formula above but keeps full precision near 0 and 1. The arguments are those of
    :func:`starc_distance`.

    Returns
    -------
    float
        Distance in ``[0, 1]``.

    Raises
    ------
    DataError
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
            raise DataError(
                f"{name} has zero variance after canonicalisation (constant "
                "within every prompt); EPIC distance is undefined"
            )
        units.append(u)
    return min(0.5 * _unit_distance(units[0], units[1]), 1.0)
