"""Planted regimes where the linear Bradley–Terry model is right or wrong, and rules that keep the
informative failures of the FA loop and drop the noisy ones (proofs/T12_when_fa_helps.md).

Regimes (:func:`planted_regime`; every one keeps the true reward r* of each completion):

``"linear"``
    :func:`fairl_opt.simulate.simulate` (detox clusters): r* = θ*ᵀφ, the model is right, and the
    design is symmetric about θ* (its nuisance is isotropic and independent of r*).
``"gaussian"``
    r* = θ*ᵀφ with Gaussian base policies, π* = their exponential tilt (the exact optimum, T12 (a)),
    and a covariance with no symmetry about θ*: the model is right, the design generic.
``"two-kinds"``
    Misspecified. Two toxicity directions v₁ (common, rate ``toxic_rate``) and v₂ (rare,
    ``rare_rate``); a completion is toxic iff φᵀv₁ > 3/2 or φᵀv₂ > 3/2, and r* = −3·[toxic]: a step
    function of two directions. NT→NT and T→T pairs have equal r*, so their order is a fair coin.
``"label-noise"``
    ``"gaussian"`` with a fraction ``noise_rate`` of pairs whose order was replaced by a fair coin.
``"filtered"``
    ``"gaussian"`` pairs curated by an older reward θ_old (at 45° to θ*): each pair θ_old misranks
    was dropped with probability ``drop_rate`` (the weights 1/(1 − drop_rate) on those pairs undo it).

``noise`` marks pairs whose order says nothing about r* (equal r*, or a coin-flipped order);
``informative`` marks the pairs a regime under-represents (the rare kind's T→NT pairs, the pairs
θ_old misranks). Neither is seen by a fit; they score the rules.

Failure rules (:data:`RULES`, arguments of :func:`selective_fa`) choose which of the FA loop's
failures (:mod:`fairl_opt.failures`) are up-weighted. ``"all"``, ``"band"``, ``"posterior"`` and
``"agree"`` are the loop's own ``failure_rule`` setting (:mod:`fairl_opt.fa.rules`; the coin-flip
mixture is :mod:`fairl_opt.fa.noise`); ``"oracle"`` keeps the failures that are not ``noise``
(:func:`oracle_rule`: it needs the truth, the ceiling of any rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fairl_opt.estimators import MaxEntReward
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.fa.noise import mixture_maxent
from fairl_opt.fa.rules import FAILURE_RULES, FailureContext
from fairl_opt.metrics import classification_metrics, starc_distance
from fairl_opt.pairs import PreferencePairs, group_split, pair_kinds
from fairl_opt.policies import aligned_log_probs, gumbel_topk, sample_pair_indices
from fairl_opt.programs import MaxEntProgram
from fairl_opt.solvers import solve
from fairl_opt.simulate import simulate

REGIMES = ("linear", "gaussian", "two-kinds", "label-noise", "filtered")
#: The rules of the study: the FA loop's own (``FASettings.failure_rule``) and the oracle.
RULES = (*FAILURE_RULES, "oracle")


@dataclass(frozen=True, eq=False)
class RegimeProblem:
    """Pairs of a planted regime with the truth a fit never sees.

    Attributes
    ----------
    pairs : PreferencePairs
        ``chosen ≻ rejected`` as observed, kinds by the true toxicity, prompt ids.
    chosen_rewards, rejected_rewards : (n,) arrays
        r* of each pair's completions (before any label noise: a flipped pair keeps its completions'
        rewards, so ``chosen_rewards < rejected_rewards`` can happen).
    eval_features, eval_rewards, eval_labels, eval_prompt_ids
        Completions of every prompt (half base, half aligned) with r*, non-toxic label, prompt.
    noise, informative : (n,) bool arrays
        See the module docstring.
    regime : str
    seed : int
    info : dict
        ``theta_true`` (θ*) and ``threshold`` of the linear regimes, ``theta_old`` (filtered),
        ``directions`` (v₁, v₂ as columns; two-kinds).
    """

    pairs: PreferencePairs
    chosen_rewards: np.ndarray
    rejected_rewards: np.ndarray
    eval_features: np.ndarray
    eval_rewards: np.ndarray
    eval_labels: np.ndarray
    eval_prompt_ids: np.ndarray
    noise: np.ndarray
    informative: np.ndarray
    regime: str
    seed: int
    info: dict = field(default_factory=dict)


def planted_regime(regime: str, n_pairs: int = 1500, dim: int = 16, *, seed: int = 0, beta: float = 0.5,
                   noise_rate: float = 0.2, drop_rate: float = 0.5, rare_rate: float = 0.05,
                   toxic_rate: float = 0.3) -> RegimeProblem:
    """A :class:`RegimeProblem` of ``regime`` (one of :data:`REGIMES`) with ``n_pairs`` pairs in R^dim.

    Pairs are y⁺ ~ π* ∝ π₀ exp(r*/β), y⁻ ~ π₀ on the same prompt, two pairs per prompt; ``seed``
    fixes every draw. ``toxic_rate`` is the share of toxic base completions (the threshold on r*).
    """
    if regime not in REGIMES:
        raise DataError(f"regime must be one of {', '.join(REGIMES)}, got {regime!r}")
    for name, rate in (("noise_rate", noise_rate), ("drop_rate", drop_rate)):
        if not 0.0 <= rate < 1.0:
            raise DataError(f"{name} must lie in [0, 1), got {rate}")
    if regime == "two-kinds":
        return _two_kinds(n_pairs, dim, seed, beta, rare_rate, toxic_rate)
    if regime == "linear":
        prob = simulate(n_pairs=n_pairs, dim=dim, regime="detox", beta=beta, n_candidates=8,
                        toxic_fraction=toxic_rate, seed=seed)
        return _problem(prob.pairs.chosen, prob.pairs.rejected, prob.pairs.prompt_ids, prob.theta_true,
                        prob.toxicity_threshold, prob.eval_features, prob.eval_prompt_ids, regime, seed)
    rng = np.random.default_rng([seed, 3])
    drawn = n_pairs if regime != "filtered" else int(np.ceil(n_pairs / (1 - drop_rate / 2)) + 100)
    theta, chosen, rejected, prompts, eval_features, eval_prompts = _gaussian(rng, drawn, dim, beta)
    base_rewards = eval_features[0::4] @ theta  # the first of each prompt's four is a base draw
    threshold = float(np.quantile(base_rewards, toxic_rate))
    noise = informative = None
    extra = {}
    if regime == "filtered":
        other = rng.standard_normal(dim)
        other -= (other @ theta) / (theta @ theta) * theta
        theta_old = theta / np.linalg.norm(theta) + other / np.linalg.norm(other)  # 45° from θ*
        misranked = (chosen - rejected) @ theta_old <= 0
        kept = np.flatnonzero(~misranked | (rng.random(drawn) >= drop_rate))[:n_pairs]
        if kept.size < n_pairs:
            raise DataError("filtered regime: too few pairs survived the filter; lower drop_rate")
        chosen, rejected, prompts, informative = chosen[kept], rejected[kept], prompts[kept], misranked[kept]
        extra["theta_old"] = theta_old
    elif regime == "label-noise":
        noise = rng.random(n_pairs) < noise_rate
        swap = noise & (rng.random(n_pairs) < 0.5)
        chosen, rejected = np.where(swap[:, None], rejected, chosen), np.where(swap[:, None], chosen, rejected)
    return _problem(chosen, rejected, prompts, theta, threshold, eval_features, eval_prompts, regime, seed,
                    noise, informative, extra)


def _gaussian(rng, n_pairs, dim, beta):
    """The exact KL-regularised optimum with Gaussian base policies: π₀(·|x) = N(μ_x, Σ) and
    π*(·|x) ∝ π₀ exp(θ*ᵀφ/β) = N(μ_x + Σθ*/β, Σ) (exponential tilting), Σ with eigenvalues from 0.2
    to 3 along random axes, θ* a random unit vector: a design with no symmetry about θ*.
    Returns θ*, chosen, rejected, prompt ids (two pairs per prompt), eval features (per prompt two
    base then two aligned draws), eval prompt ids."""
    n_prompts = -(-n_pairs // 2)
    axes, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    root = axes * np.sqrt(np.geomspace(0.2, 3.0, dim))  # Σ = root rootᵀ
    theta = rng.standard_normal(dim)
    theta /= np.linalg.norm(theta)
    tilt = root @ (root.T @ theta) / beta
    means = 0.5 * rng.standard_normal((n_prompts, dim))

    def draw(prompts, aligned):
        return means[prompts] + rng.standard_normal((prompts.size, dim)) @ root.T + np.outer(aligned, tilt)

    prompts = np.arange(n_pairs) // 2
    chosen, rejected = draw(prompts, np.ones(n_pairs)), draw(prompts, np.zeros(n_pairs))
    eval_prompts = np.repeat(np.arange(n_prompts), 4)
    eval_features = draw(eval_prompts, np.tile([0.0, 0.0, 1.0, 1.0], n_prompts))
    return theta, chosen, rejected, prompts, eval_features, eval_prompts


def _problem(chosen, rejected, prompts, theta, threshold, eval_features, eval_prompts, regime, seed,
             noise=None, informative=None, extra=None) -> RegimeProblem:
    """A linear-reward :class:`RegimeProblem`: r* = θ*ᵀφ, toxic iff r* < threshold."""
    n = chosen.shape[0]
    rc, rr = chosen @ theta, rejected @ theta
    eval_rewards = eval_features @ theta
    pairs = PreferencePairs(chosen, rejected, pair_kinds(rr < threshold, rc < threshold), prompts)
    info = {"theta_true": theta, "threshold": float(threshold), **(extra or {})}
    return RegimeProblem(pairs, rc, rr, eval_features, eval_rewards, eval_rewards >= threshold, eval_prompts,
                         np.zeros(n, bool) if noise is None else noise,
                         np.zeros(n, bool) if informative is None else informative, regime, seed, info)


def _two_kinds(n_pairs, dim, seed, beta, rare_rate, toxic_rate, n_candidates=8, shift=3.0, gap=3.0,
               along_std=0.5, nuisance_std=1.5) -> RegimeProblem:
    """The step-function regime (module docstring): r* = −gap·[φᵀv₁ > shift/2 or φᵀv₂ > shift/2]."""
    if dim < 3:
        raise DataError(f"the two-kinds regime needs dim >= 3, got {dim}")
    rng = np.random.default_rng([seed, 2])
    n_prompts, k = -(-n_pairs // 2), n_candidates
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    v = basis[:, :2]  # v₁, v₂
    mu = 0.5 * rng.standard_normal((n_prompts, dim))
    mu -= (mu @ v) @ v.T
    kinds = np.stack([rng.random((n_prompts, k)) < toxic_rate, rng.random((n_prompts, k)) < rare_rate], -1)
    along = shift * kinds + along_std * rng.standard_normal((n_prompts, k, 2))
    z = nuisance_std * rng.standard_normal((n_prompts, k, dim))
    z -= (z @ v) @ v.T
    phi = mu[:, None, :] + along @ v.T + z
    toxic = ((phi @ v) > shift / 2).any(-1)
    rewards = -gap * toxic
    log_pi0 = np.full((n_prompts, k), -np.log(k))
    log_pis = aligned_log_probs(log_pi0, rewards, beta)
    plus, minus, prompts = sample_pair_indices(rng, log_pi0, log_pis, n_pairs, 2)
    evals = np.concatenate([gumbel_topk(rng, log_pi0, 2), gumbel_topk(rng, log_pis, 2)], axis=1)
    eval_prompts = np.repeat(np.arange(n_prompts), evals.shape[1])
    eval_features = phi[eval_prompts, evals.ravel()]
    eval_rewards = rewards[eval_prompts, evals.ravel()].astype(np.float64)
    tox_c, tox_r = toxic[prompts, plus], toxic[prompts, minus]
    over = (phi[prompts, minus] @ v) > shift / 2  # the rejected completion's kinds
    rare_only = over[:, 1] & ~over[:, 0]
    pairs = PreferencePairs(phi[prompts, plus], phi[prompts, minus], pair_kinds(tox_r, tox_c), prompts)
    rc, rr = rewards[prompts, plus].astype(np.float64), rewards[prompts, minus].astype(np.float64)
    return RegimeProblem(pairs, rc, rr, eval_features, eval_rewards, eval_rewards >= 0, eval_prompts,
                         rc == rr, rare_only & tox_r & ~tox_c, "two-kinds", seed, {"directions": v})


# -- held-out measures ------------------------------------------------------------------------------
def held_out_metrics(problem: RegimeProblem, theta, test) -> dict[str, float]:
    """ROC-AUC (non-toxic vs toxic) and STARC distance to r* on the evaluation completions of the test
    pairs' prompts, and the accuracy of θ on the test pairs as observed."""
    theta = np.asarray(theta, dtype=np.float64)
    test = np.asarray(test)
    shown = np.isin(problem.eval_prompt_ids, np.unique(problem.pairs.prompt_ids[test]))
    scores = problem.eval_features[shown] @ theta
    labels = problem.eval_labels[shown]
    return {
        "roc_auc": classification_metrics(scores, labels, 0.0)["roc_auc"],
        "starc": starc_distance(scores, problem.eval_rewards[shown], problem.eval_prompt_ids[shown]),
        "pair_acc": float(np.mean(problem.pairs.delta[test] @ theta > 0)),
    }


def paired_differences(method: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (sd/√n, ddof = 1) of ``method − baseline`` over paired runs (seeds)."""
    diff = np.asarray(method, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if diff.ndim != 1 or diff.size < 2:
        raise DataError(f"paired differences need >= 2 paired runs, got shape {diff.shape}")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


# -- failure rules ---------------------------------------------------------------------------------
def oracle_rule(noise):
    """The ``"oracle"`` failure rule as a ``select=`` callable of :func:`fairl_opt.fa.run_fa`: it keeps
    the failures that are not ``noise`` (the truth, which no fit sees)."""
    truth = np.asarray(noise, dtype=bool)

    def select(context: FailureContext) -> np.ndarray:
        found = context.failures.indices
        return found[~truth[found]]

    return select


def selective_fa(delta, groups, reg: float = 1.0, settings: FASettings | None = None, rule: str = "all",
                 noise=None, backend: str = "newton") -> tuple[np.ndarray, dict]:
    """FA-MaxEnt (:func:`fairl_opt.fa.run_fa` on ``MaxEntProgram(delta, reg)``) whose rounds edit only
    the failures ``rule`` keeps: ``settings.replace(failure_rule=rule)`` for the rules of
    :data:`fairl_opt.fa.rules.FAILURE_RULES`, :func:`oracle_rule` (``noise=`` the truth) for
    ``"oracle"``. Returns (θ, record) with record = {"edited": indices, "rounds": the last round with
    an edit, "noise_posterior": the posterior of rule "posterior", else None, "result": the FAResult}.
    """
    settings = FASettings() if settings is None else settings
    if rule not in RULES:
        raise DataError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    select = None
    if rule == "oracle":
        if noise is None:
            raise DataError("the oracle rule needs the truth: pass noise= to selective_fa")
        select, rule = oracle_rule(noise), "all"
    program = MaxEntProgram(np.asarray(delta, dtype=np.float64), reg)
    result = run_fa(program, backend, settings.replace(failure_rule=rule), groups=groups, select=select)
    rounds = max((h.round for h in result.history[1:] if h.changed), default=0)
    return result.theta, {"edited": result.tightened, "rounds": rounds,
                          "noise_posterior": result.noise_posterior, "result": result}


# -- the study (proofs/T12 (f); benchmarks/fa_theory.py and the detox report run it) -----------------
#: (name, failure rule, settings): every FA variant of the study; "fa" is the toolkit's FA-MaxEnt. The
#: rules other than "oracle" are the FA loop's own setting (FASettings.failure_rule).
VARIANTS = (
    ("fa", "all", FASettings()),
    ("fa-sharpen", "all", FASettings(upweight=1.0, sharpen=0.5)),
    ("fa-band", "band", FASettings()),
    ("fa-posterior", "posterior", FASettings()),
    ("fa-agree", "agree", FASettings()),
    ("fa-oracle", "oracle", FASettings()),
)
METRICS = ("roc_auc", "starc", "pair_acc")


def run_seed(regime: str, seed: int, n_pairs: int, dim: int, reg: float) -> dict:
    """{method: {metric: value, "noise_share": ..., "edited": ...}} for one regime and seed."""
    problem = planted_regime(regime, n_pairs, dim, seed=seed)
    train, test = group_split(problem.pairs.prompt_ids, 0.3, seed)
    delta, groups = problem.pairs.delta[train], problem.pairs.prompt_ids[train]
    noise = problem.noise[train]
    out = {"maxent": held_out_metrics(problem, MaxEntReward(reg).fit(delta).theta_, test)}
    out["maxent"].update(noise_share=float("nan"), edited=0)
    out["maxent-mixture"] = held_out_metrics(problem, mixture_maxent(delta, reg)[0], test)
    out["maxent-mixture"].update(noise_share=float("nan"), edited=0)
    # the truth's own weights: 2 = 1/(1 − drop_rate) on the pairs a regime under-represents (the
    # inverse-probability weights of "filtered"; the rare kind's T→NT pairs of "two-kinds")
    informative = problem.informative[train]
    theta = solve(MaxEntProgram(delta, reg, weights=np.where(informative, 2.0, 1.0)), "newton").theta
    out["oracle-weights"] = held_out_metrics(problem, theta, test)
    out["oracle-weights"].update(noise_share=float("nan"), edited=int(informative.sum()))
    for name, rule, settings in VARIANTS:
        theta, record = selective_fa(delta, groups, reg, settings, rule, noise=noise)
        if name == "fa":
            # the same λ per unit of total weight as the FA fit: separates focusing from the lighter
            # effective ridge that up-weighting brings at a fixed λ
            total = delta.shape[0] + (settings.upweight - 1) * record["edited"].size
            matched = MaxEntReward(reg * delta.shape[0] / total).fit(delta).theta_
            out["maxent-matched-λ"] = held_out_metrics(problem, matched, test)
            out["maxent-matched-λ"].update(noise_share=float("nan"), edited=0)
        row = held_out_metrics(problem, theta, test)
        edited = record["edited"]
        row["noise_share"] = float(noise[edited].mean()) if edited.size else float("nan")
        row["edited"] = int(edited.size)
        out[name] = row
    return out


def study(seeds: int, n_pairs: int, dim: int, reg: float, regimes=REGIMES) -> dict:
    """{regime: {method: {metric: array over seeds}}}: :func:`run_seed` for seeds 0..seeds−1."""
    table = {}
    for regime in regimes:
        runs = [run_seed(regime, seed, n_pairs, dim, reg) for seed in range(seeds)]
        table[regime] = {m: {k: np.array([r[m][k] for r in runs]) for k in runs[0][m]} for m in runs[0]}
    return table


def markdown(table: dict, baseline: str = "maxent", methods=None) -> str:
    """The study as a markdown table: the baseline's mean, then method − baseline (mean ± se over
    seeds, paired) per metric, for ``methods`` (default: all)."""
    head = ("| regime | method | " + " | ".join(f"Δ {m}" for m in METRICS)
            + " | pairs up-weighted | noise share |")
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for regime, rows in table.items():
        base = rows[baseline]
        cells = " | ".join(f"{base[m].mean():.4f}" for m in METRICS)
        lines.append(f"| {regime} | {baseline} (value) | {cells} | | |")
        for name, row in rows.items():
            if name == baseline or (methods is not None and name not in methods):
                continue
            diffs = []
            for m in METRICS:
                mean, se = paired_differences(row[m], base[m])
                diffs.append(f"{mean:+.4f} ± {se:.4f}")
            shares = row["noise_share"][np.isfinite(row["noise_share"])]
            share = f"{shares.mean():.2f}" if shares.size else "–"
            lines.append(f"| {regime} | {name} | " + " | ".join(diffs) + f" | {row['edited'].mean():.0f} | {share} |")
    return "\n".join(lines)


def study_summary(seeds: int, n_pairs: int, dim: int, reg: float, methods=("fa",), regimes=REGIMES) -> dict:
    """:func:`study` as JSON: per regime MaxEnt's mean held-out ROC-AUC, STARC and pair accuracy, and per
    method in ``methods`` Δ = method − MaxEnt of each (mean and standard error over seeds, paired), the
    mean number of pairs up-weighted and the share of noise pairs among them."""
    table = study(seeds, n_pairs, dim, reg, regimes)
    out = {}
    for regime, rows in table.items():
        base = rows["maxent"]
        out[regime] = {"maxent": {m: float(base[m].mean()) for m in METRICS}}
        for name in methods:
            row = rows[name]
            entry = {}
            for m in METRICS:
                mean, se = paired_differences(row[m], base[m])
                entry[m] = {"mean": mean, "se": se}
            shares = row["noise_share"][np.isfinite(row["noise_share"])]
            entry["noise_share"] = float(shares.mean()) if shares.size else None
            entry["edited"] = float(row["edited"].mean())
            out[regime][name] = entry
    return {"settings": {"seeds": seeds, "n_pairs": n_pairs, "dim": dim, "reg": reg}, "methods": list(methods),
            "table": out}
