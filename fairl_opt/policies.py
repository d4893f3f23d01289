"""The aligned policy and sampling from it: the KL-regularised optimum ``π* ∝ π₀ exp(r*/β)`` over a
candidate pool, exact categorical draws (Gumbel-max), preference-pair sampling (y⁺ ~ π*, y⁻ ~ π₀ on
the same prompt) and sampling-importance-resampling of one candidate. Used by the planted problems
(:mod:`fairl_opt.simulate`) and the detox dataset (:mod:`fairl_opt.detox.dataset`)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from fairl_opt.exceptions import DataError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax; ``-inf`` entries stay ``-inf`` (each row needs a finite entry)."""
    top = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def aligned_log_probs(base_log_probs, rewards, beta: float) -> np.ndarray:
    """Log-probabilities of the KL-regularised optimum ``π* ∝ π₀ exp(r*/β)`` over a candidate pool.

    Parameters
    ----------
    base_log_probs : array of shape (..., K)
        ``log π₀`` over the K candidates of each prompt (rows need not be normalised).
    rewards : array of shape (..., K)
        True rewards ``r*`` of the candidates.
    beta : float
        KL strength, > 0.

    Returns
    -------
    ndarray of shape (..., K)
        ``log π* = log π₀ + r*/β − logsumexp(log π₀ + r*/β)``, computed stably.

    Examples
    --------
    >>> lp = aligned_log_probs(np.log([0.5, 0.5]), np.array([0.0, np.log(3.0)]), 1.0)
    >>> np.round(np.exp(lp), 6)
    array([0.25, 0.75])
    """
    if not (isinstance(beta, numbers.Real) and math.isfinite(beta) and beta > 0):
        raise DataError(f"beta must be a finite number > 0, got {beta!r}")
    rewards = np.asarray(rewards, dtype=np.float64)
    logits = np.asarray(base_log_probs, dtype=np.float64) + rewards / beta
    return log_softmax(logits)


def gumbel_argmax(rng: np.random.Generator, log_probs: np.ndarray) -> np.ndarray:
    """One exact categorical draw per row of ``log_probs`` (``-inf`` = excluded)."""
    return np.argmax(log_probs + rng.gumbel(size=log_probs.shape), axis=-1)


def gumbel_topk(rng: np.random.Generator, log_probs: np.ndarray, k: int) -> np.ndarray:
    """k draws without replacement per row (Gumbel top-k = sequential sampling w/o replacement)."""
    keys = log_probs + rng.gumbel(size=log_probs.shape)
    return np.argsort(-keys, axis=-1, kind="stable")[:, :k]


def _admissible_partners(a: int, k: int, seen: set) -> np.ndarray:
    """Mask of candidates j that may pair with a: j != a and {a, j} not yet used by the prompt."""
    return np.array([j != a and (min(a, j), max(a, j)) not in seen for j in range(k)])


def sample_pair_indices(
    rng: np.random.Generator,
    base_log_probs: np.ndarray,
    aligned_log_probs_: np.ndarray,
    n_pairs: int,
    pairs_per_prompt: int,
):
    """Draw candidate indices (y⁺ ~ π*, y⁻ ~ π₀) for every pair, without ties or repeats.

    Parameters
    ----------
    rng : numpy.random.Generator
    base_log_probs, aligned_log_probs_ : arrays of shape (P, K)
        ``log π₀`` and ``log π*`` per prompt, with ``P = ceil(n_pairs / pairs_per_prompt)``.
    n_pairs : int
        Number of pairs; pair k belongs to prompt ``k // pairs_per_prompt``.
    pairs_per_prompt : int
        At most ``K (K − 1) / 2`` (distinct unordered candidate pairs per prompt).

    Returns
    -------
    plus, minus, prompt_ids : int arrays of shape (n_pairs,)
        Candidate index of the aligned (chosen) and base (rejected) completion, and the prompt.

    Notes
    -----
    y⁺ and y⁻ are first drawn independently. A draw with y⁻ = y⁺, or whose unordered candidate pair
    was already used by the prompt, gets y⁻ redrawn from π₀ restricted to y⁺'s admissible partners;
    if y⁺ has none left, y⁺ is redrawn from π* restricted to candidates that still have one.
    """
    log_pi0 = np.asarray(base_log_probs, dtype=np.float64)
    log_pis = np.asarray(aligned_log_probs_, dtype=np.float64)
    n_prompts, k = log_pi0.shape
    if pairs_per_prompt > k * (k - 1) // 2:
        raise DataError(
            f"pairs_per_prompt={pairs_per_prompt} exceeds the {k * (k - 1) // 2} distinct pairs of "
            f"{k} candidates"
        )
    if n_prompts != -(-n_pairs // pairs_per_prompt):
        raise DataError(f"need ceil(n_pairs / pairs_per_prompt) prompts, got {n_prompts}")
    prompt_ids = np.arange(n_pairs, dtype=np.int64) // pairs_per_prompt
    plus = gumbel_argmax(rng, log_pis[prompt_ids])
    minus = gumbel_argmax(rng, log_pi0[prompt_ids])
    used: list[set] = [set() for _ in range(n_prompts)]
    for i in range(n_pairs):
        p = int(prompt_ids[i])
        a, b = int(plus[i]), int(minus[i])
        seen = used[p]
        if a == b or (min(a, b), max(a, b)) in seen:
            partners = _admissible_partners(a, k, seen)
            if not partners.any():
                open_ = np.array([_admissible_partners(c, k, seen).any() for c in range(k)])
                a = int(gumbel_argmax(rng, np.where(open_, log_pis[p], -np.inf)))
                partners = _admissible_partners(a, k, seen)
            b = int(gumbel_argmax(rng, np.where(partners, log_pi0[p], -np.inf)))
            plus[i], minus[i] = a, b
        seen.add((min(a, b), max(a, b)))
    return plus.astype(np.int64), minus.astype(np.int64), prompt_ids


# ------------------------------------------------------------------------------------------------
# the simulator
# ------------------------------------------------------------------------------------------------


def sir_pick(rewards, beta: float, rng: np.random.Generator) -> int:
    """Index of one candidate drawn with probability ∝ exp(r/β) (numerically stable softmax)."""
    r = np.asarray(rewards, dtype=np.float64) / beta
    w = np.exp(r - r.max())
    return int(rng.choice(r.size, p=w / w.sum()))
