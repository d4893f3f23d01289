"""Failures of a reward: the pairs it misclassifies or nearly ties, found on the training fit and out of fold.

For a reward θ̂ the normalised margin of pair i is ``Δ_i θ̂ / ‖θ̂‖₂``. Pair i is

* **misclassified** when ``Δ_i θ̂ ≤ 0``;
* a **near-tie** when ``0 < Δ_i θ̂ / ‖θ̂‖ ≤ τ``.

τ is given absolutely (``near_tie_threshold``) or as a quantile of the positive normalised margins
(``near_tie_quantile``): both are settings of :class:`fairl_opt.fa.FASettings`. When the training pairs are separable (common when d ≥ n) the training fit
has no misclassifications, so failures are also mined **out of fold**: fit on k−1 folds (split by
prompt, :func:`fairl_opt.pairs.group_folds`), measure margins on the held-out fold.

**Curriculum order**: clear errors first (most negative margin first), near-ties after (smallest
margin first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.programs.blocks import as_rows, is_blocked


def normalised_margins(delta: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``Δθ / ‖θ‖₂``; all zeros when θ = 0 (every pair then counts as misclassified)."""
    norm = float(np.linalg.norm(theta))
    scores = as_rows(delta) @ theta  # (a float32 Δ by float64 blocks)
    return scores / norm if norm > 0 else np.zeros_like(scores)


def resolve_threshold(margins: np.ndarray, threshold: float | None = None,
                      quantile: float | None = None) -> float:
    """The absolute near-tie τ: ``threshold`` when given, else the ``quantile`` of the positive
    normalised ``margins`` (0 when there is none, or when neither is given: misclassified pairs only)."""
    if threshold is not None:
        return float(threshold)
    if quantile is None:
        return 0.0
    margins = np.asarray(margins, dtype=np.float64)
    positive = margins[margins > 0]
    return float(np.quantile(positive, quantile)) if positive.size else 0.0


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


def out_of_fold_margins(delta: np.ndarray, fold_thetas, folds) -> np.ndarray:
    """Normalised margin of every pair under the θ fitted without its fold.

    ``fold_thetas[f]`` is the reward fitted on ``folds[f][0]``; pairs ``folds[f][1]`` are measured.
    """
    margins = np.empty(delta.shape[0])
    if is_blocked(delta):
        # one pass for every fold's θ (the rows are not gathered: Δ[Θ₁ … Θ_k], then each fold's rows)
        scores = delta @ np.column_stack(fold_thetas)
        for f, (theta, (_, test)) in enumerate(zip(fold_thetas, folds)):
            norm = float(np.linalg.norm(theta))
            margins[test] = scores[test, f] / norm if norm > 0 else 0.0
        return margins
    for theta, (_, test) in zip(fold_thetas, folds):
        margins[test] = normalised_margins(delta[test], theta)
    return margins
