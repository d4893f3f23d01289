"""Estimators in the scikit-learn style: ``fit(pairs)`` returns self; learned state ends in ``_``.

>>> import numpy as np
>>> from fairl_opt import PreferencePairs
>>> from fairl_opt.estimators import MaxMarginReward, FailureAwareReward
>>> rng = np.random.default_rng(0)
>>> chosen = rng.normal(size=(40, 5)) + [1, 0, 0, 0, 0]
>>> pairs = PreferencePairs(chosen, rng.normal(size=(40, 5)))
>>> model = MaxMarginReward(margin="soft", C=1.0).fit(pairs)
>>> model.certificate_.status
'optimal'
>>> fa = FailureAwareReward(MaxMarginReward(margin="soft")).fit(pairs)
>>> fa.history_[0]["round"], len(fa.required_margins_) == 40
(0, True)
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError, SolverError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.metrics import pairwise_accuracy
from fairl_opt.pairs import PreferencePairs
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.solvers import get_backend


def check_pairs(pairs) -> PreferencePairs:
    """The one validation entry point of every ``fit``: pairs must be :class:`PreferencePairs`."""
    if not isinstance(pairs, PreferencePairs):
        raise DataError(
            f"pairs must be a PreferencePairs (got {type(pairs).__name__}); build one with "
            "PreferencePairs(chosen, rejected) or PreferencePairs.load(path)"
        )
    return pairs


class _RewardModel:
    """Shared prediction API of the fitted estimators."""

    def reward(self, features) -> np.ndarray:
        """r(y) = θᵀφ(y) for each row of ``features`` (m × d)."""
        self._check_fitted()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.theta_.size:
            raise DataError(f"features must have shape (m, {self.theta_.size}), got {features.shape}")
        return features @ self.theta_

    def score(self, pairs) -> float:
        """Pairwise accuracy: the fraction of pairs with r(chosen) > r(rejected)."""
        self._check_fitted()
        pairs = check_pairs(pairs)
        if pairs.dim != self.theta_.size:
            raise DataError(f"pairs have d={pairs.dim}, the model was fitted with d={self.theta_.size}")
        return pairwise_accuracy(self.theta_, pairs.delta)

    def _check_fitted(self):
        if not hasattr(self, "theta_"):
            raise DataError(f"{type(self).__name__} is not fitted yet: call fit(pairs) first")

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _finish(estimator, solution):
    cert = solution.certificate
    if not cert.optimal:
        raise SolverError(
            f"{type(estimator).__name__}: backend {cert.backend!r} (status {cert.solver_status!r}) did "
            f"not certify its answer: relative gap {cert.relative_gap:.2e}, max violation "
            f"{cert.max_violation:.2e}; try backend='cvxpy', a soft margin or rescaled embeddings",
            status=cert.solver_status,
        )
    estimator.solution_ = solution
    estimator.theta_ = solution.theta
    estimator.certificate_ = cert
    estimator.history_ = []
    return estimator


class MaxMarginReward(_RewardModel):
    """Max-margin reward: ``mm-qp`` (``norm="l2"``) or ``mm-lp`` (``norm="l1"``/``"linf"``).

    Parameters
    ----------
    norm : {"l2", "l1", "linf"}
    margin : {"hard", "soft"}
    C : float
        Slack penalty of the soft margin (ignored for hard).
    backend : str
        ``"auto"`` or ``"cvxpy"``.
    """

    def __init__(self, norm="l2", margin="hard", C=1.0, backend="auto"):
        self.norm = norm
        self.margin = margin
        self.C = C
        self.backend = backend

    def program(self, pairs: PreferencePairs) -> MarginProgram:
        if self.margin not in ("hard", "soft"):
            raise DataError(f"margin must be 'hard' or 'soft', got {self.margin!r}")
        return MarginProgram(pairs.delta, 1.0, self.norm, None if self.margin == "hard" else self.C)

    def fit(self, pairs):
        pairs = check_pairs(pairs)
        program = self.program(pairs)
        return _finish(self, get_backend(self.backend, program).solve(program))


class MaxEntReward(_RewardModel):
    """Bradley–Terry / MaxEnt reward, ``min Σ log(1+exp(−Δθ)) + (reg/2)‖θ‖²``.

    Parameters
    ----------
    reg : float
        λ > 0.
    backend : str
        ``"auto"`` (Newton), ``"newton"`` or ``"cvxpy"`` (exponential cone).
    """

    def __init__(self, reg=1.0, backend="auto"):
        self.reg = reg
        self.backend = backend

    def program(self, pairs: PreferencePairs) -> MaxEntProgram:
        return MaxEntProgram(pairs.delta, self.reg)

    def fit(self, pairs):
        pairs = check_pairs(pairs)
        program = self.program(pairs)
        return _finish(self, get_backend(self.backend, program).solve(program))


class FailureAwareReward(_RewardModel):
    """The failure-aware version of a base estimator (see :func:`fairl_opt.fa.run_fa`).

    Parameters
    ----------
    estimator : MaxMarginReward or MaxEntReward
        Defines the program and the backend.
    margin_step, upweight, sharpen, backoff, slack_upweight
        See :class:`fairl_opt.fa.Tightening`. ``slack_upweight > 1`` also multiplies the slack price
        C of each tightened failure (soft margins): without it, soft-margin FA cannot move θ
        through failures that already violate their margin (proofs/T10).
    near_tie_threshold, near_tie_quantile, oof_folds, seed
        See :class:`fairl_opt.failures.FailureRule`.
    max_rounds, curriculum, dual_path, correction_penalty, verbose
        See :func:`fairl_opt.fa.run_fa`.

    Attributes
    ----------
    theta_, certificate_, solution_
        Final reward and its certificate.
    history_ : list of dict
        One entry per round (round 0 = standard solve).
    tightened_ : int array
    required_margins_ : ndarray or None
    prices_ : ndarray or None
        Final slack prices C_i (soft-margin programs).
    weights_, temperatures_ : ndarray or None
    result_ : FAResult
    """

    def __init__(
        self,
        estimator=None,
        *,
        margin_step=0.5,
        upweight=2.0,
        sharpen=1.0,
        backoff=0.99,
        slack_upweight=1.0,
        near_tie_threshold=None,
        near_tie_quantile=0.1,
        oof_folds=5,
        max_rounds=5,
        curriculum=True,
        dual_path=False,
        correction_penalty=None,
        seed=0,
        verbose=False,
    ):
        self.estimator = estimator
        self.margin_step = margin_step
        self.upweight = upweight
        self.sharpen = sharpen
        self.backoff = backoff
        self.slack_upweight = slack_upweight
        self.near_tie_threshold = near_tie_threshold
        self.near_tie_quantile = near_tie_quantile
        self.oof_folds = oof_folds
        self.max_rounds = max_rounds
        self.curriculum = curriculum
        self.dual_path = dual_path
        self.correction_penalty = correction_penalty
        self.seed = seed
        self.verbose = verbose

    def fit(self, pairs):
        pairs = check_pairs(pairs)
        base = self.estimator if self.estimator is not None else MaxMarginReward()
        if not isinstance(base, (MaxMarginReward, MaxEntReward)):
            raise DataError(f"estimator must be MaxMarginReward or MaxEntReward, got {type(base).__name__}")
        program = base.program(pairs)
        settings = FASettings(**{name: getattr(self, name) for name in FASettings.names()})
        result = run_fa(program, get_backend(base.backend, program), settings, groups=pairs.prompt_ids,
                        verbose=self.verbose)
        self.result_ = result
        self.solution_ = result.solution
        self.theta_ = result.theta
        self.certificate_ = result.solution.certificate
        self.history_ = [h.to_dict() for h in result.history]
        self.tightened_ = result.tightened
        self.required_margins_ = result.required_margins
        self.prices_ = result.prices
        self.weights_ = result.weights
        self.temperatures_ = result.temperatures
        return self


#: CLI / demo method names → estimator factories.
def make_estimator(method: str, *, margin="soft", C=1.0, reg=1.0, norm=None, backend="auto", **fa_options):
    """Build the estimator a method name means (``mm-qp``, ``mm-lp``, ``maxent`` and ``fa-*``)."""
    base_name = method[3:] if method.startswith("fa-") else method
    if base_name == "mm-qp":
        base = MaxMarginReward("l2", margin, C, backend)
    elif base_name == "mm-lp":
        base = MaxMarginReward(norm or "l1", margin, C, backend)
    elif base_name == "maxent":
        base = MaxEntReward(reg, backend)
    else:
        raise DataError(
            f"method must be one of mm-qp, mm-lp, maxent, fa-mm-qp, fa-mm-lp, fa-maxent; got {method!r}"
        )
    if method.startswith("fa-"):
        return FailureAwareReward(base, **fa_options)
    return base
