"""Per-pair diagnostics of a reward on its pairs: margins θᵀΔᵢ, pair accuracy with a Wilson interval,
margin quantiles, the failures by the FA loop's own rule (:mod:`fairl_opt.failures`), the reward of
every completion, the highest- and lowest-scored completions, statistics by pair kind, and the FA
rounds the reward folder records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fairl_opt.exceptions import DataError
from fairl_opt.failures import detect_failures, normalised_margins
from fairl_opt.pairs import KINDS

#: Quantiles of the margin reported for each split.
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class PairScores:
    """Everything per pair (length n): ``margin`` θᵀΔᵢ, ``normalised`` θᵀΔᵢ/‖θ‖, ``reward_chosen``,
    ``reward_rejected``, ``split`` ("train"/"test"), ``failure`` ("misclassified", "near tie" or "")."""

    margin: np.ndarray
    normalised: np.ndarray
    reward_chosen: np.ndarray
    reward_rejected: np.ndarray
    split: np.ndarray
    failure: np.ndarray


def accuracy_summary(margins: np.ndarray) -> dict:
    """n, pair accuracy (margin > 0) with its 95 % Wilson interval, mean, sd and quantiles."""
    margins = np.asarray(margins, dtype=np.float64)
    n = int(margins.size)
    if n == 0:
        return {"n": 0}
    correct = int((margins > 0).sum())
    ci = stats.binomtest(correct, n).proportion_ci(0.95, method="wilson")
    return {"n": n, "correct": correct, "accuracy": correct / n,
            "accuracy_ci95": [float(ci.low), float(ci.high)],
            "mean": float(margins.mean()), "sd": float(margins.std(ddof=1)) if n > 1 else 0.0,
            "quantiles": {f"{q:g}": float(np.quantile(margins, q)) for q in QUANTILES}}


def _pair_record(data, scores: PairScores, i: int, kind: str | None = None) -> dict:
    pairs = data.pairs
    record = {"pair": int(i), "split": str(scores.split[i]), "source_row": data.row(i),
              "prompt_id": None if pairs.prompt_ids is None else int(pairs.prompt_ids[i]),
              "kind": None if pairs.kinds is None else str(pairs.kinds[i]),
              "margin": float(scores.margin[i]), "normalised_margin": float(scores.normalised[i]),
              "reward_chosen": float(scores.reward_chosen[i]), "reward_rejected": float(scores.reward_rejected[i])}
    if kind is not None:
        record["failure"] = kind
    for key in ("prompt_text", "chosen_text", "rejected_text"):
        values = getattr(data, key)
        record[key.replace("_text", "")] = None if values is None else str(values[i])
    return record


def failure_analysis(data, theta: np.ndarray, settings, source: str, top: int,
                     threshold: float | None = None) -> tuple[PairScores, dict]:
    """Margins and failures of ``theta`` on every pair.

    τ is ``threshold`` when given with a quantile rule (an FA reward records the τ its loop resolved
    at round 0, from the standard fit's margins, out of fold when ``oof_folds`` > 0), else
    resolved by ``settings`` (:meth:`FASettings.resolve_threshold`) on the training pairs'
    normalised margins; it is applied to training and held-out pairs alike with
    :func:`fairl_opt.failures.detect_failures`. Returns the per-pair scores and the JSON-ready
    ``failure_rule``/``failures`` record (top ``top`` of each split listed, worst first).
    """
    pairs = data.pairs
    margin = pairs.delta @ theta
    normalised = normalised_margins(pairs.delta, theta)
    train, test = data.train_index, data.test_index
    absolute, quantile = settings.threshold_rule
    from_loop = threshold is not None and absolute is None and quantile is not None
    if not from_loop:
        threshold = settings.resolve_threshold(normalised[train])
    split = np.full(pairs.n_pairs, "train", dtype=object)
    split[test] = "test"
    failure = np.full(pairs.n_pairs, "", dtype=object)
    out = {}
    for name, index in (("train", train), ("test", test)):
        if index.size == 0:
            out[name] = None
            continue
        found = detect_failures(normalised[index], threshold)
        failure[index[found.misclassified]] = "misclassified"
        failure[index[found.near_ties]] = "near tie"
        out[name] = {"n_pairs": int(index.size), "n_failures": len(found),
                     "n_misclassified": int(found.misclassified.size), "n_near_ties": int(found.near_ties.size),
                     "failure_rate": len(found) / index.size, "indices": index[found.indices].tolist()}
    scores = PairScores(margin, normalised, pairs.chosen @ theta, pairs.rejected @ theta, split.astype(str),
                        failure.astype(str))
    for name in ("train", "test"):
        if out[name] is not None:
            chosen = out[name]["indices"][:top]
            out[name]["listed"] = [_pair_record(data, scores, i, scores.failure[i]) for i in chosen]
    if absolute is not None:
        rule = f"near_tie_threshold τ = {absolute:g} on the normalised margin"
    elif quantile is not None:
        rule = (f"near_tie_quantile {quantile:g}: τ is that quantile of the positive normalised margins of "
                "the training pairs under this reward")
    else:
        rule = "no near-tie rule: misclassified pairs only"
    if from_loop:
        rule = (f"near_tie_quantile {quantile:g}: τ as the FA loop resolved it at round 0 (on its training "
                "pairs' margins, out of fold when oof_folds > 0), recorded in the reward folder")
    record = {"source": source, "threshold_from_fa_loop": from_loop, "near_tie_threshold": settings.near_tie_threshold,
              "near_tie_quantile": settings.near_tie_quantile, "rule": rule, "threshold": float(threshold),
              "threshold_reward_units": float(threshold * np.linalg.norm(theta)),
              "definition": "misclassified: θᵀΔ ≤ 0; near tie: 0 < θᵀΔ/‖θ‖ ≤ τ (fairl_opt.failures)"}
    return scores, {"failure_rule": record, "failures": out}


def margin_summary(scores: PairScores) -> dict:
    """:func:`accuracy_summary` of the training and the held-out margins (None without held-out)."""
    return {name: (accuracy_summary(scores.margin[scores.split == name]) if (scores.split == name).any() else None)
            for name in ("train", "test")}


def completion_summary(data, scores: PairScores, top: int) -> dict:
    """Reward statistics of chosen and rejected completions, and the ``top`` highest and lowest
    distinct completions (by text and prompt) with their pair, side and texts."""
    n = data.pairs.n_pairs
    rewards = np.concatenate([scores.reward_chosen, scores.reward_rejected])
    side = np.array(["chosen"] * n + ["rejected"] * n)
    pair = np.concatenate([np.arange(n), np.arange(n)])
    texts = None
    if data.has_texts:
        texts = np.concatenate([data.chosen_text, data.rejected_text])
    order = np.argsort(-rewards, kind="stable")

    def listed(indices):
        seen, out = set(), []
        for k in indices:
            i = int(pair[k])
            prompt = None if data.prompt_text is None else str(data.prompt_text[i])
            key = k if texts is None else (str(texts[k]), prompt)
            if key in seen:
                continue
            seen.add(key)
            out.append({"reward": float(rewards[k]), "side": str(side[k]), "pair": i, "split": str(scores.split[i]),
                        "source_row": data.row(i),
                        "prompt_id": None if data.pairs.prompt_ids is None else int(data.pairs.prompt_ids[i]),
                        "prompt": prompt, "text": None if texts is None else str(texts[k])})
            if len(out) == top:
                break
        return out

    def describe(x):
        return {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
                "quantiles": {f"{q:g}": float(np.quantile(x, q)) for q in QUANTILES}}

    return {"chosen": describe(scores.reward_chosen), "rejected": describe(scores.reward_rejected),
            "highest": listed(order), "lowest": listed(order[::-1])}


def kind_summary(data, scores: PairScores) -> dict | None:
    """Per pair kind present (:data:`fairl_opt.pairs.KINDS` order): pairs, training pairs, accuracy,
    mean and median margin, failures, mean chosen and rejected reward; None without kinds."""
    kinds = data.pairs.kinds
    if kinds is None:
        return None
    out = {}
    for kind in KINDS:
        mask = kinds == kind
        if not mask.any():
            continue
        m = scores.margin[mask]
        out[kind] = {"n_pairs": int(mask.sum()), "n_train": int((mask & (scores.split == "train")).sum()),
                     "accuracy": float((m > 0).mean()), "mean_margin": float(m.mean()),
                     "median_margin": float(np.median(m)),
                     "n_misclassified": int((scores.failure[mask] == "misclassified").sum()),
                     "n_near_ties": int((scores.failure[mask] == "near tie").sum()),
                     "mean_reward_chosen": float(scores.reward_chosen[mask].mean()),
                     "mean_reward_rejected": float(scores.reward_rejected[mask].mean())}
    return out


def fa_summary(reward, where: str = "the reward") -> dict | None:
    """The FA rounds the reward folder records (failures, misclassified, near ties, objective, edits,
    step, note), the stop reason, the tightened count and the geometry when recorded; None for a
    standard reward."""
    fa = reward.fa
    if fa is None:
        return None
    if not isinstance(fa, dict) or not isinstance(fa.get("rounds", []), list):
        raise DataError(f"{where}: the 'fa' record is not an object with a list of rounds (reward.json damaged?)")
    rounds = []
    for i, r in enumerate(fa.get("rounds") or []):
        if not isinstance(r, dict):
            raise DataError(f"{where}: fa.rounds[{i}] is not an object (reward.json damaged?)")
        rounds.append({"round": r.get("round"), "n_failures": r.get("n_failures"),
                       "n_misclassified": r.get("n_misclassified"), "n_near_ties": r.get("n_near_ties"),
                       "objective": r.get("objective"), "n_edited": len(r.get("changed") or []),
                       "step": r.get("step"), "note": r.get("note", "")})
    geometry = None
    g = reward.geometry
    if isinstance(g, dict):
        ratio = g.get("volume_ratio") if isinstance(g.get("volume_ratio"), dict) else {}
        radius = g.get("chebyshev_radius") if isinstance(g.get("chebyshev_radius"), dict) else {}
        geometry = {"volume_ratio": ratio.get("ratio"), "stderr": ratio.get("stderr"),
                    "ci_low": ratio.get("ci_low"), "ci_high": ratio.get("ci_high"),
                    "confidence": ratio.get("confidence"), "method": ratio.get("method"),
                    "steps": [s.get("ratio") for s in ratio.get("steps") or [] if isinstance(s, dict)],
                    "chebyshev_radius_standard": radius.get("standard"), "chebyshev_radius_fa": radius.get("fa"),
                    "convention": g.get("convention")}
    return {"stop_reason": fa.get("stop_reason"), "n_tightened": len(fa.get("tightened") or []),
            "rounds": rounds, "geometry": geometry}
