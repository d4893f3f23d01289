"""The files of a detox dataset folder and their checks: ``manifest.json`` (form, sizes, sha256 of
each data file), ``arrays.npz`` (shapes, finiteness, r* = logit(1 − p), labels, splits),
``prompts.jsonl`` and ``completions.jsonl`` (ids in order, texts). Every failure is a DataError
naming the file and the first bad row. :meth:`fairl_opt.detox.dataset.DetoxDataset.load` runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError

#: The data files of a dataset folder (beside manifest.json).
DATA_FILES = ("prompts.jsonl", "completions.jsonl", "arrays.npz")
#: Keys every manifest.json has (written by :func:`write_dataset`); :data:`MANIFEST_OPTIONAL` may appear too.
MANIFEST_KEYS = ("dataset", "created", "n_prompts", "K", "beta", "seed", "n_splits", "test_fraction",
                 "families", "generator", "feature_model", "ground_truth", "rates", "cost", "versions", "files")
MANIFEST_OPTIONAL = ("prompt_source", "aligned_policy", "policies")
#: Arrays of arrays.npz.
ARRAY_KEYS = ("features", "r_star", "p_offensive", "toxic", "aligned_index", "test_masks")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_manifest(man_path: Path) -> dict:
    """The manifest, checked for form: a JSON object with exactly the known keys, sizes that are
    positive integers, and ``files`` mapping each data file to its sha256 and byte size."""
    try:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{man_path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{man_path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{man_path}: must hold a JSON object, got {type(manifest).__name__}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    extra = sorted(k for k in manifest if k not in MANIFEST_KEYS + MANIFEST_OPTIONAL)
    if missing or extra:
        parts = ([f"missing key(s) {', '.join(map(repr, missing))}"] if missing else []) + \
                ([f"unknown key(s) {', '.join(map(repr, extra))}"] if extra else [])
        raise DataError(f"{man_path}: {'; '.join(parts)}")
    for key, low in (("n_prompts", 2), ("K", 1), ("n_splits", 1)):
        if not _is_int(manifest[key]) or manifest[key] < low:
            raise DataError(f"{man_path}: {key} must be an integer >= {low}, got {manifest[key]!r}")
    if not isinstance(manifest["beta"], (int, float)) or isinstance(manifest["beta"], bool) or not manifest["beta"] > 0:
        raise DataError(f"{man_path}: beta must be a number > 0, got {manifest['beta']!r}")
    for key in ("families", "feature_model", "generator", "ground_truth"):
        if not isinstance(manifest[key], dict):
            raise DataError(f"{man_path}: {key} must be an object, got {type(manifest[key]).__name__}")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise DataError(f"{man_path}: files must map each data file to its sha256, got {type(files).__name__}")
    missing = [n for n in DATA_FILES if n not in files]
    extra = sorted(n for n in files if n not in DATA_FILES)
    if missing or extra:
        parts = ([f"lists no {', '.join(missing)}"] if missing else []) + \
                ([f"lists unknown file(s) {', '.join(extra)}"] if extra else [])
        raise DataError(f"{man_path}: files {'; '.join(parts)}")
    for name in DATA_FILES:
        entry = files[name]
        ok = (isinstance(entry, dict) and set(entry) == {"sha256", "bytes"} and isinstance(entry["sha256"], str)
              and len(entry["sha256"]) == 64 and all(ch in "0123456789abcdef" for ch in entry["sha256"])
              and _is_int(entry["bytes"]) and entry["bytes"] >= 0)
        if not ok:
            raise DataError(f"{man_path}: files[{name!r}] must be {{\"sha256\": 64 hex digits, \"bytes\": size}}, "
                            f"got {entry!r}"[:300])
    return manifest


def _first_bad(mask) -> int:
    """Index of the first row (along axis 0) where ``mask`` is True anywhere."""
    mask = np.asarray(mask)
    rows = mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask
    return int(np.flatnonzero(rows)[0])


def check_arrays(path: Path, manifest: dict) -> dict:
    """arrays.npz, checked for meaning against the manifest (shapes, dtypes, ranges, finiteness)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError...
        raise DataError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    extra = sorted(k for k in arrays if k not in ARRAY_KEYS)
    if missing or extra:
        raise DataError(f"{path}: " + "; ".join(([f"no array {', '.join(missing)}"] if missing else [])
                                               + ([f"unknown array(s) {', '.join(extra)}"] if extra else [])))
    n, k1, n_splits = manifest["n_prompts"], manifest["K"] + 1, manifest["n_splits"]
    dim = manifest["feature_model"].get("dim")
    feats = arrays["features"]
    if feats.ndim != 3 or feats.shape[:2] != (n, k1) or (dim is not None and feats.shape[2] != dim):
        want = f"({n}, {k1}, {dim if dim is not None else 'd'})"
        raise DataError(f"{path}: features has shape {feats.shape}, expected {want} "
                        f"(n_prompts × (K+1) × dim of manifest.json)")
    if feats.dtype.kind != "f":
        raise DataError(f"{path}: features has dtype {feats.dtype}, expected floating point")
    shapes = {"r_star": (n, k1), "p_offensive": (n, k1), "toxic": (n, k1), "aligned_index": (n,),
              "test_masks": (n_splits, n)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise DataError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape}")
    for key, kind in (("r_star", "f"), ("p_offensive", "f"), ("toxic", "b"), ("aligned_index", "iu"),
                      ("test_masks", "b")):
        if arrays[key].dtype.kind not in kind:
            want = {"f": "floating point", "b": "bool", "iu": "integer"}[kind]
            raise DataError(f"{path}: {key} has dtype {arrays[key].dtype}, expected {want}")
    for key in ("features", "r_star", "p_offensive"):
        bad = ~np.isfinite(arrays[key])
        if bad.any():
            raise DataError(f"{path}: {key} of prompt {_first_bad(bad)} is not finite")
    check_labels(path, arrays, manifest)
    aligned = arrays["aligned_index"]
    if ((aligned < 1) | (aligned > k1 - 1)).any():
        i = _first_bad((aligned < 1) | (aligned > k1 - 1))
        raise DataError(f"{path}: aligned_index of prompt {i} is {int(aligned[i])}, must lie in 1..K = 1..{k1 - 1}")
    masks = arrays["test_masks"]
    counts = masks.sum(axis=1)
    if ((counts == 0) | (counts == n)).any():
        s = int(np.flatnonzero((counts == 0) | (counts == n))[0])
        raise DataError(f"{path}: test_masks split {s} has {int(counts[s])} test prompts of {n} "
                        "(needs both training and test prompts)")
    return arrays


def check_labels(path: Path, arrays: dict, manifest: dict) -> None:
    """p_offensive in [0, 1], toxic = p > the manifest's threshold and r* = logit(1 − p), row by row."""
    p = arrays["p_offensive"]
    if ((p < 0) | (p > 1)).any():
        i = _first_bad((p < 0) | (p > 1))
        raise DataError(f"{path}: p_offensive of prompt {i} lies outside [0, 1]: {p[i].tolist()}")
    from fairl_opt.detox.toxicity import TOXIC_THRESHOLD, reward_from_probability

    threshold = manifest["ground_truth"].get("toxic_threshold", TOXIC_THRESHOLD)
    wrong = arrays["toxic"] != (p > threshold)
    if wrong.any():
        raise DataError(f"{path}: toxic of prompt {_first_bad(wrong)} disagrees with p_offensive > {threshold}")
    wrong = ~np.isclose(arrays["r_star"], reward_from_probability(p), rtol=1e-6, atol=1e-6)
    if wrong.any():
        raise DataError(f"{path}: r_star of prompt {_first_bad(wrong)} is not logit(1 - p_offensive)")


def read_prompts(path: Path, n: int) -> tuple[list, list]:
    from fairl_opt.detox.prompts import iter_jsonl

    prompts, families = [], []
    for lineno, obj in iter_jsonl(path, "prompts file"):
        if not isinstance(obj, dict) or set(obj) != {"id", "family", "text"}:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{path}:{lineno}: expected an object with keys family, id, text; got {got}")
        if not _is_int(obj["id"]) or obj["id"] != len(prompts):
            raise DataError(f"{path}:{lineno}: id is {obj['id']!r}, expected {len(prompts)} (ids count up from 0)")
        if not isinstance(obj["text"], str) or not isinstance(obj["family"], str):
            raise DataError(f"{path}:{lineno}: text and family must be strings")
        if len(prompts) >= n:
            raise DataError(f"{path}:{lineno}: more than n_prompts = {n} prompts")
        prompts.append(obj["text"])
        families.append(obj["family"])
    if len(prompts) != n:
        raise DataError(f"{path}: {len(prompts)} prompts, manifest.json says n_prompts = {n}")
    return prompts, families


def read_completions(path: Path, n: int, k1: int, arrays: dict) -> list:
    """Completion texts [n][K+1]; every (prompt, sample) exactly once, its role, r* and toxic label
    consistent with arrays.npz."""
    from fairl_opt.detox.prompts import iter_jsonl

    keys = {"prompt_id", "sample", "role", "text", "p_offensive", "r_star", "toxic"}
    texts = [[None] * k1 for _ in range(n)]
    aligned, r_star, toxic = arrays["aligned_index"], arrays["r_star"], arrays["toxic"]
    for lineno, obj in iter_jsonl(path, "completions file"):
        if not isinstance(obj, dict) or set(obj) != keys:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{path}:{lineno}: expected an object with keys {', '.join(sorted(keys))}; got {got}")
        i, j = obj["prompt_id"], obj["sample"]
        if not _is_int(i) or not 0 <= i < n:
            raise DataError(f"{path}:{lineno}: prompt_id {i!r} out of range 0..{n - 1}")
        if not _is_int(j) or not 0 <= j < k1:
            raise DataError(f"{path}:{lineno}: sample {j!r} of prompt {i} out of range 0..{k1 - 1} (base + K)")
        if texts[i][j] is not None:
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j} appears twice")
        if not isinstance(obj["text"], str):
            raise DataError(f"{path}:{lineno}: text must be a string, got {type(obj['text']).__name__}")
        role = "base" if j == 0 else ("candidate,aligned" if j == aligned[i] else "candidate")
        if obj["role"] != role:
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j} has role {obj['role']!r}, expected {role!r} "
                            f"(arrays.npz aligned_index {int(aligned[i])})")
        if obj["toxic"] is not bool(toxic[i, j]):
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j} toxic {obj['toxic']!r} disagrees with arrays.npz")
        if not isinstance(obj["r_star"], (int, float)) or not abs(obj["r_star"] - float(r_star[i, j])) <= 1e-5:
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j} r_star {obj['r_star']!r} disagrees with "
                            f"arrays.npz ({float(r_star[i, j]):.6f})")
        texts[i][j] = obj["text"]
    for i, row in enumerate(texts):
        if any(t is None for t in row):
            lacking = [j for j, t in enumerate(row) if t is None]
            raise DataError(f"{path}: prompt {i} is incomplete: no sample(s) {lacking} (needs base + K = {k1})")
    return texts


def read_rows(path: Path, n: int, s: int, arrays: dict) -> list:
    """Texts [n][s] of an added policy's completions.jsonl (:mod:`fairl_opt.detox.policy`): every
    (prompt, sample) exactly once, its r* and toxic label those of the policy's arrays.npz."""
    from fairl_opt.detox.prompts import iter_jsonl

    keys = {"prompt_id", "sample", "text", "p_offensive", "r_star", "toxic"}
    texts = [[None] * s for _ in range(n)]
    for lineno, obj in iter_jsonl(path, "completions file"):
        if not isinstance(obj, dict) or set(obj) != keys:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{path}:{lineno}: expected an object with keys {', '.join(sorted(keys))}; got {got}")
        i, j = obj["prompt_id"], obj["sample"]
        if not (_is_int(i) and 0 <= i < n and _is_int(j) and 0 <= j < s):
            raise DataError(f"{path}:{lineno}: prompt_id {i!r} / sample {j!r} out of range 0..{n - 1} / 0..{s - 1}")
        if texts[i][j] is not None:
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j} appears twice")
        if not isinstance(obj["text"], str):
            raise DataError(f"{path}:{lineno}: text must be a string, got {type(obj['text']).__name__}")
        if obj["toxic"] is not bool(arrays["toxic"][i, j]) or not isinstance(obj["r_star"], (int, float)) \
                or not abs(obj["r_star"] - float(arrays["r_star"][i, j])) <= 1e-5:
            raise DataError(f"{path}:{lineno}: prompt {i} sample {j}: r_star / toxic disagree with arrays.npz")
        texts[i][j] = obj["text"]
    for i, row in enumerate(texts):
        if any(t is None for t in row):
            raise DataError(f"{path}: prompt {i} is incomplete: {row.count(None)} of its {s} samples missing")
    return texts
