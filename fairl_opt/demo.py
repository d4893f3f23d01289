"""The main job on default data: standard vs failure-aware, for each program, on planted problems.

The data are planted problems from :func:`fairl_opt.simulate.simulate`, where the true reward is
known, in two regimes (the real detox dataset in ``data/detox`` has its own experiment, ``fairl detox
run``, :mod:`fairl_opt.detox.experiment`):

* ``isotropic`` — Bradley–Terry-like pairs over isotropic Gaussian features;
* ``detox`` — a minority of informative T→NT pairs among NT→NT pairs whose Δ is mostly nuisance.

Each method is fitted on a prompt-level training split and judged on held-out prompts: pairwise
accuracy on held-out pairs, ROC-AUC of the held-out labelled completions scored by the reward, STARC
distance to the true reward on those completions, and the number of FA rounds. Hyper-parameters are
fixed in :data:`DEFAULT_OPTIONS` and :data:`DEFAULT_FA_SETTINGS` (never tuned on the test split).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fairl_opt.estimators import get_method, make_estimator
from fairl_opt.fa import FASettings
from fairl_opt.metrics import classification_metrics, fit_threshold, pairwise_accuracy, starc_distance
from fairl_opt.simulate import simulate

#: The methods of :data:`fairl_opt.estimators.METHODS`, in the order of the table.
METHODS = ("mm-qp", "fa-mm-qp", "mm-lp", "fa-mm-lp", "maxent", "fa-maxent")

#: Fixed settings of the demo (soft margins: the planted pairs are not always separable).
DEFAULT_OPTIONS = dict(margin="soft", C=1.0, reg=1.0)
#: FA settings of the demo (the problem's seed replaces ``seed``).
DEFAULT_FA_SETTINGS = FASettings(near_tie_quantile=0.1, oof_folds=5, max_rounds=5, margin_step=0.5, upweight=2.0)


@dataclass
class DemoRow:
    regime: str
    method: str
    seed: int
    heldout_pair_accuracy: float
    roc_auc: float
    accuracy: float
    f1: float
    starc: float
    cosine: float
    rounds: int
    seconds: float


def evaluate(theta, problem, train_idx, test_idx) -> dict:
    """Held-out metrics of reward θ on a planted problem split by prompt."""
    pairs = problem.pairs
    test_prompts = np.unique(pairs.prompt_ids[test_idx])
    train_prompts = np.unique(pairs.prompt_ids[train_idx])
    eval_test = np.isin(problem.eval_prompt_ids, test_prompts)
    eval_train = np.isin(problem.eval_prompt_ids, train_prompts)
    rewards = problem.eval_features @ theta
    threshold = fit_threshold(rewards[eval_train], problem.eval_labels[eval_train])
    cls = classification_metrics(rewards[eval_test], problem.eval_labels[eval_test], threshold)
    starc = starc_distance(rewards[eval_test], problem.eval_rewards[eval_test], problem.eval_prompt_ids[eval_test])
    norm = np.linalg.norm(theta) * np.linalg.norm(problem.theta_true)
    return {
        "heldout_pair_accuracy": pairwise_accuracy(theta, pairs.delta[test_idx]),
        "roc_auc": cls["roc_auc"],
        "accuracy": cls["accuracy"],
        "f1": cls["f1"],
        "starc": starc,
        "cosine": float(theta @ problem.theta_true / norm) if norm > 0 else 0.0,
    }


def run_demo(
    regimes=("isotropic", "detox"),
    seeds=(0, 1, 2),
    n_pairs: int = 400,
    dim: int = 20,
    methods=METHODS,
    progress=None,
) -> list[DemoRow]:
    """Fit every method on every (regime, seed) problem and return one row each."""
    rows = []
    for regime in regimes:
        for seed in seeds:
            problem = simulate(n_pairs=n_pairs, dim=dim, regime=regime, seed=seed)
            train_idx, test_idx = problem.pairs.train_test_split(test_fraction=0.3, seed=seed)
            train = problem.pairs.subset(train_idx)
            for method in methods:
                failure_aware = get_method(method).failure_aware
                settings = DEFAULT_FA_SETTINGS.replace(seed=seed) if failure_aware else None
                model = make_estimator(method, **DEFAULT_OPTIONS, settings=settings)
                start = time.perf_counter()
                model.fit(train)
                seconds = time.perf_counter() - start
                metrics = evaluate(model.theta_, problem, train_idx, test_idx)
                rounds = len(model.history_) - 1 if failure_aware else 0
                rows.append(DemoRow(regime, method, seed, rounds=rounds, seconds=seconds, **metrics))
                if progress:
                    progress(f"{regime} seed {seed} {method}: auc {metrics['roc_auc']:.3f} ({seconds:.2f}s)")
    return rows


def format_table(rows: list[DemoRow]) -> str:
    """Mean ± sd over seeds per (regime, method), and the FA − standard difference."""
    columns = [
        ("heldout_pair_accuracy", "pair acc"),
        ("roc_auc", "ROC-AUC"),
        ("starc", "STARC↓"),
        ("cosine", "cos θ*"),
        ("rounds", "rounds"),
    ]
    lines = []
    header = f"{'regime':<10} {'method':<10} " + " ".join(f"{label:>15}" for _, label in columns)
    lines.append(header)
    lines.append("-" * len(header))
    keys = []
    for row in rows:
        if (row.regime, row.method) not in keys:
            keys.append((row.regime, row.method))
    for regime, method in keys:
        group = [r for r in rows if r.regime == regime and r.method == method]
        cells = []
        for attr, _ in columns:
            values = np.array([getattr(r, attr) for r in group], dtype=float)
            cells.append(f"{values.mean():>8.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:<5.3f}")
        lines.append(f"{regime:<10} {method:<10} " + " ".join(f"{c:>15}" for c in cells))
    lines.append("")
    lines.append("FA − standard (mean over seeds; + is better except STARC, where − is better):")
    for regime, method in keys:
        base = get_method(method).program
        if base == method:
            continue
        fa = [r for r in rows if r.regime == regime and r.method == method]
        std = [r for r in rows if r.regime == regime and r.method == base]
        if not std:
            continue
        diffs = []
        for attr, label in columns[:4]:
            d = np.mean([getattr(a, attr) for a in fa]) - np.mean([getattr(b, attr) for b in std])
            diffs.append(f"{label} {d:+.3f}")
        lines.append(f"  {regime:<10} {method:<10} " + ", ".join(diffs))
    return "\n".join(lines)
