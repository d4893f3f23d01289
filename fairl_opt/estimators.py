"""scikit-learn estimators of linear rewards, and the one registry of method names (:data:`METHODS`).

Each estimator is a :class:`sklearn.base.BaseEstimator`: ``__init__`` only stores parameters,
``fit(X, y=None, groups=None)`` returns self, learned state ends in ``_``, and ``get_params``,
``set_params``, :func:`sklearn.base.clone`, grid search and cross-validation work as for any
scikit-learn estimator. ``X`` is a :class:`~fairl_opt.pairs.PreferencePairs` (its prompt ids are the
FA folds' groups) or an n × d array of differences Δ_i = φ(chosen_i) − φ(rejected_i), every row read
as "chosen ≻ rejected" (``groups=`` then gives the prompt ids). There are no labels: ``y`` is ignored,
which is scikit-learn's unsupervised path, so ``GridSearchCV(MaxEntReward(), {"reg": [0.1, 1.0]},
cv=PromptFolds(3)).fit(delta, groups=prompt_ids)`` scores each fold by :meth:`score`, the pairwise
accuracy.

>>> import numpy as np
>>> from fairl_opt import PreferencePairs
>>> from fairl_opt.estimators import FailureAwareReward, MaxMarginReward
>>> from fairl_opt.fa import FASettings
>>> rng = np.random.default_rng(0)
>>> chosen = rng.normal(size=(40, 5)) + [1, 0, 0, 0, 0]
>>> pairs = PreferencePairs(chosen, rng.normal(size=(40, 5)))
>>> model = MaxMarginReward(margin="soft", C=1.0).fit(pairs)
>>> model.certificate_.status, model.coef_.shape, model.n_features_in_
('optimal', (5,), 5)
>>> fa = FailureAwareReward(MaxMarginReward(margin="soft"), FASettings(max_rounds=2)).fit(pairs)
>>> fa.history_[0]["round"], len(fa.required_margins_) == 40
(0, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.metrics import pairwise_accuracy
from fairl_opt.pairs import PreferencePairs
from fairl_opt.programs import MarginProgram, MaxEntProgram, _real_array
from fairl_opt.programs.blocks import is_blocked, to_blocks
from fairl_opt.solvers import get_backend


def check_pairs(pairs) -> PreferencePairs:
    """``pairs`` if it is a :class:`PreferencePairs`, else a DataError saying how to build one."""
    if not isinstance(pairs, PreferencePairs):
        raise DataError(
            f"pairs must be a PreferencePairs (got {type(pairs).__name__}); build one with "
            "PreferencePairs(chosen, rejected) or PreferencePairs.load(path)"
        )
    return pairs


def check_delta(X, groups=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The one validation of every ``fit``/``score`` input: (Δ as float64 n × d, groups or None).

    ``X`` is a :class:`PreferencePairs` (groups = its prompt ids; ``groups`` must then be None) or an
    array of differences; ``groups`` has one prompt id per row. A memory-mapped ``.npy``
    (``np.load(path, mmap_mode="r")``) or a row-chunked Dask array of differences (float32 or
    float64) is kept as a :class:`~fairl_opt.programs.blocks.RowBlocks`, checked block by block and
    never loaded whole. Errors are DataErrors naming ``X`` (and the row) or ``groups``.
    """
    if isinstance(X, PreferencePairs):
        if groups is not None:
            raise DataError("groups: a PreferencePairs X carries its own prompt ids; pass groups only "
                            "with an array X of differences")
        return X.delta, X.prompt_ids
    blocked = to_blocks(X)
    if blocked is not None:
        delta = blocked
    else:
        delta = _real_array("X", X)  # float64
    if delta.ndim != 2 or 0 in delta.shape:
        raise DataError(f"X must be a PreferencePairs or a non-empty 2-D array of differences (pairs x "
                        f"features), got shape {delta.shape}")
    bad = np.zeros(0, dtype=bool) if blocked is not None else ~np.isfinite(delta).all(axis=1)
    if bad.any():
        raise DataError(f"X row {int(np.flatnonzero(bad)[0])} has NaN/inf")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (delta.shape[0],):
            raise DataError(f"groups must have one prompt id per row of X ({delta.shape[0]}), got shape "
                            f"{groups.shape}")
    return delta, groups


class _RewardModel(BaseEstimator):
    """What every fitted reward offers: r(y) = θᵀφ(y), pairwise accuracy, and θ as ``coef_``."""

    def decision_function(self, features) -> np.ndarray:
        """The reward r(y) = θᵀφ(y) of each row of ``features`` (m × d)."""
        check_is_fitted(self, "theta_")
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.n_features_in_:
            raise DataError(f"features must have shape (m, {self.n_features_in_}), got {features.shape}")
        return features @ self.theta_

    def score(self, X, y=None) -> float:
        """Pairwise accuracy on ``X`` (pairs or differences): the fraction with Δθ > 0; ``y`` is ignored."""
        check_is_fitted(self, "theta_")
        delta, _ = check_delta(X)
        if delta.shape[1] != self.n_features_in_:
            raise DataError(f"X has d={delta.shape[1]}, the model was fitted with d={self.n_features_in_}")
        if is_blocked(delta):  # one pass over the row blocks
            return float(np.mean(delta @ self.theta_ > 0))
        return pairwise_accuracy(self.theta_, delta)

    @property
    def coef_(self) -> np.ndarray:
        """θ, the reward's weights (the scikit-learn name of :attr:`theta_`)."""
        check_is_fitted(self, "theta_")
        return self.theta_

    def _backend(self, program):
        if self.backend_settings is None:
            return get_backend(self.backend, program)
        return get_backend(self.backend, program, settings=self.backend_settings)

    def _fit_standard(self, X, groups):
        delta, _ = check_delta(X, groups)
        program = self.program(delta)
        solution = self._backend(program).solve(program).require_certified(type(self).__name__)
        self.solution_ = solution
        self.theta_ = solution.theta
        self.certificate_ = solution.certificate
        self.n_features_in_ = delta.shape[1]
        return self


class MaxMarginReward(_RewardModel):
    """Max-margin reward: ``mm-qp`` (``norm="l2"``) or ``mm-lp`` (``norm="l1"``/``"linf"``),
    ``min ‖θ‖ (+ C Σξ) s.t. Δ_iθ ≥ 1 (− ξ_i)``.

    Parameters
    ----------
    norm : {"l2", "l1", "linf"}
    margin : {"hard", "soft"}
    C : float
        Slack penalty of the soft margin (not used by a hard margin).
    backend : str
        ``"auto"`` or a name in :data:`fairl_opt.solvers.BACKENDS`.
    backend_settings : object, optional
        The backend's settings, passed to :func:`fairl_opt.solvers.get_backend`.

    Attributes
    ----------
    theta_, coef_ : ndarray of shape (d,)
    certificate_ : Certificate
    solution_ : Solution
    n_features_in_ : int
    """

    def __init__(self, norm="l2", margin="hard", C=1.0, backend="auto", backend_settings=None):
        self.norm = norm
        self.margin = margin
        self.C = C
        self.backend = backend
        self.backend_settings = backend_settings

    def program(self, X) -> MarginProgram:
        """The program these parameters mean on ``X`` (pairs or differences)."""
        if self.margin not in ("hard", "soft"):
            raise DataError(f"margin must be 'hard' or 'soft', got {self.margin!r}")
        delta, _ = check_delta(X)
        return MarginProgram(delta, 1.0, self.norm, None if self.margin == "hard" else self.C)

    def fit(self, X, y=None, groups=None):
        """Solve the program on ``X`` and keep the certified θ; ``y`` and ``groups`` are not used."""
        return self._fit_standard(X, groups)


class MaxEntReward(_RewardModel):
    """Bradley–Terry / MaxEnt reward, ``min Σ log(1+exp(−Δ_iθ)) + (reg/2)‖θ‖²``.

    Parameters
    ----------
    reg : float
        λ > 0.
    backend : str
        ``"auto"`` (Newton for d ≤ 64, else L-BFGS), or a name in :data:`fairl_opt.solvers.BACKENDS`.
    backend_settings : object, optional
        The backend's settings, passed to :func:`fairl_opt.solvers.get_backend`.

    Attributes
    ----------
    theta_, coef_, certificate_, solution_, n_features_in_
        As :class:`MaxMarginReward`.
    """

    def __init__(self, reg=1.0, backend="auto", backend_settings=None):
        self.reg = reg
        self.backend = backend
        self.backend_settings = backend_settings

    def program(self, X) -> MaxEntProgram:
        """The program these parameters mean on ``X`` (pairs or differences)."""
        delta, _ = check_delta(X)
        return MaxEntProgram(delta, self.reg)

    def fit(self, X, y=None, groups=None):
        """Solve the program on ``X`` and keep the certified θ; ``y`` and ``groups`` are not used."""
        return self._fit_standard(X, groups)


class FailureAwareReward(_RewardModel):
    """The failure-aware version of a base estimator (:func:`fairl_opt.fa.run_fa`), a meta-estimator
    like :class:`sklearn.multiclass.OneVsRestClassifier`: ``fit`` clones ``estimator``, which defines
    the program and the backend, and runs the FA rounds on it.

    Parameters
    ----------
    estimator : MaxMarginReward or MaxEntReward, optional
        Default ``MaxMarginReward()``. Its parameters are nested: ``estimator__C``, ``estimator__reg``.
    settings : FASettings, optional
        Every setting of the FA loop (default ``FASettings()``), passed unchanged to ``run_fa``.
    verbose : bool
        Progress per round on stderr.

    Attributes
    ----------
    theta_, coef_, certificate_, solution_, n_features_in_
        The final reward and its certificate.
    result_ : FAResult
    history_ : list of dict
        One entry per round (round 0 = standard solve), :meth:`FARound.to_dict`.
    tightened_ : int array
        The pairs edited by some round.
    required_margins_ : ndarray or None
        Final margins (max-margin programs).
    prices_ : ndarray or None
        Final slack prices C_i (soft-margin programs).
    weights_, temperatures_ : ndarray or None
        Final weights and temperatures (MaxEnt).
    """

    def __init__(self, estimator=None, settings=None, verbose=False):
        self.estimator = estimator
        self.settings = settings
        self.verbose = verbose

    def fit(self, X, y=None, groups=None):
        """Run the FA loop on ``X``; its out-of-fold folds keep each of ``groups`` (or the pairs' prompt
        ids) together. ``y`` is not used."""
        delta, groups = check_delta(X, groups)
        base = MaxMarginReward() if self.estimator is None else clone(self.estimator)
        if not isinstance(base, (MaxMarginReward, MaxEntReward)):
            raise DataError(f"estimator must be MaxMarginReward or MaxEntReward, got {type(base).__name__}")
        settings = FASettings() if self.settings is None else self.settings
        if not isinstance(settings, FASettings):
            raise DataError(f"settings must be a FASettings, got {type(settings).__name__}")
        program = base.program(delta)
        result = run_fa(program, base._backend(program), settings, groups=groups, verbose=self.verbose)
        self.result_ = result
        self.solution_ = result.solution
        self.theta_ = result.theta
        self.certificate_ = result.solution.certificate
        self.n_features_in_ = delta.shape[1]
        self.history_ = [h.to_dict() for h in result.history]
        self.tightened_ = result.tightened
        self.required_margins_ = result.required_margins
        self.prices_ = result.prices
        self.weights_ = result.weights
        self.temperatures_ = result.temperatures
        return self


@dataclass(frozen=True)
class Method:
    """One reward method of :data:`METHODS`: its standard program, whether it runs the FA loop, and
    the :func:`make_estimator` options that apply to it (``fairl solve`` refuses the others)."""

    name: str
    program: str
    failure_aware: bool

    @property
    def kind(self) -> str:
        """``"margin"`` or ``"maxent"``: the programs :meth:`FASettings.names` speaks of."""
        return "maxent" if self.program == "maxent" else "margin"

    @property
    def options(self) -> tuple[str, ...]:
        """The options that apply: the program's own, then the FA settings (``seed`` applies to all)."""
        own = {"mm-qp": ("margin", "C"), "mm-lp": ("norm", "margin", "C"), "maxent": ("reg",)}[self.program]
        return own + (FASettings.names(self.kind) if self.failure_aware else ())

    def build(self, *, margin="soft", C=1.0, reg=1.0, norm=None, backend="auto", settings=None,
              verbose=False):
        """The estimator of this method (see :func:`make_estimator`)."""
        if self.program == "maxent":
            base = MaxEntReward(reg, backend)
        else:
            base = MaxMarginReward("l2" if self.program == "mm-qp" else norm or "l1", margin, C, backend)
        if not self.failure_aware:
            if settings is not None:
                raise DataError(f"settings apply to the fa-* methods only, not {self.name}")
            return base
        return FailureAwareReward(base, FASettings() if settings is None else settings, verbose)


#: Every method name → its :class:`Method`: the standard programs and their failure-aware versions.
METHODS = {m.name: m for m in (
    Method("mm-qp", "mm-qp", False), Method("mm-lp", "mm-lp", False), Method("maxent", "maxent", False),
    Method("fa-mm-qp", "mm-qp", True), Method("fa-mm-lp", "mm-lp", True), Method("fa-maxent", "maxent", True),
)}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``, or a DataError listing the names."""
    if name not in METHODS:
        raise DataError(f"method must be one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]


def methods_with(option: str) -> tuple[str, ...]:
    """The method names an option of :attr:`Method.options` applies to, in :data:`METHODS` order."""
    return tuple(name for name, m in METHODS.items() if option in m.options)


def make_estimator(method: str, *, margin="soft", C=1.0, reg=1.0, norm=None, backend="auto", settings=None,
                   verbose=False):
    """The estimator a method name of :data:`METHODS` means.

    ``margin``, ``C`` and ``norm`` (``mm-lp``: ``"l1"`` when None) go to the max-margin programs,
    ``reg`` to MaxEnt, ``settings`` (an :class:`FASettings`, default ``FASettings()``) and ``verbose``
    to the ``fa-*`` methods; ``backend`` to every one.

    >>> model = make_estimator("fa-maxent", reg=2.0, settings=FASettings(max_rounds=1))
    >>> model.estimator, model.settings.max_rounds
    (MaxEntReward(reg=2.0), 1)
    """
    return get_method(method).build(margin=margin, C=C, reg=reg, norm=norm, backend=backend, settings=settings,
                                    verbose=verbose)
