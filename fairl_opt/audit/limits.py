"""What the data cannot support, checked and said plainly: too few training pairs for the dimension,
separable training data (checked exactly: the reward itself as a witness, else a hard-margin
feasibility solve whose infeasibility carries a Farkas certificate), few prompts, a missing or tiny
held-out set, an uncertified or inaccurate reward. Each finding is a warning ``{code, message}``."""

from __future__ import annotations

import logging

import numpy as np

from fairl_opt.exceptions import InfeasibleError, NumericalRangeError, SolverError

log = logging.getLogger(__name__)

#: n_train below this multiple of d: the reward is weakly determined.
PAIRS_PER_DIM = 10
#: Fewer distinct training prompts than this is "few prompts".
FEW_PROMPTS = 20
#: A held-out set below this many pairs is "tiny".
SMALL_HELDOUT = 50
#: Default cap on n_train·d for the hard-margin separability solve (0 = never solve).
SEPARABILITY_LIMIT = 500_000


#: Above this n·d², the rank comes from the eigenvalues of the d × d Gram matrix instead of an SVD of Δ.
SVD_WORK = 2_000_000_000


def numerical_rank(delta: np.ndarray, svd_work: int = SVD_WORK) -> tuple[int, str]:
    """The rank of ``delta`` and how it was measured: ``numpy.linalg.matrix_rank`` (an SVD) when
    n·d² ≤ ``svd_work``, else the eigenvalues of ΔᵀΔ, a singular value counted when it exceeds
    ``σ_max·max(1e-7, 10·sqrt(d·eps))`` (what float64 resolves through the Gram matrix)."""
    n, d = delta.shape
    if n == 0:
        return 0, "empty"
    if n * d * d <= svd_work:
        return int(np.linalg.matrix_rank(delta)), "svd"
    eig = np.clip(np.linalg.eigvalsh(delta.T @ delta), 0.0, None)
    sigma = np.sqrt(eig)
    tol = sigma.max() * max(1e-7, 10 * np.sqrt(d * np.finfo(np.float64).eps))
    return int((sigma > tol).sum()), "gram eigenvalues"


def identification(n_train: int, dim: int, delta_train: np.ndarray, svd_work: int = SVD_WORK) -> tuple[dict, list]:
    """n_train, d, the rank of the training differences and the verdict: "not identified" (rank < d:
    some direction of θ is not constrained at all), "weakly determined" (n_train < 10·d) or "ok"."""
    rank, how = numerical_rank(delta_train, svd_work)
    record = {"n_train": int(n_train), "dim": int(dim), "rank": rank, "rank_method": how,
              "pairs_per_dim": n_train / dim}
    warnings = []
    if rank < dim:
        record["status"] = "not identified"
        warnings.append({"code": "not_identified", "message": (
            f"{n_train} training pairs for d = {dim} features (difference rows of rank {rank}): the reward is not "
            f"identified, {dim - rank} direction(s) of θ are not constrained by any pair; what fills them is "
            "the regulariser's choice, not the data's")})
    elif n_train < PAIRS_PER_DIM * dim:
        record["status"] = "weakly determined"
        warnings.append({"code": "weakly_determined", "message": (
            f"{n_train} training pairs for d = {dim} features ({n_train / dim:.1f} per dimension, below "
            f"{PAIRS_PER_DIM}): θ is weakly determined; expect it to move a lot with other pairs")})
    else:
        record["status"] = "ok"
    return record, warnings


def _witness(delta: np.ndarray, theta: np.ndarray) -> bool:
    """Whether θ provably separates every row: fl(Δᵢθ) exceeds the rounding bound γ_d·|Δᵢ||θ| (twice)."""
    d = delta.shape[1]
    eps = np.finfo(np.float64).eps
    gamma = d * eps / (1 - d * eps)
    return bool(np.all(delta @ theta > 2 * gamma * (np.abs(delta) @ np.abs(theta))))


def separability(delta: np.ndarray, theta: np.ndarray, limit: int = SEPARABILITY_LIMIT) -> dict:
    """Is there a θ with Δᵢθ > 0 for every training pair?

    ``status`` is "separable" (``how``: the audited reward is a witness, or a certified hard-margin
    solve), "not separable" (a hard-margin solve failed with a verified Farkas certificate:
    ``conflicting_pairs``, the first 50 rows of its support as indices into ``delta``,
    ``n_conflicting`` and ``farkas_radius``: no θ with a smaller norm meets Δᵢθ ≥ 1 on them), "skipped"
    (n_train·d above ``limit``) or "undetermined" (float64 cannot resolve the margin, or no
    certified answer).
    """
    n, d = delta.shape
    record = {"n_train": int(n), "dim": int(d), "limit": int(limit)}
    if _witness(delta, theta):
        record.update(status="separable", how="the audited reward itself separates every training pair "
                                              "(each margin exceeds its float64 rounding bound)")
        return record
    if n * d > limit:
        record.update(status="skipped", how=f"n_train·d = {n * d} exceeds the limit {limit} "
                                            "(--separability-limit)")
        return record
    from fairl_opt.estimators import make_estimator

    log.info("separability: hard-margin solve on %d training pairs, d=%d", n, d)
    try:
        model = make_estimator("mm-qp", margin="hard").fit(delta)
    except InfeasibleError as exc:
        rows = [int(i) for i in exc.rows]
        record.update(status="not separable", how="hard-margin solve: infeasible, Farkas certificate verified",
                      conflicting_pairs=rows[:50], n_conflicting=len(rows), farkas_radius=exc.radius)
        return record
    except NumericalRangeError as exc:
        record.update(status="undetermined", how=f"hard-margin solve: {exc}")
        return record
    except SolverError as exc:
        record.update(status="undetermined", how=f"hard-margin solve gave no certified answer: {exc}")
        return record
    margins = delta @ model.theta_
    record.update(status="separable", how="hard-margin solve: certified (Δᵢθ ≥ 1 for every training pair)",
                  min_margin=float(margins.min()), witness_norm=float(np.linalg.norm(model.theta_)))
    return record


def separability_warnings(record: dict) -> list:
    if record["status"] == "separable":
        return [{"code": "separable", "message": (
            f"the {record['n_train']} training pairs are separable ({record['how']}): a whole cone of rewards "
            "explains them exactly, so 100 % training accuracy says nothing about which one is right; the "
            "method's regulariser picks this one, and only held-out pairs can tell them apart")}]
    if record["status"] == "skipped":
        return [{"code": "separability_unchecked", "message": (
            f"separability of the training pairs was not checked: {record['how']}")}]
    if record["status"] == "undetermined":
        return [{"code": "separability_undetermined", "message": (
            f"separability of the training pairs is undetermined: {record['how']}")}]
    return []


def prompt_diversity(prompt_ids, train_index) -> tuple[dict, list]:
    """Distinct training prompts, pairs per prompt (min, median, max) and the largest prompt's share."""
    if prompt_ids is None:
        return {"n_prompts": None}, [{"code": "no_prompt_ids", "message": (
            "the pairs carry no prompt ids: each pair is taken as its own prompt, and the audit cannot tell "
            "whether they come from many prompts or one")}]
    ids = np.asarray(prompt_ids)[train_index]
    _, counts = np.unique(ids, return_counts=True)
    record = {"n_prompts": int(counts.size), "pairs_per_prompt": {
        "min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())},
        "largest_share": float(counts.max() / ids.size)}
    if counts.size == 1:
        return record, [{"code": "single_prompt", "message": (
            f"all {ids.size} training pairs share one prompt: the reward describes preferences for that prompt "
            "only and says nothing about other prompts")}]
    if counts.size < FEW_PROMPTS:
        return record, [{"code": "few_prompts", "message": (
            f"only {counts.size} distinct training prompts ({ids.size} pairs, up to {counts.max()} per prompt): "
            "the reward may describe these prompts rather than preferences in general")}]
    if record["largest_share"] > 0.5:
        return record, [{"code": "dominant_prompt", "message": (
            f"one prompt holds {record['largest_share']:.0%} of the training pairs: the reward mostly describes it")}]
    return record, []


def heldout(n_test: int, test_summary: dict | None, train_summary: dict) -> tuple[dict, list]:
    """Held-out size and whether the accuracy there is distinguishable from chance (Wilson 95 %)."""
    if not n_test:
        warn = [{"code": "no_heldout", "message": (
            "no held-out pairs (the file has no test_mask): every accuracy here is on the pairs the reward "
            "was fitted on and overstates how it does on new ones")}]
        if train_summary["accuracy"] < 0.6:
            warn.append({"code": "inaccurate", "message": (
                f"training pair accuracy is {train_summary['accuracy']:.3f}: the reward explains few of its own "
                "training pairs")})
        return {"n_test": 0}, warn
    warnings = []
    if n_test < SMALL_HELDOUT:
        lo, hi = test_summary["accuracy_ci95"]
        warnings.append({"code": "small_heldout", "message": (
            f"only {n_test} held-out pairs: the held-out accuracy {test_summary['accuracy']:.3f} is known to "
            f"within a 95 % interval of [{lo:.3f}, {hi:.3f}]")})
    lo, hi = test_summary["accuracy_ci95"]
    if lo <= 0.5:
        warnings.append({"code": "inaccurate", "message": (
            f"held-out pair accuracy {test_summary['accuracy']:.3f} (95 % Wilson interval [{lo:.3f}, {hi:.3f}]) "
            "is not distinguishable from chance (0.5)")})
    return {"n_test": int(n_test)}, warnings


def certificate_warnings(reward) -> list:
    if reward.status != "optimal":
        return [{"code": "uncertified", "message": (
            f"the reward's certificate status is {reward.status!r}, not 'optimal': θ is not certified to solve "
            f"its program ({reward.method})")}]
    return []
