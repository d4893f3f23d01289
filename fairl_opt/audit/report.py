"""``report.md`` of an audit: every section written from the ``audit.json`` dict (so the report shows
only numbers the code computed), markdown tables, the figures embedded, texts escaped and shortened."""

from __future__ import annotations

import json

from fairl_opt._io import atomic_write_text

TEXT_CHARS = 160


def _text(value, limit: int = TEXT_CHARS) -> str:
    """One table cell of free text: whitespace collapsed, ``|``/``<`` escaped, shortened with …."""
    if value is None:
        return "—"
    s = " ".join(str(value).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("`", "\\`") or "(empty)"


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.{digits}f}"


def _table(header: list, rows: list) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _figure(result: dict, key: str, caption: str) -> list:
    name = result["files"]["figures"].get(key)
    return [f"![{caption}]({name})", ""] if name else []


def _summary(r: dict) -> list:
    inp, m, f = r["inputs"], r["margins"], r["failures"]
    lines = [f"# Audit: `{r['reward']['method']}` reward on {_text(inp['pairs'] or 'pairs')}", "",
             f"- {inp['n_pairs']} pairs ({inp['n_train']} training, {inp['n_test']} held-out), d = {inp['dim']}; "
             f"reward status **{r['reward']['status']}**.",
             f"- Pair accuracy: training {_f(m['train']['accuracy'])}"
             + ("" if m["test"] is None else f", held-out {_f(m['test']['accuracy'])} (95 % interval "
                f"[{_f(m['test']['accuracy_ci95'][0])}, {_f(m['test']['accuracy_ci95'][1])}])") + ".",
             f"- Failures (τ = {_f(r['failure_rule']['threshold'], 4)}): {f['train']['n_failures']} training"
             + ("" if f["test"] is None else f", {f['test']['n_failures']} held-out") + ".",
             f"- Separability of the training pairs: {r['limits']['separability']['status']}.",
             f"- {len(r['warnings'])} warning(s) below (what the data cannot support).", ""]
    return lines


def _limits(r: dict) -> list:
    lines = ["## What the data cannot support", ""]
    if r["warnings"]:
        lines += [f"- **{w['code']}**: {w['message']}" for w in r["warnings"]] + [""]
    else:
        lines += ["Nothing flagged: enough training pairs for d, training pairs not separable, many prompts, a "
                  "held-out set of useful size with accuracy above chance, and a certified reward.", ""]
    ident, sep, prompts = r["limits"]["identification"], r["limits"]["separability"], r["limits"]["prompts"]
    rows = [["training pairs / d", f"{ident['n_train']} / {ident['dim']} = {_f(ident['pairs_per_dim'], 2)} "
             f"(rank {ident['rank']}): {ident['status']}"],
            ["separability", f"{sep['status']} — {_text(sep.get('how'), 300)}"],
            ["distinct training prompts", "—" if prompts["n_prompts"] is None else
             f"{prompts['n_prompts']} (pairs per prompt {prompts['pairs_per_prompt']['min']}–"
             f"{prompts['pairs_per_prompt']['max']}, median {_f(prompts['pairs_per_prompt']['median'], 2)})"],
            ["held-out pairs", str(r["limits"]["heldout"]["n_test"])]]
    return lines + _table(["check", "finding"], rows)


def _inputs(r: dict) -> list:
    inp, rw = r["inputs"], r["reward"]
    feats = inp["features"]
    if feats.get("checked"):
        check = "feature model, fingerprint, max length and prompt use match"
        if feats.get("restandardised"):
            check += "; the pairs were re-standardised into the reward's units"
    else:
        check = "not checked (a feature model is not recorded on both sides)"
    rows = [["pairs file", _text(inp["pairs"])], ["reward folder", _text(inp["reward"])],
            ["method", f"`{rw['method']}` ({rw['kind']}, {'failure-aware' if rw['failure_aware'] else 'standard'})"],
            ["hyper-parameters", _text(json.dumps(rw["hyper_parameters"], sort_keys=True), 400)],
            ["certificate status", rw["status"]], ["‖θ‖₂", _f(rw["theta_norm"], 4)],
            ["feature recipe", check],
            ["fitted on this file", {True: "yes (sha256 matches the reward's training input)",
                                     False: f"no: fitted on {_text(rw['training'].get('input'))}",
                                     None: "unknown"}[inp["same_file_as_training"]]]]
    lines = ["## Inputs", ""] + _table(["", ""], rows)
    return lines + [f"- {_text(n, 400)}" for n in inp["notes"]] + ([""] if inp["notes"] else [])


def _margins(r: dict) -> list:
    header = ["split", "pairs", "accuracy", "95 % Wilson", "mean", "sd", *[f"q{q}" for q in
              ("0", "0.05", "0.25", "0.5", "0.75", "0.95", "1")]]
    rows = []
    for name, label in (("train", "training"), ("test", "held-out")):
        s = r["margins"][name]
        if s is None:
            continue
        rows.append([label, s["n"], _f(s["accuracy"]), f"[{_f(s['accuracy_ci95'][0])}, {_f(s['accuracy_ci95'][1])}]",
                     _f(s["mean"]), _f(s["sd"]), *[_f(v) for v in s["quantiles"].values()]])
    lines = ["## Margins and accuracy", "",
             "Margin of a pair: θᵀΔ = r(chosen) − r(rejected); a pair is correct when it is > 0.", ""]
    if r["margins"]["test"] is None:
        lines += ["No held-out pairs: every row is on training pairs.", ""]
    return lines + _table(header, rows) + _figure(r, "margins", "histogram of margins")


def _pair_rows(listed: list) -> list:
    return [[p["pair"], p["source_row"], _f(p["prompt_id"]), _f(p["kind"]), p["failure"], _f(p["margin"]),
             _f(p["normalised_margin"]), _text(p["prompt"], 80), _text(p["chosen"]), _text(p["rejected"])]
            for p in listed]


def _failures(r: dict) -> list:
    rule = r["failure_rule"]
    lines = ["## Failures", "",
             f"The FA loop's rule ({rule['definition']}), with {rule['source']}: {rule['rule']}. "
             f"Threshold used: τ = {_f(rule['threshold'], 4)} on the normalised margin "
             f"({_f(rule['threshold_reward_units'], 4)} in reward units). The audit measures the final reward on "
             "the pairs" + (", with the τ the FA loop fixed at round 0 (the loop also mined failures out of "
                            "fold)." if rule.get("threshold_from_fa_loop") else "."), ""]
    rows = []
    for name, label in (("train", "training"), ("test", "held-out")):
        s = r["failures"][name]
        if s is not None:
            rows.append([label, s["n_pairs"], s["n_failures"], s["n_misclassified"], s["n_near_ties"],
                         _f(s["failure_rate"])])
    lines += _table(["split", "pairs", "failures", "misclassified", "near ties", "rate"], rows)
    header = ["pair", "source row", "prompt id", "kind", "failure", "margin", "normalised", "prompt", "chosen",
              "rejected"]
    for name, label in (("train", "training"), ("test", "held-out")):
        s = r["failures"][name]
        if s is None or not s["listed"]:
            continue
        lines += [f"Worst {len(s['listed'])} {label} failures (most negative margin first, then the nearest ties):",
                  ""] + _table(header, _pair_rows(s["listed"]))
    return lines


def _completions(r: dict) -> list:
    c = r["completions"]
    rows = [[side, c[side]["n"], _f(c[side]["mean"]), _f(c[side]["sd"]), *[_f(v) for v in c[side]["quantiles"].values()]]
            for side in ("chosen", "rejected")]
    lines = ["## Completion rewards", "", "Reward r(y) = θᵀφ(y) of every completion, in the reward's units.", ""]
    lines += _table(["side", "n", "mean", "sd", "q0", "q0.05", "q0.25", "q0.5", "q0.75", "q0.95", "q1"], rows)
    lines += _figure(r, "rewards", "histogram of completion rewards")
    header = ["reward", "side", "pair", "source row", "prompt id", "prompt", "completion"]
    for key, label in (("highest", "Highest"), ("lowest", "Lowest")):
        body = [[_f(e["reward"]), e["side"], e["pair"], e["source_row"], _f(e["prompt_id"]), _text(e["prompt"], 80),
                 _text(e["text"])] for e in c[key]]
        lines += [f"{label}-scored distinct completions:", ""] + _table(header, body)
    return lines


def _kinds(r: dict) -> list:
    lines = ["## By pair kind", ""]
    if r["kinds"] is None:
        return lines + ["The pairs carry no kinds (no ground-truth labeller), so there is no breakdown by kind.", ""]
    rows = [[k, s["n_pairs"], s["n_train"], _f(s["accuracy"]), _f(s["mean_margin"]), _f(s["median_margin"]),
             s["n_misclassified"], s["n_near_ties"], _f(s["mean_reward_chosen"]), _f(s["mean_reward_rejected"])]
            for k, s in r["kinds"].items()]
    return lines + _table(["kind", "pairs", "training", "accuracy", "mean margin", "median margin", "misclassified",
                           "near ties", "mean r(chosen)", "mean r(rejected)"], rows)


def _phrase_rows(listed: list) -> list:
    return [[_text(p["ngram"], 60), p["n_with"], _f(p["difference"]), _f(p["effect_size"]), _f(p["q_value"], 3),
             p["pairs_one_side"], _f(p["chosen_fraction"]), _f(p["mean_margin"]), _f(p["paired_difference"]),
             _f(p["label_p_value"], 3)] for p in listed]


def _label_p(row: dict):
    """The binomial test of the chosen share (computed here for the within-prompt lists)."""
    from scipy import stats

    one, chosen = row["pairs_one_side"], row["chosen_side"]
    return float(stats.binomtest(int(chosen), int(one)).pvalue) if one else None


def _phrases(r: dict) -> list:
    lines = ["## What the reward pays for", ""]
    p = r["phrases"]
    if p is None:
        return lines + ["Skipped: this pairs file carries no texts (e.g. simulated features), so there are no words "
                        "or phrases to relate to the reward.", ""]
    lines += [f"**{p['caveat']}**", "",
              f"Units: {p['n_completions']} {p['units']}. Tested: {p['n_tested']} words and phrases of 1–"
              f"{p['max_ngram']} words present in at least {p['min_count']} completions and absent from as many. "
              f"Statistics: {p['statistic']}. Listed: q ≤ {p['fdr']:g}, by effect size "
              f"({p['n_significant_positive']} positive, {p['n_significant_negative']} negative in all; every tested "
              "n-gram is in phrases.csv). Paired view: over pairs with the n-gram in exactly one side, how often that "
              "side was the chosen one, the mean margin, the mean reward of the side with it minus the side without "
              "it, and a binomial test of the chosen share against one half (do the labels favour it?).", ""]
    if p.get("note"):
        lines += [f"{p['note']}.", ""]
    lines += ["### Within prompts (the two sides of a pair share a prompt: topic held fixed)", "",
              f"Statistic: {p['within_statistic']} "
              f"({p['n_within_tested']} n-grams with at least {p['min_count']} such pairs). Listed: q ≤ "
              f"{p['fdr']:g}, by the paired t statistic (strength of evidence; a mean difference alone favours "
              "rare n-grams).", ""]
    within_header = ["n-gram", "one-side pairs", "paired Δr", "t", "q", "chosen share", "label p"]
    for key, label in (("within_positive", "rewarded"), ("within_negative", "penalised")):
        rows = [[_text(w["ngram"], 60), w["pairs_one_side"], _f(w["paired_difference"]), _f(w["paired_t"]),
                 _f(w["paired_q_value"], 3), _f(w["chosen_fraction"]),
                 _f(_label_p(w), 3)] for w in p.get(key, [])]
        if rows:
            lines += [f"Top {label} within prompts:", ""] + _table(within_header, rows)
        else:
            lines += [f"No n-gram is significantly {label} within prompts at q ≤ {p['fdr']:g}.", ""]
    lines += ["### Across completions (topic not held fixed)", ""]
    header = ["n-gram", "completions with", "Δ mean reward", "effect d", "q", "one-side pairs", "chosen share",
              "mean margin", "paired Δr", "label p"]
    for key, label in (("positive", "rewarded (higher reward when present)"),
                       ("negative", "penalised (lower reward when present)")):
        if p[key]:
            lines += [f"Top {label}:", ""] + _table(header, _phrase_rows(p[key]))
        else:
            lines += [f"No n-gram is significantly {key.replace('positive', 'rewarded').replace('negative', 'penalised')} "
                      f"at q ≤ {p['fdr']:g}.", ""]
    return lines + _figure(r, "phrases", "top phrase effects")


def _fa(r: dict) -> list:
    lines = ["## Failure-aware rounds", ""]
    fa = r["fa"]
    if fa is None:
        return lines + [f"This reward is standard (`{r['reward']['method']}`): it has no FA rounds. Fit an fa-* method "
                        "(`fairl fit --method fa-mm-qp ...`) to get them, and add `--geometry` (fa-mm-* methods) for "
                        "how far the rounds shrink the feasible set.", ""]
    lines += [f"Stop reason: {_text(fa['stop_reason'])}. Pairs tightened or re-weighted: {fa['n_tightened']}.", ""]
    rows = [[x["round"], _f(x["n_failures"]), _f(x["n_misclassified"]), _f(x["n_near_ties"]), _f(x["objective"], 6),
             x["n_edited"], _f(x["step"]), _text(x["note"], 120) if x["note"] else "—"] for x in fa["rounds"]]
    lines += _table(["round", "failures", "misclassified", "near ties", "objective", "edited", "step", "note"], rows)
    lines += _figure(r, "fa_rounds", "FA failures per round")
    g = fa["geometry"]
    if g is None:
        lines += ["No feasible-set geometry recorded: refit with `fairl fit --geometry` (fa-mm-* methods) to get the "
                  "volume ratio F_FA/F_std and the Chebyshev radii.", ""]
    else:
        lines += [f"Feasible-set geometry ({_text(g['convention'], 200)}): volume ratio F_FA/F_std = "
                  f"{_f(g['volume_ratio'], 4)} ± {_f(g['stderr'], 3)} (standard error; {_f(g['confidence'], 2)} "
                  f"interval [{_f(g['ci_low'], 4)}, {_f(g['ci_high'], 4)}], {_text(g['method'])}); Chebyshev radius "
                  f"{_f(g['chebyshev_radius_standard'], 4)} (standard) → {_f(g['chebyshev_radius_fa'], 4)} (FA).", ""]
    return lines


def render(result: dict) -> str:
    """The markdown of ``result`` (the ``audit.json`` dict)."""
    lines = _summary(result) + _limits(result) + _inputs(result) + _margins(result) + _failures(result)
    lines += _completions(result) + _kinds(result) + _phrases(result) + _fa(result)
    files = result["files"]
    lines += ["## Files", "", "- `audit.json`: every number above, documented field by field in `fairl_opt.audit`.",
              "- `pairs.csv`: one row per pair (margins, rewards, failure, texts)."]
    if "phrases_csv" in files:
        lines.append("- `phrases.csv`: every tested n-gram with its statistics.")
    lines += [f"- `{name}`" for name in files["figures"].values()]
    run = result["run"]
    lines += ["", f"Written by fairl_opt {run['fairl_version']} (`fairl {run['command']}`).", ""]
    return "\n".join(lines)


def write_report(result: dict, path):
    """Write :func:`render` of ``result`` to ``path`` atomically; returns the path."""
    return atomic_write_text(path, render(result))
