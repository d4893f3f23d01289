"""Run an audit end to end: every diagnostic on the inputs, then ``audit.json``, ``report.md``,
``pairs.csv``, ``phrases.csv`` and the figures, each written atomically into the report folder
(checked before any work)."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairl_opt._io import atomic_write_text, check_output_dir
from fairl_opt._json import jsonable, run_record
from fairl_opt.audit import diagnostics, figures, limits
from fairl_opt.audit.inputs import AuditInputs, fa_settings
from fairl_opt.audit.phrases import PhraseOptions, phrase_table
from fairl_opt.exceptions import DataError

log = logging.getLogger(__name__)

FORMAT = "fairl-audit/1"


@dataclass(frozen=True)
class AuditOptions:
    """``top``: failures and completions listed (and phrases each way); ``min_count``, ``max_ngram``,
    ``fdr``: the phrase analysis (:class:`~fairl_opt.audit.phrases.PhraseOptions`);
    ``separability_limit``: the largest n_train·d the hard-margin separability solve is run on."""

    top: int = 10
    min_count: int = 5
    max_ngram: int = 2
    fdr: float = 0.05
    separability_limit: int = limits.SEPARABILITY_LIMIT

    def __post_init__(self):
        for name, low in (("top", 1), ("min_count", 2), ("max_ngram", 1), ("separability_limit", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.fdr, (int, float)) and 0 < self.fdr < 1):
            raise DataError(f"fdr must be in (0, 1), got {self.fdr!r}")

    def to_dict(self) -> dict:
        return {"top": self.top, "min_count": self.min_count, "max_ngram": self.max_ngram, "fdr": self.fdr,
                "separability_limit": self.separability_limit}


def _fitted_pairs(reward) -> int | None:
    """How many pairs the reward was fitted on, when the folder says (FA arrays or ``training``)."""
    for arr in reward.arrays.values():
        return int(np.asarray(arr).shape[0])
    for key in ("n_train", "n_pairs_train", "n_fit"):
        value = reward.training.get(key) if isinstance(reward.training, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def analyse(inputs: AuditInputs, options: AuditOptions = AuditOptions()) -> tuple[dict, object]:
    """Every number of the audit as a JSON-ready dict (documented in :mod:`fairl_opt.audit`, without
    ``run`` and ``files``), and the per-pair :class:`~fairl_opt.audit.diagnostics.PairScores`."""
    data, reward = inputs.data, inputs.reward
    theta = reward.theta
    where = str(inputs.reward_dir or "the reward")
    settings, source = fa_settings(reward, where)
    fa = diagnostics.fa_summary(reward, where)  # first: a damaged record fails before any work
    loop_tau = inputs.reward.fa.get("threshold") if isinstance(inputs.reward.fa, dict) else None
    scores, failures = diagnostics.failure_analysis(data, theta, settings, source, options.top,
                                                    threshold=loop_tau)
    margins = diagnostics.margin_summary(scores)
    train_delta = data.pairs.delta[data.train_index]
    warnings = []
    ident, w = limits.identification(train_delta.shape[0], data.pairs.dim, train_delta)
    warnings += w
    sep = limits.separability(train_delta, theta, options.separability_limit)
    if "conflicting_pairs" in sep:  # indices into the training pairs -> pairs of the file
        sep["conflicting_pairs"] = data.train_index[sep["conflicting_pairs"]].tolist()
    warnings += limits.separability_warnings(sep)
    prompts, w = limits.prompt_diversity(data.pairs.prompt_ids, data.train_index)
    warnings += w
    held, w = limits.heldout(data.test_index.size, margins["test"], margins["train"])
    warnings += w
    warnings += limits.certificate_warnings(reward)
    fitted = _fitted_pairs(reward)
    if inputs.same_file is False:
        warnings.append({"code": "other_file", "message": (
            f"the reward was fitted on {reward.training.get('input')!r}, not on this file (their sha256 differ): "
            "'training' and 'held-out' here are this file's split, not what the reward saw")})
    elif fitted is not None and fitted != data.train_index.size:
        warnings.append({"code": "other_pairs", "message": (
            f"the reward was fitted on {fitted} pairs but this file has {data.train_index.size} training pairs: "
            "'training' here means this file's split, not necessarily the pairs the reward saw")})
    if (inputs.features.get("pairs") is None) != (inputs.features.get("reward") is None):
        warnings.append({"code": "feature_recipe_unchecked", "message": inputs.notes[0]})
    log.info("phrases: %s", "analysing the texts" if data.has_texts else "no texts in the pairs file")
    phrases = phrase_table(data, scores, PhraseOptions(options.min_count, options.max_ngram, options.top,
                                                       options.fdr))
    result = {
        "format": FORMAT,
        "inputs": {"pairs": None if inputs.pairs_path is None else str(inputs.pairs_path),
                   "reward": None if inputs.reward_dir is None else str(inputs.reward_dir),
                   "n_pairs": data.pairs.n_pairs, "n_train": int(data.train_index.size),
                   "n_test": int(data.test_index.size), "dim": data.pairs.dim, "has_texts": data.has_texts,
                   "has_kinds": data.pairs.kinds is not None, "has_prompt_ids": data.pairs.prompt_ids is not None,
                   "features": inputs.features, "same_file_as_training": inputs.same_file,
                   "notes": list(inputs.notes)},
        "reward": {"method": reward.method, "kind": reward.kind, "failure_aware": reward.failure_aware,
                   "hyper_parameters": reward.hyper_parameters, "status": reward.status,
                   "certificate": reward.certificate, "theta_norm": float(np.linalg.norm(theta)),
                   "fitted_pairs": fitted, "training": reward.training, "fairl_version": reward.version,
                   "created": reward.created},
        **failures,
        "margins": margins,
        "completions": diagnostics.completion_summary(data, scores, options.top),
        "kinds": diagnostics.kind_summary(data, scores),
        "phrases": None if phrases is None else {k: v for k, v in phrases.items() if k != "table"},
        "fa": fa,
        "limits": {"identification": ident, "separability": sep, "prompts": prompts, "heldout": held},
        "warnings": warnings,
    }
    result["_phrase_table"] = [] if phrases is None else phrases["table"]
    return result, scores


def _csv(rows: list, columns: list) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    return buf.getvalue()


def pairs_csv(data, scores) -> str:
    """One row per pair: index, split, source row, prompt id, kind, margins, rewards, failure, texts."""
    rows = []
    for i in range(data.pairs.n_pairs):
        rows.append({"pair": i, "split": scores.split[i], "source_row": data.row(i),
                     "prompt_id": None if data.pairs.prompt_ids is None else int(data.pairs.prompt_ids[i]),
                     "kind": None if data.pairs.kinds is None else data.pairs.kinds[i],
                     "margin": repr(float(scores.margin[i])), "normalised_margin": repr(float(scores.normalised[i])),
                     "reward_chosen": repr(float(scores.reward_chosen[i])),
                     "reward_rejected": repr(float(scores.reward_rejected[i])), "failure": scores.failure[i],
                     "prompt": None if data.prompt_text is None else data.prompt_text[i],
                     "chosen": None if data.chosen_text is None else data.chosen_text[i],
                     "rejected": None if data.rejected_text is None else data.rejected_text[i]})
    return _csv(rows, list(rows[0]))


PHRASE_COLUMNS = ["ngram", "n_with", "mean_with", "mean_without", "difference", "effect_size", "t", "df", "p_value",
                  "q_value", "pairs_one_side", "chosen_side", "chosen_fraction", "mean_margin", "paired_difference",
                  "paired_t", "paired_p_value", "paired_q_value"]


def audit(inputs: AuditInputs, out, options: AuditOptions = AuditOptions(), run: dict | None = None) -> dict:
    """Audit ``inputs`` into the folder ``out`` (created when missing); returns what ``audit.json``
    holds. ``run`` is the :func:`~fairl_opt._json.run_record` to store (one is made when None)."""
    from fairl_opt.audit.report import write_report

    out = check_output_dir(out)
    if run is None:
        run = run_record("audit", {"pairs": inputs.pairs_path, "reward": inputs.reward_dir}, options.to_dict())
    result, scores = analyse(inputs, options)
    table = result.pop("_phrase_table")
    out.mkdir(parents=True, exist_ok=True)
    made = {"margins": figures.margins_figure(out / figures.FILES["margins"], scores,
                                              result["failure_rule"]["threshold_reward_units"]),
            "rewards": figures.rewards_figure(out / figures.FILES["rewards"], scores)}
    fa = result["fa"]
    if fa is not None and fa["rounds"]:
        made["fa_rounds"] = figures.fa_rounds_figure(out / figures.FILES["fa_rounds"], fa)
    phrases = result["phrases"]
    if phrases is not None and (phrases["positive"] or phrases["negative"]):
        made["phrases"] = figures.phrases_figure(out / figures.FILES["phrases"], phrases)
    files = {"report": "report.md", "audit": "audit.json", "pairs_csv": "pairs.csv",
             "figures": {k: Path(v).name for k, v in made.items()}}
    atomic_write_text(out / "pairs.csv", pairs_csv(inputs.data, scores))
    if phrases is not None:
        files["phrases_csv"] = "phrases.csv"
        atomic_write_text(out / "phrases.csv", _csv(table, PHRASE_COLUMNS))
    result = {"format": result.pop("format"), "run": run, **result, "files": files}
    write_report(result, out / "report.md")
    atomic_write_text(out / "audit.json", json.dumps(jsonable(result), indent=2, ensure_ascii=False) + "\n")
    log.info("audit written to %s", out)
    return result


def headline(result: dict) -> dict:
    """The numbers ``fairl audit`` prints: pair counts, accuracies, failures, top phrases."""
    m, f = result["margins"], result["failures"]
    phrases = result["phrases"] or {}
    return {"n_pairs": result["inputs"]["n_pairs"], "n_train": result["inputs"]["n_train"],
            "n_test": result["inputs"]["n_test"], "dim": result["inputs"]["dim"],
            "train_accuracy": m["train"]["accuracy"], "test_accuracy": None if m["test"] is None else m["test"]["accuracy"],
            "train_failures": f["train"]["n_failures"], "test_failures": None if f["test"] is None else f["test"]["n_failures"],
            "near_tie_threshold": result["failure_rule"]["threshold"],
            "separability": result["limits"]["separability"]["status"],
            "top_positive": [r["ngram"] for r in phrases.get("positive", [])[:5]],
            "top_negative": [r["ngram"] for r in phrases.get("negative", [])[:5]]}
