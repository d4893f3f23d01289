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
failures (:mod:`fairl_opt.failures`) are up-weighted:

``"all"``       every failure: :func:`selective_fa` then equals
                :class:`~fairl_opt.estimators.FailureAwareReward` on MaxEnt;
``"band"``      failures with normalised margin ≥ −τ, i.e. the band |m| ≤ τ, which holds a pair in
                either order: a weight that does not read the order (consistent, T12 (b));
``"posterior"`` failures whose out-of-fold posterior probability of being a coin flip
                (:func:`noise_posterior`, the mixture of :func:`mixture_maxent`) is below ½ (T12 (e));
``"agree"``     failures on both the training fit and the out-of-fold fit;
``"oracle"``    failures that are not ``noise`` (needs the truth: the ceiling of any rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from fairl_opt.exceptions import DataError
from fairl_opt.failures import combine_margins, detect_failures, normalised_margins
from fairl_opt.fa import FASettings
from fairl_opt.metrics import classification_metrics, starc_distance
from fairl_opt.pairs import PreferencePairs, group_folds, pair_kinds
from fairl_opt.policies import aligned_log_probs, gumbel_topk, sample_pair_indices
from fairl_opt.programs import MaxEntProgram
from fairl_opt.simulate import simulate
from fairl_opt.solvers import get_backend

REGIMES = ("linear", "gaussian", "two-kinds", "label-noise", "filtered")
RULES = ("all", "band", "posterior", "agree", "oracle")


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


# -- failure rules ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FailureContext:
    """What a rule may look at: the pairs, this round's failures, and the fits that found them.

    ``train_margins`` and ``oof_margins`` are normalised margins (Δθ/‖θ‖) under the training fit and
    the fit without the pair's fold; ``oof_scores`` are Δ_jθ̂₋f in the model's logit units.
    ``noise_posterior`` is :func:`noise_posterior` (the ``"posterior"`` rule); ``noise`` is the truth,
    for the ``"oracle"`` rule only (None otherwise).
    """

    delta: np.ndarray
    failures: object
    train_margins: np.ndarray
    oof_margins: np.ndarray
    oof_scores: np.ndarray
    noise_posterior: np.ndarray | None = None
    noise: np.ndarray | None = None


def mixture_maxent(delta, reg: float = 1.0, *, em_steps: int = 5,
                   backend: str = "newton") -> tuple[np.ndarray, float, np.ndarray]:
    """Bradley–Terry with coin-flip pairs (Copas 1988): a pair's order is a fair coin with probability
    ε, else P(chosen ≻ rejected) = σ(Δθ). Maximises the penalised likelihood
    Σ_j log(ε/2 + (1 − ε)σ(Δ_jθ)) − (λ/2)‖θ‖² over θ and ε ∈ [0, 1): ``em_steps`` EM steps from
    MaxEnt's θ (E-step: each pair's posterior probability of being a coin flip,
    π_j = (ε/2)/(ε/2 + (1 − ε)σ(Δ_jθ)); M-step: MaxEnt with weights 1 − π_j, ε = mean π), then
    L-BFGS-B on (θ, ε) with the bound ε ≥ 0 (EM alone crawls: the likelihood is flat in ε).
    The objective is not concave; this returns a local maximiser. Returns (θ, ε̂, π).
    """
    delta = np.asarray(delta, dtype=np.float64)
    program = MaxEntProgram(delta, reg)
    solver = get_backend(backend, program)
    theta = solver.solve(program).require_certified("mixture MaxEnt").theta
    eps = 0.1
    for _ in range(em_steps):
        noise = _coin_flip_probability(eps, delta @ theta)
        eps = float(noise.mean())
        program_w = program.with_weights(np.maximum(1 - noise, 1e-12))
        theta = solver.fresh().solve(program_w).require_certified("mixture MaxEnt").theta
    d = delta.shape[1]

    def objective(x):
        th, e = x[:d], x[d]
        s = delta @ th
        log_sig, log_sig_neg = -np.logaddexp(0, -s), -np.logaddexp(0, s)
        with np.errstate(divide="ignore", over="ignore"):  # ε = 0 at the bound; far-off steps backtrack
            log_p = np.logaddexp(np.log(e / 2), np.log1p(-e) + log_sig) if e > 0 else log_sig
            grad_th = -delta.T @ np.exp(np.log1p(-e) + log_sig + log_sig_neg - log_p) + reg * th
            grad_e = -np.sum((0.5 - np.exp(log_sig)) * np.exp(-log_p))
        return -np.sum(log_p) + 0.5 * reg * th @ th, np.append(grad_th, grad_e)

    bounds = [(None, None)] * d + [(0.0, 1.0 - 1e-6)]
    found = minimize(objective, np.append(theta, eps), jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9})
    theta, eps = found.x[:d], float(found.x[d])
    return theta, eps, _coin_flip_probability(eps, delta @ theta)


def _coin_flip_probability(eps: float, scores: np.ndarray) -> np.ndarray:
    """(ε/2)/(ε/2 + (1 − ε)σ(s)): the posterior that a pair with logit s is a coin flip (0 at ε = 0)."""
    if eps <= 0:
        return np.zeros_like(scores, dtype=np.float64)
    return (eps / 2) / (eps / 2 + (1 - eps) * expit(scores))


def noise_posterior(delta, groups, reg: float = 1.0, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each pair's out-of-fold probability of being a coin flip: :func:`mixture_maxent` fitted without
    the pair's fold (folds by prompt, :func:`fairl_opt.pairs.group_folds`), evaluated on the pair."""
    delta = np.asarray(delta, dtype=np.float64)
    out = np.empty(delta.shape[0])
    for train, test in group_folds(np.arange(delta.shape[0]) if groups is None else groups, folds, seed):
        theta, eps, _ = mixture_maxent(delta[train], reg)
        out[test] = _coin_flip_probability(eps, delta[test] @ theta)
    return out


def select_failures(rule: str, context: FailureContext) -> np.ndarray:
    """The failures (indices into the pairs, a subset of ``context.failures.indices``) that ``rule``
    up-weights; see :data:`RULES` and the module docstring."""
    found = context.failures.indices
    if rule == "all":
        return found
    if rule == "band":
        return found[context.failures.margins[found] >= -context.failures.threshold]
    if rule == "posterior":
        return found[context.noise_posterior[found] < 0.5]
    if rule == "agree":
        tau = context.failures.threshold
        both = np.maximum(context.train_margins, context.oof_margins)
        return found[both[found] <= tau]
    if rule == "oracle":
        if context.noise is None:
            raise DataError("the oracle rule needs the truth: pass noise= to selective_fa")
        return found[~context.noise[found]]
    raise DataError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")


def selective_fa(delta, groups, reg: float = 1.0, settings: FASettings | None = None, rule: str = "all",
                 noise=None, backend: str = "newton") -> tuple[np.ndarray, dict]:
    """FA-MaxEnt whose rounds up-weight only the failures :func:`select_failures` keeps.

    The loop is :func:`fairl_opt.fa.run_fa`'s MaxEnt path (same failure detection: the worse of the
    training and out-of-fold margin, τ fixed after round 0, curriculum, each pair edited once), with
    the rule applied between detection and edit; ``rule="all"`` reproduces ``run_fa``. Returns
    (θ, record) with record = {"edited": indices, "rounds": rounds with an edit, "noise_posterior":
    the posterior of rule "posterior", else None}.
    """
    settings = FASettings() if settings is None else settings
    delta = np.asarray(delta, dtype=np.float64)
    n = delta.shape[0]
    program = MaxEntProgram(delta, reg)
    solver = get_backend(backend, program)
    weights, temperatures = np.ones(n), np.ones(n)
    folds = group_folds(np.arange(n) if groups is None else groups, settings.oof_folds, settings.seed) \
        if settings.oof_folds else None

    def fit(rows=None):
        edited = program.with_weights(weights, temperatures)
        edited = edited if rows is None else edited.restrict(rows)
        return solver.fresh().solve(edited).require_certified("selective FA").theta

    theta = fit()
    threshold = posterior = None
    edited: set[int] = set()
    record = {"edited": np.zeros(0, dtype=np.int64), "rounds": 0, "noise_posterior": None}
    for r in range(1, settings.max_rounds + 1):
        train = normalised_margins(delta, theta)
        oof_m, oof_s = train, delta @ theta
        if folds:
            oof_m, oof_s = np.empty(n), np.empty(n)
            for rows, test in folds:
                fold_theta = fit(rows)
                oof_s[test] = delta[test] @ fold_theta
                oof_m[test] = normalised_margins(delta[test], fold_theta)
        margins = combine_margins(train, oof_m if folds else None)
        if threshold is None:
            threshold = settings.resolve_threshold(margins)
        failures = detect_failures(margins, threshold)
        if rule == "posterior" and posterior is None:
            posterior = noise_posterior(delta, groups, reg, settings.oof_folds or 5, settings.seed)
            record["noise_posterior"] = posterior
        context = FailureContext(delta, failures, train, oof_m, oof_s, posterior,
                                 None if noise is None else np.asarray(noise))
        keep = set(select_failures(rule, context).tolist())
        new_mis = [i for i in failures.misclassified.tolist() if i in keep and i not in edited]
        new_tie = [i for i in failures.near_ties.tolist() if i in keep and i not in edited]
        new = new_mis if (settings.curriculum and new_mis) else new_mis + new_tie
        if not new or len(edited) + len(new) >= n:
            break
        rows = np.asarray(sorted(new), dtype=np.int64)
        weights[rows] *= settings.upweight
        temperatures[rows] *= settings.sharpen
        edited.update(new)
        theta = fit()
        record["rounds"] = r
    record["edited"] = np.asarray(sorted(edited), dtype=np.int64)
    return theta, record
