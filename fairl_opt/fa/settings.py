"""The settings of the FA loop: one frozen object, from the CLI, the estimators, ``run_fa``, ``fairl
certify`` and the detox experiment alike. Each field's metadata carries its help text and the programs
it applies to, from which ``fairl`` builds its options (:func:`fairl_opt._args.add_settings_arguments`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.fa.rules import FAILURE_RULES
from fairl_opt.failures import resolve_threshold
from fairl_opt.programs import real_scalar


def _setting(default, help: str, applies: str = "all", flag: bool = False, choices=None):
    """A field of :class:`FASettings` with the text ``fairl`` shows for it, the programs it applies
    to (``"all"``, ``"margin"`` for max-margin programs, ``"maxent"``) and, for a ``str`` field, the
    values it takes."""
    return field(default=default, metadata={"help": help, "applies": applies, "flag": flag,
                                            "choices": choices})


@dataclass(frozen=True)
class FASettings:
    """Every setting of the FA loop, in one object passed unchanged from the CLI, the estimators,
    :func:`run_fa`, ``fairl certify`` and the detox experiment.

    Failure rule (:mod:`fairl_opt.failures`):

    near_tie_threshold : float, optional
        Absolute τ ≥ 0 on the normalised margin; when given, ``near_tie_quantile`` is not used.
    near_tie_quantile : float, optional
        τ as this quantile in (0, 1) of the positive normalised margins of round 0, then kept fixed so
        rounds compare like with like. ``None`` with no threshold: misclassified pairs only.
    oof_folds : int
        k ≥ 2 mines failures out of fold as well (folds keep each prompt together); 0 = training fit only.
    seed : int
        Seed of the fold assignment.
    failure_rule : str
        Which of the failures found are edited (:mod:`fairl_opt.fa.rules`): ``"all"`` (default),
        ``"band"`` (normalised margin ≥ −τ), ``"agree"`` (a failure on the training fit and out of
        fold; needs ``oof_folds`` ≥ 2) or ``"posterior"`` (out-of-fold coin-flip posterior < ½, from
        the mixture of :func:`fairl_opt.fa.noise.mixture_maxent`, fitted once on Δ and the prompt
        folds, ``oof_folds`` of them or 5 when 0; λ is a MaxEnt program's own and 1 for max-margin
        programs, whose Δ the mixture reads alike).

    Tightening:

    margin_step : float
        δ > 0 added to a failure's required margin (max-margin programs).
    upweight : float
        Factor ≥ 1 on a failure's weight (MaxEnt).
    sharpen : float
        Factor in (0, 1] on a failure's temperature (MaxEnt).
    backoff : float
        Fraction in (0, 1) of the largest admissible step used when δ makes a hard margin infeasible.
    slack_upweight : float
        Factor ≥ 1 on a failure's slack price C_j (soft margins only), applied once per pair in the
        round that tightens its margin, so ``C_j = C·slack_upweight`` on every tightened pair at the
        end. The default 1 keeps C (and then, by proofs/T10, failures strictly inside the margin
        cannot move θ).

    Loop:

    max_rounds : int
        Rounds after the standard solve.
    curriculum : bool
        When a round has new misclassified pairs, tighten only those; near-ties wait until no clear
        error is left.
    dual_path : bool
        Fit a correction θ_c on the failures on top of the fixed standard θ_b.
    correction_penalty : float, optional
        The correction's own penalty: C_c for soft margins, λ_c for MaxEnt (default: the program's).
    """

    near_tie_threshold: float | None = _setting(None, "near-tie threshold τ on the normalised margin")
    near_tie_quantile: float | None = _setting(0.1, "near-tie threshold as a quantile of the margins")
    oof_folds: int = _setting(5, "out-of-fold mining folds, 0 = off")
    seed: int = _setting(0, "seed of the out-of-fold folds")
    failure_rule: str = _setting("all", "which failures are edited: all; band (margin >= -τ); agree (failing in "
                                        "and out of fold); posterior (coin-flip posterior < 1/2)",
                                 choices=FAILURE_RULES)
    margin_step: float = _setting(0.5, "FA margin tightening δ", "margin")
    upweight: float = _setting(2.0, "FA MaxEnt weight factor >= 1", "maxent")
    sharpen: float = _setting(1.0, "FA MaxEnt temperature factor in (0, 1]", "maxent")
    backoff: float = _setting(0.99, "fraction of the largest admissible step on hard-margin infeasibility",
                              "margin")
    slack_upweight: float = _setting(1.0, "factor >= 1 on a failure's slack price C, 1 = off (soft margins)",
                                     "margin")
    max_rounds: int = _setting(5, "FA rounds after the standard solve")
    curriculum: bool = _setting(True, "tighten new misclassified pairs before near-ties")
    dual_path: bool = _setting(False, "fit a correction on failures over the standard θ_b", flag=True)
    correction_penalty: float | None = _setting(None, "the dual path's own penalty C_c or λ_c")

    def __post_init__(self):
        if self.near_tie_threshold is not None:
            _check_real("near_tie_threshold", self.near_tie_threshold, lambda v: v >= 0, "finite and >= 0")
        if self.near_tie_quantile is not None:
            _check_real("near_tie_quantile", self.near_tie_quantile, lambda v: 0 < v < 1, "in (0, 1)")
        _check_int("oof_folds", self.oof_folds, lambda v: v == 0 or v >= 2, "0 (off) or an integer >= 2")
        _check_int("seed", self.seed, lambda v: v >= 0, "an integer >= 0")
        if not isinstance(self.failure_rule, str) or self.failure_rule not in FAILURE_RULES:
            raise DataError(f"failure_rule must be one of {', '.join(map(repr, FAILURE_RULES))}, "
                            f"got {self.failure_rule!r}")
        if self.failure_rule == "agree" and not self.oof_folds:
            raise DataError("failure_rule='agree' keeps failures on both the training and the out-of-fold "
                            "fit: it needs oof_folds >= 2, got oof_folds=0")
        _check_real("margin_step", self.margin_step, lambda v: v > 0, "positive and finite")
        _check_real("upweight", self.upweight, lambda v: v >= 1, "finite and >= 1")
        _check_real("sharpen", self.sharpen, lambda v: 0 < v <= 1, "in (0, 1]")
        if self.upweight == 1 and self.sharpen == 1:
            raise DataError("upweight=1 and sharpen=1 would leave MaxEnt failures unchanged")
        _check_real("backoff", self.backoff, lambda v: 0 < v < 1, "in (0, 1)")
        _check_real("slack_upweight", self.slack_upweight, lambda v: v >= 1, "finite and >= 1")
        _check_int("max_rounds", self.max_rounds, lambda v: v >= 0, "an integer >= 0")
        if self.correction_penalty is not None:
            _check_real("correction_penalty", self.correction_penalty, lambda v: v > 0, "positive and finite")

    @classmethod
    def names(cls, applies: str | None = None) -> tuple[str, ...]:
        """The setting names (those that apply to ``"margin"`` or ``"maxent"`` programs if given)."""
        return tuple(f.name for f in fields(cls)
                     if applies is None or f.metadata["applies"] in ("all", applies))

    def replace(self, **changes) -> "FASettings":
        """A copy with ``changes``; an unknown name is a DataError naming it."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise DataError(f"unknown FA setting(s) {unknown}; the settings are {list(self.names())}")
        return replace(self, **changes)

    @property
    def threshold_rule(self) -> tuple[float | None, float | None]:
        """(absolute τ, quantile): the threshold wins when both are set."""
        if self.near_tie_threshold is not None:
            return float(self.near_tie_threshold), None
        return None, self.near_tie_quantile

    def resolve_threshold(self, margins: np.ndarray) -> float:
        """The absolute τ these settings mean for the given normalised margins."""
        threshold, quantile = self.threshold_rule
        return resolve_threshold(margins, threshold, quantile)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_real(name: str, value, ok, what: str) -> None:
    """DataError naming ``name`` unless ``value`` is a real number (:func:`real_scalar`), finite and ``ok``."""
    number = real_scalar(name, value)
    if not (np.isfinite(number) and ok(number)):
        raise DataError(f"{name} must be {what}, got {value!r}")


def _check_int(name: str, value, ok, what: str) -> None:
    """DataError naming ``name`` unless ``value`` is an integer (not a bool) and ``ok``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not ok(value):
        raise DataError(f"{name} must be {what}, got {value!r}")
