"""Which of a round's failures the FA loop edits: the ``failure_rule`` setting of
:class:`~fairl_opt.fa.FASettings`, applied between failure detection (:mod:`fairl_opt.failures`) and
the edit (proofs/T12_when_fa_helps.md, E3 and the table after it).

``"all"``       every failure (the FA loop as it always was);
``"band"``      failures with normalised margin ≥ −τ, i.e. the band |m| ≤ τ, which holds a pair in
                either order: a weight that does not read the order (consistent, T12 (b));
``"posterior"`` failures whose out-of-fold posterior probability of being a coin flip is below ½
                (:func:`fairl_opt.fa.noise.noise_posterior`, T12 (e));
``"agree"``     failures on both the training fit and the out-of-fold fit: max(training margin,
                out-of-fold margin) ≤ τ (needs ``oof_folds`` ≥ 2).

A rule that needs what the settings cannot hold (the truth, in a planted study) is a callable of a
:class:`FailureContext` passed to :func:`fairl_opt.fa.run_fa` as ``select``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.failures import Failures

#: The values of ``FASettings.failure_rule``.
FAILURE_RULES = ("all", "band", "posterior", "agree")


@dataclass(frozen=True)
class FailureContext:
    """What a rule may look at: this round's failures and the fits that found them.

    ``train_margins`` and ``oof_margins`` are normalised margins (Δθ/‖θ‖) under the training fit and
    the fit without the pair's fold (None without out-of-fold mining); ``noise_posterior`` is
    :func:`fairl_opt.fa.noise.noise_posterior` (rule ``"posterior"`` only, else None).
    """

    failures: Failures
    train_margins: np.ndarray
    oof_margins: np.ndarray | None = None
    noise_posterior: np.ndarray | None = None


def select_failures(rule: str, context: FailureContext) -> np.ndarray:
    """The failures (indices into the pairs, a subset of ``context.failures.indices`` in its order)
    that ``rule`` (one of :data:`FAILURE_RULES`) keeps."""
    found = context.failures.indices
    if rule == "all":
        return found
    if rule == "band":
        return found[context.failures.margins[found] >= -context.failures.threshold]
    if rule == "posterior":
        if context.noise_posterior is None:
            raise DataError("failure_rule='posterior' needs the pairs' coin-flip posterior")
        return found[context.noise_posterior[found] < 0.5]
    if rule == "agree":
        if context.oof_margins is None:
            raise DataError("failure_rule='agree' needs out-of-fold margins: set oof_folds >= 2")
        both = np.maximum(context.train_margins, context.oof_margins)
        return found[both[found] <= context.failures.threshold]
    raise DataError(f"failure_rule must be one of {', '.join(map(repr, FAILURE_RULES))}, got {rule!r}")
