"""What the recovered reward pays for, read from the texts: the words and phrases (1- to k-grams)
whose presence in a completion goes with a higher or lower reward.

Units are the distinct completions (text and reward; a completion repeated across pairs counts once).
For each n-gram present in at least ``min_count`` completions and absent from at least as many
(binary presence, :class:`sklearn.feature_extraction.text.CountVectorizer`, lower-cased):

* ``difference``: mean reward of completions with it minus without it;
* ``effect_size``: Cohen's d, that difference over the pooled standard deviation;
* ``t``, ``df``, ``p_value``: Welch's two-sample t-test (unequal variances and group sizes — a rare
  n-gram's group is small), two-sided;
* ``q_value``: Benjamini–Hochberg over every n-gram tested (:func:`scipy.stats.false_discovery_control`);
* the paired view, over the pairs whose n-gram is in exactly one side: ``pairs_one_side``,
  ``chosen_side`` (the side with it was the chosen one), ``chosen_fraction``, ``mean_margin`` (mean
  θᵀΔ of those pairs) and ``paired_difference`` (mean reward of the side with it minus the side
  without it); for listed n-grams also ``label_p_value``, a two-sided binomial test of
  ``chosen_side`` against one half (do the preference labels favour it?);
* the **within-prompt test**, on those same pairs: ``paired_t`` and ``paired_p_value``, a one-sample
  t-test of the per-pair differences r(side with it) − r(side without it) against 0 (the two sides
  share a prompt, so the topic is held fixed), and ``paired_q_value``, Benjamini–Hochberg over the
  n-grams with at least ``min_count`` such pairs. ``within_positive``/``within_negative`` list the
  n-grams with ``paired_q_value`` ≤ ``fdr`` by ``paired_t`` (the strength of the evidence, which
  unlike a mean difference does not favour rare n-grams): what the reward pays for once
  the prompt is held fixed. The across-completions lists (``positive``/``negative``) also pick up
  what differs between prompts (a topic whose answers score high).

These are associations of the recovered reward with surface text, not causes: an n-gram can ride
along with whatever the features respond to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

#: Tokens: runs of word characters, an apostrophe allowed inside ("don't"); single letters kept.
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"
#: What every phrase table says about itself.
CAVEAT = ("These are associations of the recovered reward with surface text, not causes: a phrase can "
          "ride along with whatever the features respond to (topic, length, style), and the reward "
          "itself was fitted, not observed.")


@dataclass(frozen=True)
class PhraseOptions:
    """``min_count`` (≥ 2) completions with and without an n-gram, n-grams of 1..``max_ngram`` words,
    ``top`` n-grams listed each way, ``fdr``: the q-value an n-gram must reach to be listed."""

    min_count: int = 5
    max_ngram: int = 2
    top: int = 10
    fdr: float = 0.05


def _units(data, reward_chosen, reward_rejected):
    """Distinct (text, reward) completions: texts, rewards."""
    texts = np.concatenate([data.chosen_text, data.rejected_text]).astype(str)
    rewards = np.concatenate([reward_chosen, reward_rejected])
    seen = {}
    for t, r in zip(texts.tolist(), rewards.tolist()):
        seen.setdefault((t, r), None)
    keys = list(seen)
    return [k[0] for k in keys], np.array([k[1] for k in keys], dtype=np.float64)


def welch(x: sparse.csc_matrix, y: np.ndarray) -> dict:
    """Per column of the binary matrix ``x``: group sizes, means, difference, Cohen's d, Welch t, df
    and two-sided p of ``y`` with (x = 1) versus without (x = 0)."""
    y = np.asarray(y, dtype=np.float64)
    centre = y.mean()
    yc = y - centre  # centred sums: no cancellation in the variances
    n = y.size
    n1 = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    n0 = n - n1
    s1 = x.T @ yc
    q1 = x.T @ (yc * yc)
    s0, q0 = yc.sum() - s1, (yc * yc).sum() - q1
    m1, m0 = s1 / n1, s0 / n0
    v1 = np.maximum(q1 - n1 * m1 * m1, 0.0) / (n1 - 1)
    v0 = np.maximum(q0 - n0 * m0 * m0, 0.0) / (n0 - 1)
    diff = m1 - m0
    pooled = np.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / (n - 2))
    a, b = v1 / n1, v0 / n0
    se = np.sqrt(a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(pooled > 0, diff / pooled, 0.0)
        t = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
        df = np.where(se > 0, (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1)), n - 2.0)
    df = np.where(np.isfinite(df), df, n - 2.0)
    p = 2 * stats.t.sf(np.abs(t), df)
    return {"n_with": n1.astype(np.int64), "mean_with": m1 + centre, "mean_without": m0 + centre,
            "difference": diff, "effect_size": d, "t": t, "df": df, "p_value": p}


def paired_view(vectorizer, chosen_text, rejected_text, margins) -> dict:
    """Per vocabulary entry, over pairs with it in exactly one side: counts, the chosen fraction, the
    mean margin and the mean (with − without) reward difference."""
    xc = (vectorizer.transform(chosen_text) > 0).astype(np.float64).tocsc()
    xr = (vectorizer.transform(rejected_text) > 0).astype(np.float64).tocsc()
    both = xc.multiply(xr).tocsc()
    only_c, only_r = (xc - both).tocsc(), (xr - both).tocsc()
    m = np.asarray(margins, dtype=np.float64)
    nc = np.asarray(only_c.sum(axis=0)).ravel()
    nr = np.asarray(only_r.sum(axis=0)).ravel()
    one = nc + nr
    with np.errstate(divide="ignore", invalid="ignore"):
        mc, mr = only_c.T @ m, only_r.T @ m
        mean = np.where(one > 0, (mc - mr) / one, np.nan)  # differences are +margin or -margin
        squares = (only_c + only_r).T @ (m * m)
        var = np.maximum(squares - one * mean * mean, 0.0) / (one - 1)
        se = np.sqrt(var / one)
        t = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
        t = np.where(one >= 2, t, np.nan)
        p = np.where(one >= 2, 2 * stats.t.sf(np.abs(t), np.maximum(one - 1, 1)), np.nan)
        return {"pairs_one_side": one.astype(np.int64), "chosen_side": nc.astype(np.int64),
                "chosen_fraction": np.where(one > 0, nc / one, np.nan),
                "mean_margin": np.where(one > 0, (mc + mr) / one, np.nan),
                "paired_difference": mean, "paired_t": t, "paired_p_value": p}


def phrase_table(data, scores, options: PhraseOptions) -> dict:
    """The phrase analysis of the module docstring: a JSON-ready dict with ``n_completions``,
    ``n_tested``, ``positive`` and ``negative`` (listed n-grams, q ≤ ``fdr``, by effect size),
    ``n_significant_positive``/``negative`` and ``table`` (every tested n-gram, for phrases.csv);
    ``None`` when the pairs carry no texts."""
    if not data.has_texts:
        return None
    from sklearn.feature_extraction.text import CountVectorizer

    texts, rewards = _units(data, scores.reward_chosen, scores.reward_rejected)
    base = {"units": "distinct completions (text, reward)", "n_completions": len(texts),
            "min_count": options.min_count, "max_ngram": options.max_ngram, "fdr": options.fdr,
            "token_pattern": TOKEN_PATTERN, "lowercase": True,
            "statistic": "Welch two-sample t-test, two-sided; effect size Cohen's d (pooled SD); "
                         "Benjamini-Hochberg q-values over all tested n-grams; p-values treat distinct "
                         "completions as independent (completions of one prompt may not be)",
            "within_statistic": "over pairs with the n-gram in exactly one side: one-sample t-test of "
                                "r(side with it) - r(side without it) against 0 (same prompt on both "
                                "sides); Benjamini-Hochberg over n-grams with >= min_count such pairs",
            "caveat": CAVEAT, "positive": [], "negative": [], "n_tested": 0,
            "within_positive": [], "within_negative": [], "n_within_tested": 0,
            "n_significant_within_positive": 0, "n_significant_within_negative": 0,
            "n_significant_positive": 0, "n_significant_negative": 0, "table": []}
    if len(texts) < 2 * options.min_count:
        base["note"] = f"{len(texts)} distinct completions: fewer than 2 x min_count ({options.min_count})"
        return base
    vectorizer = CountVectorizer(ngram_range=(1, options.max_ngram), binary=True, lowercase=True,
                                 token_pattern=TOKEN_PATTERN, min_df=options.min_count, dtype=np.float64)
    try:
        x = vectorizer.fit_transform(texts).tocsc()
    except ValueError:  # no n-gram in min_count completions (sklearn: empty vocabulary)
        base["note"] = f"no word or phrase occurs in {options.min_count} or more completions"
        return base
    vocab = vectorizer.get_feature_names_out()
    n_with = np.asarray(x.sum(axis=0)).ravel()
    keep = np.flatnonzero(len(texts) - n_with >= options.min_count)
    if keep.size == 0:
        base["note"] = "every frequent word or phrase is in nearly every completion: nothing to compare"
        return base
    x, vocab = x[:, keep], vocab[keep]
    columns = welch(x, rewards)
    columns["q_value"] = stats.false_discovery_control(columns["p_value"], method="bh")
    view = paired_view(vectorizer, data.chosen_text, data.rejected_text, scores.margin)
    columns.update({k: v[keep] for k, v in view.items()})
    enough = columns["pairs_one_side"] >= options.min_count
    paired_q = np.full(vocab.size, np.nan)
    if enough.any():
        paired_q[enough] = stats.false_discovery_control(columns["paired_p_value"][enough], method="bh")
    columns["paired_q_value"] = paired_q
    names = list(columns)
    table = [{"ngram": str(vocab[j]), **{k: _number(columns[k][j]) for k in names}} for j in range(vocab.size)]
    effect = columns["effect_size"]
    significant = columns["q_value"] <= options.fdr
    positive = [j for j in np.argsort(-effect, kind="stable") if significant[j] and effect[j] > 0]
    negative = [j for j in np.argsort(effect, kind="stable") if significant[j] and effect[j] < 0]
    for key, chosen in (("positive", positive), ("negative", negative)):
        listed = []
        for j in chosen[: options.top]:
            row = dict(table[j])
            one, c = int(columns["pairs_one_side"][j]), int(columns["chosen_side"][j])
            row["label_p_value"] = float(stats.binomtest(c, one).pvalue) if one else None
            listed.append(row)
        base[key] = listed
        base[f"n_significant_{key}"] = len(chosen)
    within = np.where(enough & (paired_q <= options.fdr), columns["paired_t"], np.nan)
    for key, order in (("within_positive", np.argsort(-np.nan_to_num(within, nan=0.0), kind="stable")),
                       ("within_negative", np.argsort(np.nan_to_num(within, nan=0.0), kind="stable"))):
        sign = 1 if key == "within_positive" else -1
        chosen = [j for j in order if np.isfinite(within[j]) and sign * within[j] > 0]
        base[key] = [dict(table[j]) for j in chosen[: options.top]]
        base[f"n_significant_{key}"] = len(chosen)
    base["n_within_tested"] = int(enough.sum())
    base["n_tested"] = int(vocab.size)
    base["table"] = sorted(table, key=lambda r: (-abs(r["effect_size"]), r["ngram"]))
    return base


def _number(v):
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else v
    return v
