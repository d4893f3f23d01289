"""Preference texts to a pairs file: prompt ids, a held-out split by prompt, one embedding job over
every distinct text, one standardisation fitted on the training pairs.

:func:`build_pairs` turns :class:`~fairl_opt.data.preferences.PreferenceTexts` into
:class:`~fairl_opt.data.pairs_file.PairsData`:

1. pairs with the same prompt text share a prompt id (numbered in order of first appearance);
2. with ``test_fraction > 0``, :func:`fairl_opt.pairs.group_split` holds out whole prompts
   (``round(test_fraction × prompts)`` of them, which must leave at least one on each side);
3. the distinct texts to embed (the completions, or ``prompt + completion`` with ``with_prompt``),
   in order of first appearance over (chosen, rejected) of each pair, go through one
   :func:`fairl_opt.lm.embed_texts` call: one cache (reruns resume), one progress bar, each distinct
   text embedded once;
4. a pair whose two sides embed identically (e.g. equal in their first ``max_length`` tokens), or
   whose two feature rows repeat an earlier pair's, is a bad row (``identical_features``,
   ``duplicate_features``), named by its source row; ``skip_bad`` drops it;
5. one standardisation (:func:`~fairl_opt.data.features.fit_standardisation`) is fitted on the
   training pairs' completions, both sides, each pair contributing its two feature rows (a completion
   shared by several pairs counts once per pair), and applied to every pair.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from fairl_opt.data.features import FeatureSpec, fit_standardisation
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.preferences import BadRow, PreferenceTexts, bad_rows_error, warn_skipped
from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs, group_split

logger = logging.getLogger(__name__)


def prompt_ids(prompts) -> np.ndarray:
    """An int id per prompt text, equal texts sharing one, numbered in order of first appearance."""
    ids: dict[str, int] = {}
    return np.fromiter((ids.setdefault(p, len(ids)) for p in prompts), dtype=np.int64, count=len(prompts))


def check_split(n_prompts: int, test_fraction: float) -> int:
    """How many prompts ``test_fraction`` holds out of ``n_prompts`` (0 for no split).

    Raises
    ------
    DataError
        When ``test_fraction`` is not in [0, 1) or would hold out no prompt or every prompt.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not math.isfinite(test_fraction) or not 0 <= test_fraction < 1:
        raise DataError(f"--test-fraction must lie in [0, 1), got {test_fraction!r}")
    if test_fraction == 0:
        return 0
    n_test = int(round(test_fraction * n_prompts))  # as fairl_opt.pairs.group_split rounds
    if n_prompts < 2 or n_test >= n_prompts:
        raise DataError(f"--test-fraction {test_fraction} of {n_prompts} prompt(s) leaves no training prompt; "
                        "pass --test-fraction 0 for no held-out split")
    if n_test < 1:
        raise DataError(f"--test-fraction {test_fraction} of {n_prompts} prompts holds out no prompt (it rounds "
                        f"to 0); pass at least {0.5 / n_prompts:.3g}, or 0 for no held-out split")
    return n_test


def _feature_bad(raw, ci, ri, rows, max_length) -> list[BadRow]:
    """Pairs whose sides embed identically or whose (chosen, rejected) rows repeat an earlier pair's."""
    bad, seen = [], {}
    for k, (c, r) in enumerate(zip(ci, ri)):
        if np.array_equal(raw[c], raw[r]):
            bad.append(BadRow(int(rows[k]), "identical_features", "chosen and rejected embed identically (e.g. "
                              f"the same tokens within the first max_length={max_length})"))
            continue
        key = (np.ascontiguousarray(raw[c]) + 0.0).tobytes() + (np.ascontiguousarray(raw[r]) + 0.0).tobytes()
        if key in seen:
            bad.append(BadRow(int(rows[k]), "duplicate_features",
                              f"chosen and rejected embed exactly as row {seen[key]}'s"))
            continue
        seen[key] = int(rows[k])
    return bad


def build_pairs(texts: PreferenceTexts, *, model: str, max_length: int = 128, with_prompt: bool = False,
                test_fraction: float = 0.2, seed: int = 0, cache_dir=None, batch_size: int = 32,
                workers: int = 1, progress=True, skip_bad: bool = False, scheduler=None) -> PairsData:
    """Embed and standardise the pairs of ``texts`` (see the module docstring).

    Parameters
    ----------
    texts : PreferenceTexts
        From :func:`fairl_opt.data.preferences.read_preferences`.
    model : str
        Feature model: a name of :data:`fairl_opt.models.NAMED_MODELS` or a local model directory.
    max_length, batch_size, workers, cache_dir, progress, scheduler
        As :func:`fairl_opt.lm.embed_texts` (``cache_dir`` None: a temporary cache; ``scheduler``: a
        Dask client or address whose workers embed the chunks).
    with_prompt : bool
        Embed ``prompt + completion`` instead of the completion alone.
    test_fraction, seed : float, int
        The held-out split by prompt (``test_fraction=0``: none).
    skip_bad : bool
        Drop pairs whose features are unusable (counted in ``meta["bad_rows"]``) instead of failing.

    Raises
    ------
    DataError
        An unknown model, a split that leaves a side empty, unusable features without ``skip_bad``.
    """
    from fairl_opt import __version__, lm
    from fairl_opt.models import resolve_model

    if len(texts) == 0:
        raise DataError(f"{texts.source}: no pairs to build")
    check_split(int(prompt_ids(texts.prompts).max()) + 1, test_fraction)
    plain = FeatureSpec(model, resolve_model(model).fingerprint(), max_length, with_prompt)
    sides = [plain.texts(texts.chosen, texts.prompts), plain.texts(texts.rejected, texts.prompts)]
    order: dict[str, int] = {}
    for c, r in zip(*sides):
        order.setdefault(c, len(order))
        order.setdefault(r, len(order))
    raw = lm.embed_texts(list(order), model=model, cache_dir=cache_dir, batch_size=batch_size,
                         max_length=max_length, workers=workers, progress=progress,
                         scheduler=scheduler).astype(np.float64)
    ci, ri = (np.fromiter((order[t] for t in side), dtype=np.int64, count=len(side)) for side in sides)
    bad = _feature_bad(raw, ci, ri, texts.rows, max_length)
    if bad and not skip_bad:
        raise bad_rows_error(texts.source, bad, texts.n_read, texts.lines,
                             note=f" after embedding with {model} (the embeddings are cached: a rerun is quick)")
    keep = np.flatnonzero(~np.isin(texts.rows, [b.row for b in bad]))
    if keep.size == 0:
        raise DataError(f"{texts.source}: no usable pair: every pair's features are unusable")
    if bad:
        warn_skipped(texts.source, bad, texts.n_read, texts.lines)
    prompts = [texts.prompts[k] for k in keep]
    ids = prompt_ids(prompts)
    test_mask = None
    if check_split(int(ids.max()) + 1, test_fraction):
        _, test = group_split(ids, test_fraction, seed)
        test_mask = np.zeros(keep.size, dtype=bool)
        test_mask[test] = True
    chosen, rejected = raw[ci[keep]], raw[ri[keep]]
    train = np.flatnonzero(~test_mask) if test_mask is not None else np.arange(keep.size)
    mean, scale = fit_standardisation(np.vstack([chosen[train], rejected[train]]))
    spec = FeatureSpec(model, plain.fingerprint, max_length, with_prompt, mean, scale)
    counts = dict(texts.bad_counts())
    for b in bad:
        counts[b.reason] = counts.get(b.reason, 0) + 1
    meta = {"input": texts.source, "layout": texts.layout, "fields": dict(texts.fields), "bad_rows": counts,
            "n_read": int(texts.n_read), "n_prompts": int(ids.max()) + 1, "test_fraction": float(test_fraction),
            "seed": int(seed), "fairl_version": __version__}
    pairs = PreferencePairs(spec.standardise(chosen), spec.standardise(rejected), prompt_ids=ids)
    return PairsData(pairs, prompts, [texts.chosen[k] for k in keep], [texts.rejected[k] for k in keep],
                     test_mask=test_mask, source_rows=texts.rows[keep], features=spec, meta=meta)
