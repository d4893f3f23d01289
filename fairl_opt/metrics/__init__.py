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

Every function validates its inputs and raises
:class:`~fairl_opt.exceptions.DataError` (a :class:`ValueError`) with a
message that names the offending argument (and, for non-finite values, the
first bad index, e.g. ``"rewards_a[3] is nan"``). Nothing here solves, so
nothing raises :class:`~fairl_opt.exceptions.SolverError`.

Only numpy is used.
"""

from fairl_opt.metrics.classification import classification_metrics, fit_threshold, pairwise_accuracy
from fairl_opt.metrics.distances import ZERO_REL_TOL, canonicalise_rewards, epic_distance, starc_distance

__all__ = [
    "pairwise_accuracy",
    "fit_threshold",
    "classification_metrics",
    "canonicalise_rewards",
    "starc_distance",
    "epic_distance",
    "ZERO_REL_TOL",
]
