"""Failures of a reward: the pairs it misclassifies or nearly ties, found on the training fit and out of fold.

For a reward θ̂ the normalised margin of pair i is ``Δ_i θ̂ / ‖θ̂‖₂``. Pair i is

* **misclassified** when ``Δ_i θ̂ ≤ 0``;
* a **near-tie** when ``0 < Δ_i θ̂ / ‖θ̂‖ ≤ τ``.

τ is given absolutely (``near_tie_threshold``) or as a quantile of the positive normalised margins
(``near_tie_quantile``). When the training pairs are separable (common when d ≥ n) the training fit
has no misclassifications, so failures are also mined **out of fold**: fit on k−1 folds (split by
prompt), measure margins on the held-out fold.

**Curriculum order**: clear errors first (most negative margin first), near-ties after (smallest
margin first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_opt.exceptions import DataError


def normalised_margins(delta: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``Δθ / ‖θ‖₂``; all zeros when θ = 0 (every pair then counts as misclassified)."""
    norm = float(np.linalg.norm(theta))
    scores = np.asarray(delta) @ theta
    return scores / norm if norm > 0 else np.zeros_like(scores)


@dataclass(frozen=True)
class FailureRule:
    """How to find failures.

    Parameters
    ----------
    near_tie_threshold : float, optional
        Absolute τ ≥ 0 on the normalised margin.
    near_tie_quantile : float, optional
        τ as this quantile (in (0, 1)) of the positive normalised margins; resolved to an absolute τ
        on the first call by the FA loop and kept fixed afterwards, so rounds compare like with like.
    oof_folds : int
        k ≥ 2 mines failures out of fold as well; 0 uses the training fit alone.
    seed : int
        Seed of the fold assignment.
    """

    near_tie_threshold: float | None = None
    near_tie_quantile: float | None = None
    oof_folds: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.near_tie_threshold is not None and self.near_tie_quantile is not None:
            raise DataError("give near_tie_threshold or near_tie_quantile, not both")
        if self.near_tie_threshold is not None and not (
            np.isfinite(self.near_tie_threshold) and self.near_tie_threshold >= 0
        ):
            raise DataError(f"near_tie_threshold must be finite and >= 0, got {self.near_tie_threshold}")
        if self.near_tie_quantile is not None and not 0 < self.near_tie_quantile < 1:
            raise DataError(f"near_tie_quantile must lie in (0, 1), got {self.near_tie_quantile}")
        if self.oof_folds != 0 and (not isinstance(self.oof_folds, (int, np.integer)) or self.oof_folds < 2):
            raise DataError(f"oof_folds must be 0 (off) or an integer >= 2, got {self.oof_folds!r}")

    def resolve_threshold(self, margins: np.ndarray) -> float:
        """The absolute τ this rule means for the given normalised margins."""
        if self.near_tie_threshold is not None:
            return float(self.near_tie_threshold)
        if self.near_tie_quantile is None:
            return 0.0
        positive = margins[margins > 0]
        return float(np.quantile(positive, self.near_tie_quantile)) if positive.size else 0.0


@dataclass(frozen=True)
class Failures:
    """Failures of one reward, in curriculum order.

    Attributes
    ----------
    indices : int array
        Misclassified pairs (most negative margin first), then near-ties (smallest margin first).
    misclassified, near_ties : int arrays
        The two groups, each in that order.
    margins : float array (n,)
        Normalised margins used for the decision (out-of-fold where mined out of fold, else training).
    threshold : float
        The absolute τ used.
    """

    indices: np.ndarray
    misclassified: np.ndarray
    near_ties: np.ndarray
    margins: np.ndarray
    threshold: float

    def __len__(self) -> int:
        return int(self.indices.size)


def detect_failures(margins: np.ndarray, threshold: float) -> Failures:
    """Classify pairs by their normalised ``margins`` against τ = ``threshold`` (curriculum order)."""
    margins = np.asarray(margins, dtype=np.float64)
    if threshold < 0 or not np.isfinite(threshold):
        raise DataError(f"near-tie threshold must be finite and >= 0, got {threshold}")
    mis = np.flatnonzero(margins <= 0)
    mis = mis[np.argsort(margins[mis], kind="stable")]
    tie = np.flatnonzero((margins > 0) & (margins <= threshold))
    tie = tie[np.argsort(margins[tie], kind="stable")]
    return Failures(np.concatenate([mis, tie]), mis, tie, margins, float(threshold))


def combine_margins(train: np.ndarray, out_of_fold: np.ndarray | None) -> np.ndarray:
    """Per pair, the worse (smaller) of its training and out-of-fold normalised margin."""
    return train if out_of_fold is None else np.minimum(train, out_of_fold)


def fold_indices(n: int, k: int, groups=None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds over n pairs, keeping each group (prompt) in one fold."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    unique = np.unique(groups)
    if unique.size < k:
        raise DataError(f"oof_folds={k} needs at least {k} prompts/pairs, have {unique.size}")
    perm = np.random.default_rng(seed).permutation(unique)
    fold_of = {g: f for f, chunk in enumerate(np.array_split(perm, k)) for g in chunk.tolist()}
    fold = np.fromiter((fold_of[g] for g in groups.tolist()), dtype=np.int64, count=n)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def out_of_fold_margins(delta: np.ndarray, fold_thetas, folds) -> np.ndarray:
    """Normalised margin of every pair under the θ fitted without its fold.

    ``fold_thetas[f]`` is the reward fitted on ``folds[f][0]``; pairs ``folds[f][1]`` are measured.
    """
    margins = np.empty(delta.shape[0])
    for theta, (_, test) in zip(fold_thetas, folds):
        margins[test] = normalised_margins(delta[test], theta)
    return margins
