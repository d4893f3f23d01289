"""The audit's PNG figures (matplotlib, Agg backend, fixed size and dpi, no timestamp: the same inputs
give the same bytes), each written atomically: margins (training vs held-out), completion rewards
(chosen vs rejected), FA failures per round, and the top phrase effects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fairl_opt._io import _atomic

DPI = 100
#: figure name → file name.
FILES = {"margins": "margins.png", "rewards": "rewards.png", "fa_rounds": "fa_rounds.png",
         "phrases": "phrases.png"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    return _atomic(path, lambda fh: fh.write(data))


def _bins(*arrays, n: int = 40) -> np.ndarray:
    values = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays if len(a)])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def margins_figure(path, scores, threshold_units: float) -> Path:
    """Histogram of θᵀΔ for training and held-out pairs (densities), with 0 and the near-tie bound."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    train = scores.margin[scores.split == "train"]
    test = scores.margin[scores.split == "test"]
    bins = _bins(train, test)
    ax.hist(train, bins=bins, density=True, alpha=0.6, label=f"training ({train.size})", color="tab:blue")
    if test.size:
        ax.hist(test, bins=bins, density=True, alpha=0.6, label=f"held-out ({test.size})", color="tab:orange")
    ax.axvline(0.0, color="black", lw=1, label="0: misclassified at or below")
    if threshold_units > 0:
        ax.axvline(threshold_units, color="tab:red", lw=1, ls="--", label=f"near-tie bound τ‖θ‖ = {threshold_units:.3g}")
    ax.set_xlabel("margin θᵀΔ = r(chosen) − r(rejected)")
    ax.set_ylabel("density")
    ax.set_title("Pair margins")
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def rewards_figure(path, scores) -> Path:
    """Histogram of completion rewards, chosen vs rejected (every pair)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = _bins(scores.reward_chosen, scores.reward_rejected)
    ax.hist(scores.reward_chosen, bins=bins, alpha=0.6, label=f"chosen ({scores.reward_chosen.size})", color="tab:green")
    ax.hist(scores.reward_rejected, bins=bins, alpha=0.6, label=f"rejected ({scores.reward_rejected.size})",
            color="tab:purple")
    ax.set_xlabel("reward r(y) = θᵀφ(y)")
    ax.set_ylabel("completions")
    ax.set_title("Completion rewards")
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def fa_rounds_figure(path, fa: dict) -> Path:
    """Misclassified and near-tie failures per FA round (stacked bars)."""
    plt = _pyplot()
    rounds = fa["rounds"]
    x = np.array([r["round"] for r in rounds])
    mis = np.array([r["n_misclassified"] or 0 for r in rounds])
    tie = np.array([r["n_near_ties"] or 0 for r in rounds])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(x, mis, color="tab:red", label="misclassified")
    ax.bar(x, tie, bottom=mis, color="tab:orange", label="near ties")
    ax.set_xticks(x)
    ax.set_xlabel("FA round (0 = standard solve)")
    ax.set_ylabel("failures (training, as the FA loop mined them)")
    ax.set_title(f"FA failures per round — stop: {fa.get('stop_reason')}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def phrases_figure(path, phrases: dict) -> Path:
    """Horizontal bars of the listed n-grams' effect sizes (positive and negative)."""
    plt = _pyplot()
    rows = list(phrases["negative"]) + list(reversed(phrases["positive"]))  # bottom to top
    names = [r["ngram"] for r in rows]
    effects = np.array([r["effect_size"] for r in rows])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(rows) + 1)))
    ax.barh(np.arange(len(rows)), effects, color=np.where(effects > 0, "tab:green", "tab:red"))
    ax.set_yticks(np.arange(len(rows)), names, fontsize=8)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_xlabel("effect size (Cohen's d) of presence on the reward")
    ax.set_title(f"Phrases the reward pays for (q ≤ {phrases['fdr']:g}): associations, not causes", fontsize=9)
    return _save(fig, Path(path))
