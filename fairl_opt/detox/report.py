"""Write ``report.md``, ``summary.json`` and PNG figures of a detox experiment summary."""

from __future__ import annotations

import json
from pathlib import Path

from fairl_opt._json import jsonable

#: metric → (label, better direction: +1 higher is better, −1 lower is better).
COLUMNS = {
    "heldout_pair_accuracy": ("pair acc", +1),
    "accuracy": ("accuracy", +1),
    "f1": ("F1", +1),
    "roc_auc": ("ROC-AUC", +1),
    "starc": ("STARC↓", -1),
    "bok_toxic_rate": ("BoK toxic↓", -1),
    "bok_mean_r_star": ("BoK mean r*", +1),
}


def _cell(stat: dict, digits: int = 3) -> str:
    if stat is None or stat.get("mean") is None:
        return "—"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def verdict(diff: dict, sign: int) -> str:
    """'better', 'worse' or 'no clear difference': better/worse only when the mean paired difference
    points that way by more than one standard deviation over splits (and by more than 1e-6)."""
    mean, sd = diff.get("mean"), diff.get("sd")
    if mean is None:
        return "n/a"
    if abs(mean) <= max(sd or 0.0, 1e-6):
        return "no clear difference"
    return "better" if sign * mean > 0 else "worse"


def main_table(summary: dict) -> str:
    cols = list(COLUMNS)
    lines = ["| method | " + " | ".join(COLUMNS[c][0] for c in cols) + " | fit s | FA rounds |",
             "|---|" + "---|" * (len(cols) + 2)]
    for method in summary["methods"]:
        row = summary["table"][method]
        cells = [_cell(row[c]) for c in cols] + [_cell(row["seconds"], 1), _cell(row["rounds"], 1)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def difference_table(summary: dict) -> tuple[str, list[str]]:
    cols = ["heldout_pair_accuracy", "roc_auc", "starc", "bok_toxic_rate"]
    lines = ["| FA method | versus | " + " | ".join(f"Δ {COLUMNS[c][0]}" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    plain = []
    for method, entry in summary["fa_minus_standard"].items():
        diffs = entry["difference"]
        cells = []
        verdicts = {}
        for c in cols:
            v = verdict(diffs[c], COLUMNS[c][1])
            verdicts[c] = v
            cells.append(f"{_cell(diffs[c])} ({v})")
        lines.append(f"| {method} | {entry['versus']} | " + " | ".join(cells) + " |")
        better = [COLUMNS[c][0] for c, v in verdicts.items() if v == "better"]
        worse = [COLUMNS[c][0] for c, v in verdicts.items() if v == "worse"]
        if all(abs(diffs[c]["mean"] or 0.0) < 1e-6 and (diffs[c]["sd"] or 0.0) < 1e-6 for c in cols):
            at_bound = summary["table"][method].get("tightened_at_bound", {}).get("mean")
            measured = (f" (measured: {at_bound:.0%} of its tightened pairs had α = C in the standard fit)"
                        if at_bound is not None else "")
            text = (f"**{method} does not beat {entry['versus']}: it returns the same reward on every split** "
                    "(to solver tolerance) — as proofs/T10 predicts when every failure sits at the soft margin's "
                    f"dual bound C{measured}, where raising a margin cannot move θ; the slack ×2 variant raises "
                    "their price instead.")
        elif not better:
            text = f"**{method} does not beat {entry['versus']}** on any of these metrics"
            text += f"; it is worse on {', '.join(worse)}." if worse else " (differences within one sd over splits)."
        else:
            text = f"{method} beats {entry['versus']} on {', '.join(better)}"
            text += f" and is worse on {', '.join(worse)}." if worse else "."
        plain.append(text)
    return "\n".join(lines), plain


def _figures(summary: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    abl = summary["ablation"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in abl["methods"]:
        xs = [float(f) for f in abl["table"][method]]
        for ax, metric, label in ((axes[0], "roc_auc", "held-out ROC-AUC"), (axes[1], "starc", "STARC to r* (lower is better)")):
            ys = [abl["table"][method][f][metric]["mean"] for f in abl["table"][method]]
            es = [abl["table"][method][f][metric]["sd"] for f in abl["table"][method]]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method,
                        linestyle="--" if method.startswith("fa-") else "-")
            ax.set_xlabel("fraction of T→NT pairs in training")
            ax.set_ylabel(label)
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Ablation: training sets of fixed size, mean ± sd over {summary['n_splits']} splits")
    fig.tight_layout()
    fig.savefig(out / "ablation_tnt_fraction.png", dpi=110)
    plt.close(fig)
    names.append("ablation_tnt_fraction.png")

    fig, ax = plt.subplots(figsize=(9, 4))
    labels, means, sds, colors = [], [], [], []
    for name, stat in summary["references"].items():
        labels.append(name)
        means.append(stat["bok_toxic_rate"]["mean"])
        sds.append(stat["bok_toxic_rate"]["sd"])
        colors.append("0.5")
    for method in summary["methods"]:
        stat = summary["table"][method]["bok_toxic_rate"]
        labels.append(f"BoK {method}")
        means.append(stat["mean"])
        sds.append(stat["sd"])
        colors.append("tab:orange" if method.startswith("fa-") else "tab:blue")
    ax.bar(range(len(labels)), means, yerr=sds, color=colors, capsize=3)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("toxic rate (held-out prompts)")
    ax.set_title(f"Re-alignment: best-of-{summary['dataset']['K']} with each recovered reward")
    fig.tight_layout()
    fig.savefig(out / "realignment_toxicity.png", dpi=110)
    plt.close(fig)
    names.append("realignment_toxicity.png")
    return names


def write_report(summary: dict, out) -> Path:
    """Write the three artefacts to ``out`` (created); returns the report path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    figures = _figures(summary, out)
    ds = summary["dataset"]
    rates = ds["rates"]
    size0 = summary["sizes"][0]
    diff_table, plain = difference_table(summary)
    lines = [
        "# Detox experiment: recovering r* from (aligned ≻ base) completion pairs",
        "",
        "Written by `fairl detox run` (`make demo`) from the shipped dataset; every number below is "
        "computed in that run. Settings are fixed in `fairl_opt/detox/experiment.py` and were not tuned on "
        "any test split." + (" **Quick mode** (fewer splits and methods)." if summary["quick"] else ""),
        "",
        "## Data",
        "",
        f"- {summary['n_prompts_used']} prompts ({', '.join(f'{k}: {v}' for k, v in (ds['families'] or {}).items())}), "
        f"{ds['K'] + 1} completions each: sample 0 from the base policy π₀ = {ds['generator']['name']} "
        f"(raw continuation, temperature 1, top-p 1, {ds['generator']['sampling']['max_new_tokens']} new tokens), "
        f"K = {ds['K']} candidates, aligned = SIR draw ∝ exp(r*/β), β = {ds['beta']}.",
        f"- Ground truth r*(y) = logit(1 − p_offensive(y)) from `{ds['ground_truth']['scorer']}`; toxic when "
        f"p > {ds['ground_truth']['toxic_threshold']}. Toxicity rates over all prompts: base "
        f"{rates['base_toxic']:.3f}, candidates {rates['candidates_toxic']:.3f}, aligned {rates['aligned_toxic']:.3f}, "
        f"best-of-K by r* {rates['best_of_K_r_star_toxic']:.3f}.",
        f"- Features: {ds['feature_model']['name']} mean-pooled last hidden state of the completion "
        f"(d = {ds['feature_model']['dim']}), standardised on each split's training prompts.",
        f"- Generation cost: {ds['cost']['generate_seconds']:.0f} s sampling + {ds['cost']['embed_seconds']:.0f} s "
        f"embedding with {ds['cost']['workers']} worker process(es) on {ds['cost']['machine']}.",
        f"- {summary['n_splits']} random prompt-level splits (stored in the dataset); the run's random draws "
        f"(validation folds, FA folds, hit-and-run, ablation subsets) use seed {summary.get('seed', 0)}, per-split "
        f"seeds {summary['seeds']}; split 0: "
        f"{size0['train_pairs']} training pairs {size0['train_kinds']}, {size0['test_pairs']} test pairs, "
        f"{size0['test_prompts']} test prompts ({size0['dropped_identical_or_duplicate']} pairs with identical "
        "texts or duplicate features dropped).",
        "- Programs: soft-margin C (MM-QP, MM-LP) and MaxEnt λ chosen per split from a grid by 3-fold "
        "prompt-level validation on the training prompts (criterion: validation ROC-AUC); FA variants use "
        "their standard method's value. Chosen: "
        + "; ".join(f"split {x['split']}: " + ", ".join(f"{m} {p} = {v:g}" for m, d in x["chosen"].items()
                                                          for p, v in d.items())
                    for x in summary.get("selection", []))
        + ". FA: "
        f"failures = misranked or lowest-{summary['fa_options']['near_tie_quantile']:.0%} normalised training "
        f"margins, ≤ {summary['fa_options']['max_rounds']} rounds, margin step {summary['fa_options']['margin_step']}, "
        f"up-weight {summary['fa_options']['upweight']}; every fit certified (relative gap ≤ 1e-6).",
        "",
        "## Main table (held-out prompts, mean ± sd over splits)",
        "",
        "pair acc: held-out (aligned ≻ base) pairs ranked right; accuracy/F1/ROC-AUC: the reward as a "
        "toxicity detector on every held-out completion (toxic = positive class, predicted when the reward "
        "is below a threshold fitted for F1 on training prompts; F1 of the toxic class; predicting 'never "
        "toxic' would score accuracy 1 − toxic rate and F1 0); STARC: "
        "distance to r* on held-out completions (0 = same reward up to shaping and scale); BoK: best-of-K "
        "re-alignment with the recovered reward on held-out prompts — toxicity rate and mean r* of the picks.",
        "",
        main_table(summary),
        "",
        "Reference policies on the same held-out prompts:",
        "",
        "| policy | toxic rate↓ | mean r* |",
        "|---|---|---|",
    ]
    for name, stat in summary["references"].items():
        lines.append(f"| {name} | {_cell(stat['bok_toxic_rate'])} | {_cell(stat['bok_mean_r_star'])} |")
    lines += [
        "",
        f"![re-alignment]({figures[1]})",
        "",
        "## Does failure-aware training help? (paired differences FA − standard, same split)",
        "",
        "A difference counts as better or worse only when its mean exceeds its sd over splits.",
        "",
        diff_table,
        "",
    ]
    lines += [f"- {p}" for p in plain]
    geo = summary.get("geometry")
    if geo:
        lines += [
            "",
            "## Ambiguity of the feasible set (max-margin)",
            "",
            f"In the top-{geo['dim']} principal components of the training completions, on the training pairs "
            "the soft standard reward ranks correctly (a separable set), the standard hard-margin feasible set "
            "F_std and the FA set F_FA after the FA rounds (convention of `fairl_opt.geometry`: ‖θ‖ ≤ 1, "
            "Δθ ≥ ρm).",
            "",
            "| quantity | mean ± sd over splits |",
            "|---|---|",
            f"| pairs kept | {_cell(geo['pairs_kept'], 0)} |",
            f"| volume ratio vol(F_FA)/vol(F_std) | {_cell(geo['volume_ratio'], 4)} |",
            f"| Chebyshev radius F_std | {_cell(geo['chebyshev_standard'], 4)} |",
            f"| Chebyshev radius F_FA | {_cell(geo['chebyshev_fa'], 4)} |",
            f"| mean reward-interval width F_std (200 held-out completions) | {_cell(geo['interval_width_standard'])} |",
            f"| mean reward-interval width F_FA | {_cell(geo['interval_width_fa'])} |",
            f"| seconds per split | {_cell(geo['seconds'], 1)} |",
        ]
    abl = summary["ablation"]
    lines += ["", "## Ablation: fraction of T→NT pairs in training", "",
              f"Training sets of {abl['rows'][0]['size']} pairs (split 0) drawn from each split's training pairs with a "
              "fixed fraction of T→NT pairs; held-out ROC-AUC and STARC, mean ± sd over splits.", "",
              "| method | " + " | ".join(f"{f} ROC-AUC" for f in abl["fractions"]) + " | "
              + " | ".join(f"{f} STARC" for f in abl["fractions"]) + " |",
              "|---|" + "---|" * (2 * len(abl["fractions"]))]
    for method in abl["methods"]:
        t = abl["table"][method]
        lines.append(f"| {method} | " + " | ".join(_cell(t[str(f)]["roc_auc"]) for f in abl["fractions"]) + " | "
                     + " | ".join(_cell(t[str(f)]["starc"]) for f in abl["fractions"]) + " |")
    lines += ["", f"![ablation]({figures[0]})", "", ablation_headline(summary), "",
              f"Run time: {summary.get('seconds', 0):.0f} s with {summary.get('workers', 1)} worker process(es).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def ablation_headline(summary: dict) -> str:
    """One sentence: how ROC-AUC moves from the smallest to the largest T→NT fraction, per method."""
    abl = summary["ablation"]
    lo, hi = str(abl["fractions"][0]), str(abl["fractions"][-1])
    parts = []
    for method in abl["methods"]:
        t = abl["table"][method]
        parts.append(f"{method} {t[lo]['roc_auc']['mean']:.3f} → {t[hi]['roc_auc']['mean']:.3f}")
    return (f"Headline: held-out ROC-AUC from {lo} to {hi} T→NT fraction: " + "; ".join(parts) + ".")
