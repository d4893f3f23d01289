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
    "roc_auc_challenge": ("ROC-AUC challenge", +1),
    "roc_auc_other": ("ROC-AUC other", +1),
    "starc_implicit": ("STARC to implicit↓", -1),
}
#: Columns of the main table (the others are in the "where FA helps" section).
MAIN = ("heldout_pair_accuracy", "accuracy", "f1", "roc_auc", "starc", "starc_implicit", "bok_toxic_rate",
        "bok_mean_r_star")


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
    cols = [c for c in MAIN if any(summary["table"][m][c]["n"] for m in summary["methods"])]
    lines = ["| method | " + " | ".join(COLUMNS[c][0] for c in cols) + " | fit s | FA rounds |",
             "|---|" + "---|" * (len(cols) + 2)]
    for method in summary["methods"]:
        row = summary["table"][method]
        cells = [_cell(row[c]) for c in cols] + [_cell(row["seconds"], 1), _cell(row["rounds"], 1)]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def difference_table(summary: dict) -> tuple[str, list[str]]:
    cols = [c for c in ("heldout_pair_accuracy", "roc_auc", "starc", "starc_implicit", "bok_toxic_rate")
            if any(e["difference"][c]["n"] for e in summary["fa_minus_standard"].values())]
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


def _figures(summary: dict, out: Path, tag: str = "") -> list[str]:
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
    fig.savefig(out / f"ablation_tnt_fraction{tag}.png", dpi=110)
    plt.close(fig)
    names.append(f"ablation_tnt_fraction{tag}.png")

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
    fig.savefig(out / f"realignment_toxicity{tag}.png", dpi=110)
    plt.close(fig)
    names.append(f"realignment_toxicity{tag}.png")
    return names


POLICY_TITLES = {"sir": "the SIR optimum (K candidates resampled ∝ exp(r*/β): the exact KL-regularised optimum)"}


def _view(summary: dict, policy: str) -> dict:
    """The summary as one policy's report sees it: the shared keys plus that policy's part."""
    return {**summary, **summary["by_policy"][policy]}


def _data_lines(summary: dict) -> list[str]:
    ds = summary["dataset"]
    rates = ds["rates"]
    fams = ds["families"] or {}
    by_family = rates.get("base_toxic_by_family", {})
    lines = [
        f"- {summary['n_prompts_used']} prompts ({', '.join(f'{k}: {v}' for k, v in fams.items())}), "
        f"{ds['K'] + 1} completions each: sample 0 from the base policy π₀ = {ds['generator']['name']} "
        f"(raw continuation, temperature 1, top-p 1, {ds['generator']['sampling']['max_new_tokens']} new tokens), "
        f"K = {ds['K']} candidates, SIR aligned = one candidate drawn ∝ exp(r*/β), β = {ds['beta']}.",
        f"- Ground truth r*(y) = logit(1 − p_offensive(y)) from `{ds['ground_truth']['scorer']}`; toxic when "
        f"p > {ds['ground_truth']['toxic_threshold']}. Toxicity rates over all prompts: base "
        f"{rates['base_toxic']:.3f}" + (" (" + ", ".join(f"{k} {v:.3f}" for k, v in by_family.items()) + ")"
                                         if by_family else "")
        + f", candidates {rates['candidates_toxic']:.3f}, SIR aligned {rates['aligned_toxic']:.3f}, "
        f"best-of-K by r* {rates['best_of_K_r_star_toxic']:.3f}.",
    ]
    for name, pol in summary.get("policies", {}).items():
        imp = pol.get("implicit_reward")
        model = pol["model"]
        lines.append(
            f"- Trained aligned policy `{name}`: {model['name']} ({model.get('peft_type') or 'model'} on "
            f"{(model.get('base') or {}).get('name', '—')}), {pol['samples']} sample(s) per prompt with the base "
            f"completions' sampling settings and seeds; toxic {pol['rates']['toxic']:.4f} ("
            + ", ".join(f"{k} {v:.4f}" for k, v in pol["rates"]["toxic_by_family"].items()) + ")"
            + (f"; its implicit reward β·log π_θ/π_ref (β = {imp['beta']:g}) is scored on {imp['computed_on']}"
               if imp else "") + ".")
    lines += [
        f"- Features: {ds['feature_model']['name']} mean-pooled last hidden state of the completion "
        f"(d = {ds['feature_model']['dim']}), standardised on each split's training prompts (the same for "
        "every policy; the held-out completions judged are the same too).",
        f"- Generation cost: {ds['cost']['generate_seconds']:.0f} s sampling + {ds['cost']['embed_seconds']:.0f} s "
        f"embedding with {ds['cost']['workers']} worker process(es) on {ds['cost']['machine']}"
        + "".join(f"; policy {n}: {p['cost']['generate_seconds']:.0f} s sampling, {p['cost']['embed_seconds']:.0f} s "
                  f"embedding, {p['cost']['implicit_seconds']:.0f} s implicit reward"
                  for n, p in summary.get("policies", {}).items()) + ".",
        f"- {summary['n_splits']} random prompt-level splits (stored in the dataset); the run's random draws "
        f"(validation folds, FA folds, hit-and-run, ablation subsets) use seed {summary.get('seed', 0)}, per-split "
        f"seeds {summary['seeds']}, the same for every policy (paired comparisons).",
        "- Programs: soft-margin C (MM-QP, MM-LP) and MaxEnt λ chosen per split and policy from a grid by 3-fold "
        "prompt-level validation on the training prompts (criterion: validation ROC-AUC); FA variants use "
        "their standard method's value. FA: "
        f"failures = misranked or lowest-{summary['fa_options']['near_tie_quantile']:.0%} normalised training "
        f"margins, ≤ {summary['fa_options']['max_rounds']} rounds, margin step {summary['fa_options']['margin_step']}, "
        f"up-weight {summary['fa_options']['upweight']}; every fit certified (relative gap ≤ 1e-6).",
    ]
    return lines


def _policy_section(view: dict, policy: str, figures: list[str]) -> list[str]:
    size0 = view["sizes"][0]
    diff_table, plain = difference_table(view)
    title = POLICY_TITLES.get(policy, f"the trained model `{policy}` (its own samples ≻ base)")
    lines = [
        f"## Aligned policy `{policy}`: {title}", "",
        f"Split 0: {size0['train_pairs']} training pairs {size0['train_kinds']}, {size0['test_pairs']} test pairs, "
        f"{size0['test_prompts']} test prompts ({size0['dropped_identical_or_duplicate']} pairs with identical "
        "texts or duplicate features dropped). Regularisation chosen: "
        + "; ".join(f"split {x['split']}: " + ", ".join(f"{m} {p} = {v:g}" for m, d in x["chosen"].items()
                                                          for p, v in d.items())
                    for x in view.get("selection", [])) + ".", "",
        "### Main table (held-out prompts, mean ± sd over splits)", "",
        main_table(view), "", "Reference policies on the same held-out prompts:", "",
        "| policy | toxic rate↓ | mean r* |", "|---|---|---|",
    ]
    for name, stat in view["references"].items():
        lines.append(f"| {name} | {_cell(stat['bok_toxic_rate'])} | {_cell(stat['bok_mean_r_star'])} |")
    imp = view.get("implicit_reference")
    if imp:
        lines += ["", f"The trained model `{imp['policy']}`'s implicit reward vs r* on the same completions: STARC "
                      f"{_cell(imp['starc_r_star_vs_implicit'])} ({imp['completions_per_split']} held-out completions "
                      "per split: base, SIR-aligned and its own sample of each test prompt)."]
    lines += ["", f"![re-alignment]({figures[1]})", "",
              "### FA − standard, paired on the same split", "",
              "A difference counts as better or worse only when its mean exceeds its sd over splits.", "",
              diff_table, ""]
    lines += [f"- {p}" for p in plain]
    geo = view.get("geometry")
    if geo:
        lines += [
            "", "### Ambiguity of the feasible set (max-margin)", "",
            f"In the top-{geo['dim']} principal components of the training completions, on the training pairs "
            "the soft standard reward ranks correctly (a separable set), the standard hard-margin feasible set "
            "F_std and the FA set F_FA after the FA rounds (convention of `fairl_opt.geometry`: ‖θ‖ ≤ 1, "
            "Δθ ≥ ρm).", "",
            "| quantity | mean ± sd over splits |", "|---|---|",
            f"| pairs kept | {_cell(geo['pairs_kept'], 0)} |",
            f"| volume ratio vol(F_FA)/vol(F_std) | {_cell(geo['volume_ratio'], 4)} |",
            f"| Chebyshev radius F_std | {_cell(geo['chebyshev_standard'], 4)} |",
            f"| Chebyshev radius F_FA | {_cell(geo['chebyshev_fa'], 4)} |",
            f"| mean reward-interval width F_std (200 held-out completions) | {_cell(geo['interval_width_standard'])} |",
            f"| mean reward-interval width F_FA | {_cell(geo['interval_width_fa'])} |",
            f"| seconds per split | {_cell(geo['seconds'], 1)} |",
        ]
    abl = view["ablation"]
    lines += ["", "### Ablation: fraction of T→NT pairs in training", "",
              f"Training sets of {abl['rows'][0]['size']} pairs (split 0) drawn from each split's training pairs with a "
              "fixed fraction of T→NT pairs; held-out ROC-AUC and STARC to r*, mean ± sd over splits.", "",
              "| method | " + " | ".join(f"{f} ROC-AUC" for f in abl["fractions"]) + " | "
              + " | ".join(f"{f} STARC" for f in abl["fractions"]) + " |",
              "|---|" + "---|" * (2 * len(abl["fractions"]))]
    for method in abl["methods"]:
        t = abl["table"][method]
        lines.append(f"| {method} | " + " | ".join(_cell(t[str(f)]["roc_auc"]) for f in abl["fractions"]) + " | "
                     + " | ".join(_cell(t[str(f)]["starc"]) for f in abl["fractions"]) + " |")
    lines += ["", f"![ablation]({figures[0]})", "", ablation_headline(view), ""]
    return lines


#: (FA method, its standard) pairs of the "where FA helps" section.
HELPS = ("fa-maxent", "fa-maxent (out-of-fold)", "fa-maxent (band rule)", "fa-maxent (posterior rule)",
         "fa-mm-qp (slack ×2)", "fa-mm-lp (slack ×2)", "fa-mm-qp")


def helps_section(summary: dict) -> list[str]:
    """Where FA helps and where it hurts: paired FA − standard differences over splits, by aligned
    policy, by prompt family (challenge vs the others), against r* and the implicit reward, and along
    the T→NT-fraction ablation; every cell mean ± sd over splits with its verdict."""
    cols = ("roc_auc", "roc_auc_challenge", "roc_auc_other", "starc", "starc_implicit", "bok_toxic_rate")
    lines = ["## Where FA helps and where it hurts", "",
             "Paired differences FA − standard on the same split (mean ± sd over splits; better / worse only when "
             "the mean exceeds one sd). Rows: aligned policy × FA method; columns: held-out ROC-AUC on all, on "
             "challenge-family and on the other prompts' completions, STARC to r* and to the trained model's "
             "implicit reward, best-of-K toxicity.", "",
             "| policy | FA method | " + " | ".join(f"Δ {COLUMNS[c][0]}" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    counts = {"better": 0, "worse": 0, "no clear difference": 0}
    for policy, part in summary["by_policy"].items():
        for method in HELPS:
            entry = part["fa_minus_standard"].get(method)
            if entry is None:
                continue
            cells = []
            for c in cols:
                d = entry["difference"][c]
                v = verdict(d, COLUMNS[c][1])
                if d["n"] and v in counts:
                    counts[v] += 1
                cells.append("—" if d["n"] == 0 else f"{_cell(d, 4)} ({v})")
            lines.append(f"| {policy} | {method} vs {entry['versus']} | " + " | ".join(cells) + " |")
    lines += ["", f"Of these {sum(counts.values())} comparisons FA is better in {counts['better']}, worse in "
                  f"{counts['worse']} and not clearly different in {counts['no clear difference']}.", "",
              "Along the T→NT-fraction ablation (Δ held-out ROC-AUC, FA − standard, paired):", "",
              "| policy | FA method | " + " | ".join(f"{f}" for f in summary["by_policy"][next(iter(
                  summary["by_policy"]))]["ablation"]["fractions"]) + " |"]
    fr = summary["by_policy"][next(iter(summary["by_policy"]))]["ablation"]["fractions"]
    lines.append("|---|---|" + "---|" * len(fr))
    for policy, part in summary["by_policy"].items():
        for method, by_f in part["ablation"]["fa_minus_standard"].items():
            lines.append(f"| {policy} | {method} | " + " | ".join(
                f"{_cell(by_f[str(f)]['roc_auc'])} ({verdict(by_f[str(f)]['roc_auc'], +1)})" for f in fr) + " |")
    lines += planted_lines(summary.get("planted"))
    lines += ["", "Why (proofs/T12_when_fa_helps.md): with a correctly specified linear reward the Bradley–Terry "
                  "MLE (MaxEnt) is consistent and efficient, so no re-weighting of failures can lower its "
                  "asymptotic variance, and FA's weights, which depend on each pair's order, make it inconsistent; "
                  "soft-margin tightening cannot move θ at all (proofs/T10). Up-weighting can only help where "
                  "the model is wrong or the pairs are not the model's: noise it can tell apart, or a curation "
                  "it undoes — the planted table shows which rules manage that.", ""]
    return lines


PLANTED_REGIMES = {"linear": "well specified, symmetric design", "gaussian": "well specified, generic design",
                   "two-kinds": "misspecified (a step function of two directions)",
                   "label-noise": "20 % of pair orders coin flips", "filtered": "pairs curated by an older reward"}


def planted_verdict(d: dict) -> str:
    """'helps' / 'hurts' when the mean Δ ROC-AUC is more than two standard errors from 0, else 'no clear difference'."""
    if abs(d["mean"]) <= 2 * d["se"] or abs(d["mean"]) < 1e-6:
        return "no clear difference"
    return "helps" if d["mean"] > 0 else "hurts"


def planted_lines(planted: dict | None) -> list[str]:
    """The planted regimes (well specified vs misspecified, label noise, curation): Δ method − MaxEnt."""
    if not planted:
        return []
    st = planted["settings"]
    lines = ["", f"Planted regimes (`fairl_opt.misspecified`, computed in this run: {st['seeds']} seeds, "
                 f"{st['n_pairs']} pairs, d = {st['dim']}, λ = {st['reg']:g}; Δ method − MaxEnt on held-out prompts, "
                 "mean ± standard error over seeds, paired; helps / hurts only beyond two standard errors; "
                 "fa-oracle keeps only the failures whose order is not noise — it needs the truth, the ceiling "
                 "of any rule):", "",
             "| regime | MaxEnt ROC-AUC | " + " | ".join(f"Δ ROC-AUC {m}" for m in planted["methods"]) + " |",
             "|---|---|" + "---|" * len(planted["methods"])]
    for regime, rows in planted["table"].items():
        cells = [f"{rows[m]['roc_auc']['mean']:+.4f} ± {rows[m]['roc_auc']['se']:.4f} "
                 f"({planted_verdict(rows[m]['roc_auc'])})" for m in planted["methods"]]
        lines.append(f"| {regime} ({PLANTED_REGIMES.get(regime, '')}) | {rows['maxent']['roc_auc']:.4f} | "
                     + " | ".join(cells) + " |")
    return lines


def write_report(summary: dict, out) -> Path:
    """Write ``report.md``, ``summary.json`` and the figures (one set per aligned policy) to ``out``
    (created); returns the report path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    lines = [
        "# Detox experiment: recovering r* from (aligned ≻ base) completion pairs",
        "",
        "Written by `fairl detox run` (`make demo`) from the shipped dataset; every number below is "
        "computed in that run. Settings are fixed in `fairl_opt/detox/experiment.py` and were not tuned on "
        "any test split." + (" **Quick mode** (fewer splits and methods)." if summary["quick"] else ""),
        "",
        "## Data",
        "",
        *_data_lines(summary),
        "",
        "Metrics — pair acc: held-out (aligned ≻ base) pairs ranked right; accuracy/F1/ROC-AUC: the reward as "
        "a toxicity detector on every held-out completion (toxic = positive class, predicted when the reward "
        "is below a threshold fitted for F1 on training prompts; F1 of the toxic class); STARC: distance to "
        "r* on held-out completions (0 = same reward up to shaping and scale); STARC to implicit: the same "
        "against the trained model's implicit reward; BoK: best-of-K re-alignment with the recovered reward "
        "on held-out prompts — toxicity rate and mean r* of the picks.",
        "",
    ]
    first = True
    for policy in summary["by_policy"]:
        tag = "" if first else f"_{policy}"
        view = _view(summary, policy)
        lines += _policy_section(view, policy, _figures(view, out, tag))
        first = False
    from fairl_opt.detox.rerlhf import rerlhf_lines

    lines += rerlhf_lines(summary.get("rerlhf"))
    lines += helps_section(summary)
    lines += [f"Run time: {summary.get('seconds', 0):.0f} s with {summary.get('workers', 1)} worker process(es).", ""]
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
