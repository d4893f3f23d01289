"""Coin-flip pairs: Bradley–Terry with a share ε of pairs whose order is a fair coin (Copas 1988), fitted
by :func:`mixture_maxent`, and each pair's out-of-fold posterior probability of being a coin flip
(:func:`noise_posterior`), which the FA loop's ``failure_rule="posterior"`` reads
(proofs/T12_when_fa_helps.md, E3)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from fairl_opt.pairs import group_folds
from fairl_opt.programs import MaxEntProgram
from fairl_opt.solvers import get_backend


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
