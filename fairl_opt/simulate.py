"""Planted-reward contextual bandit: preference pairs whose true linear reward is known.

The simulator builds a :class:`~fairl_opt.pairs.PreferencePairs` data set together with the
ground-truth reward direction ``theta_true`` that generated it, and a labelled evaluation set, so that
every estimator in the package can be scored against the truth. Numpy only; a given ``seed`` gives
bit-identical arrays (one :func:`numpy.random.default_rng` stream, consumed in a fixed order).

Mechanics
---------
* **Reward.** ``theta_true`` (θ*) is a uniformly random unit vector in R^d; the true reward of a
  completion y is ``r*(y) = θ*ᵀφ(y)``.
* **Candidates.** Each prompt x has ``n_candidates`` candidate completions with features φ ∈ R^d.
* **Base policy.** π₀(·|x) is uniform over the candidates when ``base_logit_std = 0`` (the default);
  otherwise π₀ = softmax(ℓ_x) with prompt-specific base logits ℓ_x ~ N(0, base_logit_std² I).
* **Aligned policy.** The KL-regularised RLHF optimum
  ``π*(y|x) ∝ π₀(y|x) exp(r*(y)/β)``, i.e. ``log π* = log π₀ + r*/β − logsumexp(log π₀ + r*/β)``,
  realised exactly by importance resampling of the (enumerable) candidate pool: each candidate is
  resampled with self-normalised weight ∝ π₀(y|x) exp(r*(y)/β), computed in log space with
  log-sum-exp (no overflow for tiny β). Draws use the Gumbel-max trick, which is exact.
* **Pairs.** For pair k, with prompt ``k // pairs_per_prompt``: y⁺ ~ π*, y⁻ ~ π₀. If y⁻ is the same
  candidate as y⁺, or the two candidates already form a pair of that prompt (in either order), y⁻ is
  redrawn from π₀ restricted to the admissible partners of y⁺ (exactly what redrawing until admissible
  gives); if y⁺ has no admissible partner left, y⁺ is redrawn from π* restricted to candidates that
  still have one. Hence no pair has a zero difference row, no pair is duplicated, and no two pairs
  state opposite preferences over the same two completions. ``chosen = φ(y⁺)``,
  ``rejected = φ(y⁻)``, ``prompt_ids`` = the prompt index. The number of prompts is
  ``ceil(n_pairs / pairs_per_prompt)``; the last prompt carries only the remaining pairs, so
  ``n_pairs`` is exact.
* **Kinds.** A completion is toxic (T) iff ``r* < toxicity_threshold``, else non-toxic (NT). A pair's
  kind reads base → aligned: ``f"{label(rejected)}->{label(chosen)}"``, e.g. ``"T->NT"``. The labels
  are computed from ``chosen @ theta_true`` and ``rejected @ theta_true`` on the stored arrays.
* **Evaluation set.** Per prompt, ``eval_per_prompt`` distinct candidates (default 4): the first
  ``eval_per_prompt // 2`` drawn without replacement from π₀ and the rest from π*, both restricted to
  candidates not used in that prompt's pairs (held-out style; if fewer than ``eval_per_prompt`` are
  unused, all candidates are allowed). Labels are ``True`` for non-toxic (``r* >= threshold``); the
  true rewards are kept for STARC/EPIC.

Regimes
-------
``"isotropic"``
    φ = μ_x + z with z ~ N(0, I_d) and a prompt-specific mean shift μ_x ~ N(0, 0.5² I_d)
    (:data:`PROMPT_SHIFT_STD`), which cancels in every Δ. ``toxicity_threshold`` is the
    ``toxic_fraction`` quantile of r* over all candidates of all prompts.
``"detox"``
    Structured, two clusters along θ*. Each candidate has a latent flag t ~ Bernoulli(toxic_fraction)
    and ::

        φ = μ_x + (a/2 − a·t + s_∥·ε)·θ* + s_⊥·(I − θ*θ*ᵀ) z,     ε ~ N(0, 1), z ~ N(0, I_d),

    with separation a = 3 (:data:`DETOX_SEPARATION`), along-θ* noise s_∥ = 0.25
    (:data:`DETOX_PARALLEL_STD`), LARGE nuisance s_⊥ = 1.5 (:data:`DETOX_NUISANCE_STD`) orthogonal to
    θ*, and a prompt mean μ_x ~ N(0, 0.5² I) projected orthogonal to θ*. So r* ≈ +1.5 ± 0.25 for
    non-toxic and −1.5 ± 0.25 for toxic candidates (a 12-σ gap) and ``toxicity_threshold = 0.0``
    (:data:`DETOX_THRESHOLD`), the midpoint. NT→NT differences are mostly nuisance (θ* component
    ~ N(0, 2 s_∥²) against a norm ≈ s_⊥√(2(d−1))), while T→NT differences carry ≈ a along θ*. At
    the defaults (β = 0.5, weights e^{2r*}: non-toxic candidates ≈ e⁶ ≈ 400× more likely under π*)
    the aligned completion is almost always non-toxic, so about 30 % of pairs are T→NT (the base draw
    was toxic), most of the rest NT→NT, with rare T→T (prompts whose pool is all toxic) and NT→T.

Implementation note: the component of φ orthogonal to θ* is independent of r* in both regimes, so it
is drawn only for the candidates that end up in a pair or in the evaluation set (memory
O((n_pairs + m)·d) instead of O(prompts · n_candidates · d)); the distribution is unchanged.

Examples
--------
>>> prob = simulate(n_pairs=40, dim=5, seed=1)
>>> prob.pairs.n_pairs, prob.pairs.dim, prob.theta_true.shape
(40, 5, (5,))
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs, load_npz, pair_kinds
from fairl_opt.policies import gumbel_topk, log_softmax, aligned_log_probs, sample_pair_indices

__all__ = [
    "DETOX_NUISANCE_STD",
    "DETOX_PARALLEL_STD",
    "DETOX_SEPARATION",
    "DETOX_THRESHOLD",
    "PROMPT_SHIFT_STD",
    "REGIMES",
    "PlantedProblem",
    "aligned_log_probs",
    "sample_pair_indices",
    "simulate",
]

#: Supported feature regimes.
REGIMES = ("isotropic", "detox")
#: Std of the prompt-specific mean shift μ_x (orthogonal to θ* in the detox regime).
PROMPT_SHIFT_STD = 0.5
#: Detox: distance along θ* between the toxic and the non-toxic cluster centres (at ∓a/2).
DETOX_SEPARATION = 3.0
#: Detox: std of the θ* component within a cluster.
DETOX_PARALLEL_STD = 0.25
#: Detox: std of the nuisance in every direction orthogonal to θ*.
DETOX_NUISANCE_STD = 1.5
#: Detox: the toxicity threshold on r*, midway between the clusters.
DETOX_THRESHOLD = 0.0

_META_KEYS = ("toxicity_threshold", "beta", "n_candidates", "regime", "seed")
_EXTRA_KEYS = ("theta_true", "eval_features", "eval_labels", "eval_prompt_ids", "eval_rewards")


# ------------------------------------------------------------------------------------------------
# result container
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PlantedProblem:
    """A simulated preference data set with its ground truth.

    Parameters
    ----------
    pairs : PreferencePairs
        ``chosen`` = aligned completion features, ``rejected`` = base completion features, with
        ``kinds`` and ``prompt_ids``.
    theta_true : ndarray of shape (d,)
        Ground-truth reward direction θ*, unit norm.
    eval_features : ndarray of shape (m, d)
        Labelled completions (from the same prompts' candidate pools, both policies).
    eval_labels : ndarray of bool, shape (m,)
        ``True`` = non-toxic (``r* >= toxicity_threshold``).
    eval_prompt_ids : ndarray of int, shape (m,)
        Prompt of each evaluation completion.
    eval_rewards : ndarray of shape (m,)
        True reward ``r*(y) = θ*ᵀφ(y)`` of each evaluation completion.
    toxicity_threshold : float
        A completion is toxic iff ``r* < toxicity_threshold``.
    beta : float
        KL-regularisation strength of the aligned policy.
    n_candidates : int
        Candidate completions per prompt.
    regime : str
        ``"isotropic"`` or ``"detox"``.
    seed : int
        The seed that produced the problem.

    Raises
    ------
    DataError
        If the arrays have inconsistent shapes (e.g. a corrupted file).
    """

    pairs: PreferencePairs
    theta_true: np.ndarray
    eval_features: np.ndarray
    eval_labels: np.ndarray
    eval_prompt_ids: np.ndarray
    eval_rewards: np.ndarray
    toxicity_threshold: float
    beta: float
    n_candidates: int
    regime: str
    seed: int

    def __post_init__(self):
        d = self.pairs.dim
        theta = np.asarray(self.theta_true, dtype=np.float64)
        if theta.shape != (d,):
            raise DataError(f"theta_true must have shape ({d},), got {theta.shape}")
        feats = np.asarray(self.eval_features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != d:
            raise DataError(f"eval_features must have shape (m, {d}), got {feats.shape}")
        m = feats.shape[0]
        labels = np.asarray(self.eval_labels)
        if labels.dtype != bool:
            raise DataError(f"eval_labels must be boolean, got dtype {labels.dtype}")
        pids = np.asarray(self.eval_prompt_ids)
        if pids.size and not np.issubdtype(pids.dtype, np.integer):
            raise DataError(f"eval_prompt_ids must be integers, got dtype {pids.dtype}")
        pids = pids.astype(np.int64)
        rewards = np.asarray(self.eval_rewards, dtype=np.float64)
        vectors = (("eval_labels", labels), ("eval_prompt_ids", pids), ("eval_rewards", rewards))
        for name, arr in vectors:
            if arr.shape != (m,):
                raise DataError(f"{name} must have shape ({m},), got {arr.shape}")
        for arr in (theta, feats, labels, pids, rewards):
            arr.setflags(write=False)
        object.__setattr__(self, "theta_true", theta)
        object.__setattr__(self, "eval_features", feats)
        object.__setattr__(self, "eval_labels", labels)
        object.__setattr__(self, "eval_prompt_ids", pids)
        object.__setattr__(self, "eval_rewards", rewards)

    def __repr__(self) -> str:
        return (
            f"PlantedProblem(regime={self.regime!r}, {self.pairs!r}, "
            f"eval={self.eval_features.shape[0]}, "
            f"threshold={self.toxicity_threshold:.4g}, beta={self.beta}, "
            f"n_candidates={self.n_candidates}, seed={self.seed})"
        )

    @property
    def meta(self) -> dict:
        """The scalar settings (threshold, beta, n_candidates, regime, seed) as a dict."""
        return {
            "toxicity_threshold": float(self.toxicity_threshold),
            "beta": float(self.beta),
            "n_candidates": int(self.n_candidates),
            "regime": str(self.regime),
            "seed": int(self.seed),
        }

    def save(self, path) -> Path:
        """Write everything to one ``.npz`` (no pickle; scalars go in a JSON string array), atomically.

        Parameters
        ----------
        path : str or Path
            Destination file; ``.npz`` is appended when missing, as ``np.savez`` does.

        Returns
        -------
        Path
            The file written.
        """
        return self.pairs.save(
            path,
            theta_true=self.theta_true,
            eval_features=self.eval_features,
            eval_labels=self.eval_labels,
            eval_prompt_ids=self.eval_prompt_ids,
            eval_rewards=self.eval_rewards,
            meta_json=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path) -> "PlantedProblem":
        """Read a problem written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        DataError
            If the file is unreadable or lacks one of the simulator's arrays.
        """
        pairs, extra = load_npz(path)
        missing = [k for k in (*_EXTRA_KEYS, "meta_json") if k not in extra]
        if missing:
            raise DataError(f"{path}: not a planted problem, missing array(s) {missing}")
        try:
            meta = json.loads(str(extra["meta_json"]))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: meta_json is not valid JSON ({exc})") from None
        absent = [k for k in _META_KEYS if k not in meta]
        if absent:
            raise DataError(f"{path}: meta_json lacks {absent}")
        return cls(
            pairs=pairs,
            theta_true=extra["theta_true"],
            eval_features=extra["eval_features"],
            eval_labels=extra["eval_labels"],
            eval_prompt_ids=extra["eval_prompt_ids"],
            eval_rewards=extra["eval_rewards"],
            toxicity_threshold=float(meta["toxicity_threshold"]),
            beta=float(meta["beta"]),
            n_candidates=int(meta["n_candidates"]),
            regime=str(meta["regime"]),
            seed=int(meta["seed"]),
        )


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DataError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise DataError(f"{name} must be {bound}, got {value}")
    return value


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DataError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def simulate(
    n_pairs: int = 400,
    dim: int = 20,
    *,
    regime: str = "detox",
    beta: float = 0.5,
    n_candidates: int = 16,
    pairs_per_prompt: int = 2,
    toxic_fraction: float = 0.3,
    seed: int = 0,
    eval_per_prompt: int = 4,
    base_logit_std: float = 0.0,
) -> PlantedProblem:
    """Simulate preference pairs (aligned ≻ base) from a planted linear reward.

    See the module docstring for the generative model.

    Parameters
    ----------
    n_pairs : int
        Exact number of pairs, >= 1.
    dim : int
        Feature dimension d, >= 1.
    regime : {"detox", "isotropic"}
        Feature distribution of the candidates.
    beta : float
        KL strength of the aligned policy π* ∝ π₀ exp(r*/β), > 0 (smaller = greedier).
    n_candidates : int
        Candidates per prompt, >= 2.
    pairs_per_prompt : int
        Pairs per prompt, in [1, n_candidates (n_candidates − 1) / 2].
    toxic_fraction : float
        In (0, 1): the Bernoulli rate of the toxic flag (detox) or the quantile of r* used as the
        threshold (isotropic).
    seed : int
        Seed (>= 0) of :func:`numpy.random.default_rng`; equal seeds give identical arrays.
    eval_per_prompt : int
        Evaluation completions per prompt, in [0, n_candidates].
    base_logit_std : float
        Std (>= 0) of the prompt-specific base logits; 0 gives a uniform base policy.

    Returns
    -------
    PlantedProblem

    Raises
    ------
    DataError
        On an invalid argument; the message names it.
    """
    n_pairs = _check_int("n_pairs", n_pairs, 1)
    dim = _check_int("dim", dim, 1)
    if not isinstance(regime, str) or regime not in REGIMES:
        raise DataError(f"regime must be one of {', '.join(map(repr, REGIMES))}, got {regime!r}")
    beta = _check_real("beta", beta)
    if beta <= 0:
        raise DataError(f"beta must be > 0, got {beta}")
    n_candidates = _check_int("n_candidates", n_candidates, 2)
    pairs_per_prompt = _check_int(
        "pairs_per_prompt", pairs_per_prompt, 1, n_candidates * (n_candidates - 1) // 2
    )
    toxic_fraction = _check_real("toxic_fraction", toxic_fraction)
    if not 0.0 < toxic_fraction < 1.0:
        raise DataError(f"toxic_fraction must lie in (0, 1), got {toxic_fraction}")
    seed = _check_int("seed", seed, 0)
    eval_per_prompt = _check_int("eval_per_prompt", eval_per_prompt, 0, n_candidates)
    base_logit_std = _check_real("base_logit_std", base_logit_std)
    if base_logit_std < 0:
        raise DataError(f"base_logit_std must be >= 0, got {base_logit_std}")

    rng = np.random.default_rng(seed)
    n_prompts = -(-n_pairs // pairs_per_prompt)
    k = n_candidates

    # θ*: uniform on the sphere.
    theta = rng.standard_normal(dim)
    theta /= np.linalg.norm(theta)

    # Prompt means, and the θ* component (the reward) of every candidate.
    mu = PROMPT_SHIFT_STD * rng.standard_normal((n_prompts, dim))
    if regime == "isotropic":
        rewards = (mu @ theta)[:, None] + rng.standard_normal((n_prompts, k))
        threshold = float(np.quantile(rewards, toxic_fraction))
        nuisance_std = 1.0
    else:
        mu -= np.outer(mu @ theta, theta)
        toxic = rng.random((n_prompts, k)) < toxic_fraction
        rewards = (
            DETOX_SEPARATION / 2.0
            - DETOX_SEPARATION * toxic
            + DETOX_PARALLEL_STD * rng.standard_normal((n_prompts, k))
        )
        threshold = DETOX_THRESHOLD
        nuisance_std = DETOX_NUISANCE_STD

    # Policies.
    if base_logit_std > 0:
        log_pi0 = log_softmax(base_logit_std * rng.standard_normal((n_prompts, k)))
    else:
        log_pi0 = np.full((n_prompts, k), -math.log(k))
    log_pis = aligned_log_probs(log_pi0, rewards, beta)

    # Pairs.
    plus, minus, prompt_ids = sample_pair_indices(rng, log_pi0, log_pis, n_pairs, pairs_per_prompt)

    # Evaluation candidates: half from π₀, half from π*, held out from the prompt's pairs when
    # enough candidates are unused.
    eval_idx = np.empty((n_prompts, eval_per_prompt), dtype=np.int64)
    if eval_per_prompt:
        avail = np.ones((n_prompts, k), dtype=bool)
        avail[prompt_ids, plus] = False
        avail[prompt_ids, minus] = False
        avail[avail.sum(axis=1) < eval_per_prompt] = True
        n_base = eval_per_prompt // 2
        if n_base:
            eval_idx[:, :n_base] = gumbel_topk(rng, np.where(avail, log_pi0, -np.inf), n_base)
            avail[np.arange(n_prompts)[:, None], eval_idx[:, :n_base]] = False
        eval_idx[:, n_base:] = gumbel_topk(
            rng, np.where(avail, log_pis, -np.inf), eval_per_prompt - n_base
        )
    eval_pids = np.repeat(np.arange(n_prompts, dtype=np.int64), eval_per_prompt)
    eval_cands = eval_idx.ravel()

    # Features of every candidate that is observed (the θ*-orthogonal part is drawn only for these).
    cand_prompt = np.concatenate([prompt_ids, prompt_ids, eval_pids])
    cand_index = np.concatenate([plus, minus, eval_cands])
    flat = cand_prompt * k + cand_index
    unique, inverse = np.unique(flat, return_inverse=True)
    up, uc = np.divmod(unique, k)
    z = nuisance_std * rng.standard_normal((unique.size, dim))
    z -= np.outer(z @ theta, theta)
    if regime == "isotropic":
        # φ = μ + r-part·θ + orthogonal part, with r-part = reward − θᵀμ: exactly N(μ, I).
        mu_perp = mu - np.outer(mu @ theta, theta)
        feats = mu_perp[up] + np.outer(rewards[up, uc], theta) + z
    else:
        feats = mu[up] + np.outer(rewards[up, uc], theta) + z
    all_feats = feats[inverse]
    chosen = all_feats[:n_pairs]
    rejected = all_feats[n_pairs : 2 * n_pairs]
    eval_features = all_feats[2 * n_pairs :]

    # Kinds and labels from the stored arrays.
    r_chosen = chosen @ theta
    r_rejected = rejected @ theta
    kinds = pair_kinds(r_rejected < threshold, r_chosen < threshold)
    eval_rewards = eval_features @ theta
    eval_labels = eval_rewards >= threshold

    pairs = PreferencePairs(chosen, rejected, kinds, prompt_ids, duplicates="error")
    return PlantedProblem(
        pairs=pairs,
        theta_true=theta,
        eval_features=eval_features,
        eval_labels=eval_labels,
        eval_prompt_ids=eval_pids,
        eval_rewards=eval_rewards,
        toxicity_threshold=threshold,
        beta=beta,
        n_candidates=n_candidates,
        regime=regime,
        seed=seed,
    )
