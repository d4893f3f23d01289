"""Further aligned policies of a detox dataset: a trained model's samples, their r* and features, and
a DPO model's implicit reward β·log π_θ(y|x)/π_ref(y|x) (``fairl detox add-policy``).

A dataset's own aligned policy is the SIR draw among its K candidates (the exact KL-regularised
optimum as K grows). :func:`add_policy` adds another one — any model :func:`fairl_opt.models.resolve_model`
accepts, typically the DPO adapter ``fairl detox train`` wrote — on the same prompts:

1. sample ``samples`` completions per prompt from it exactly as the dataset's base completions were
   sampled (:func:`fairl_opt.lm.generate_completions`, the dataset's sampling settings, template and
   seed: prompt i's first sample uses the random stream of its base completion, so the two differ
   by the model alone);
2. score them with r* (:mod:`fairl_opt.detox.toxicity`) and embed them with the dataset's feature model;
3. for an adapter, its implicit reward (:func:`implicit_rewards`, the tokenization of training) on the
   policy's samples and on the dataset's base (j = 0) and SIR-aligned (j = aligned_index) completions
   of every prompt; the other candidates are not scored (NaN), to halve the cost.

Files, in ``<dataset>/policies/<name>/`` (no pickle): ``completions.jsonl`` (prompt id, sample, text,
p_offensive, r_star, toxic), ``arrays.npz`` (features float16 (n, S, d), r_star, p_offensive, toxic
(n, S), and for an adapter ``implicit_reward`` (n, S) and ``implicit_reward_data`` (n, K+1), NaN where
not computed) and ``policy.json`` (model, fingerprint, sampling, seeds, β, rates, cost, versions and
the sha256 of both files). The dataset's ``manifest.json`` lists each policy with the sha256 of its
``policy.json`` (key ``policies``); :meth:`DetoxDataset.load <fairl_opt.detox.dataset.DetoxDataset.load>`
verifies the chain and checks every array against the dataset.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairl_opt import jobs
from fairl_opt._io import atomic_write_text, sha256_file
from fairl_opt.exceptions import DataError

POLICY_DIR = "policies"
POLICY_FILES = ("completions.jsonl", "arrays.npz")
POLICY_KEYS = ("name", "created", "model", "fingerprint", "samples", "seed", "sampling", "template",
               "implicit_reward", "rates", "cost", "versions", "files")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: Where the implicit reward is computed (``policy.json`` ``implicit_reward.computed_on``).
IMPLICIT_ON = "the policy's samples, and the dataset's base (j = 0) and SIR-aligned (j = aligned_index) completions"


@dataclass
class PolicySamples:
    """One added policy of a dataset, loaded and checked: ``samples`` completions per prompt."""

    name: str
    features: np.ndarray                  # (n, S, d) float64
    r_star: np.ndarray                    # (n, S)
    toxic: np.ndarray                     # (n, S) bool
    texts: list = field(default_factory=list)        # [n][S]
    implicit: np.ndarray | None = None    # (n, S): the implicit reward of its own samples
    implicit_data: np.ndarray | None = None  # (n, K+1): of the dataset's completions, NaN where not computed
    meta: dict = field(default_factory=dict)

    def subset(self, keep) -> "PolicySamples":
        """The same policy on prompts ``keep`` (indices)."""
        keep = np.asarray(keep)
        pick = (lambda a: None if a is None else a[keep])
        return PolicySamples(self.name, self.features[keep], self.r_star[keep], self.toxic[keep],
                             [self.texts[i] for i in keep], pick(self.implicit), pick(self.implicit_data), self.meta)


def check_implicit_args(adapter, prompts, completions, beta, chat_template=None, max_length=None):
    """(adapter spec, chat_template, max_length) of an implicit-reward call, checked (see :func:`implicit_reward`)."""
    from fairl_opt.models import ModelSpec, resolve_model

    spec = adapter if isinstance(adapter, ModelSpec) else resolve_model(adapter)
    if not spec.is_adapter:
        raise DataError(f"model {spec.name}: not an adapter, so it has no implicit reward against a base")
    if not len(prompts) or len(prompts) != len(completions):
        raise DataError(f"prompts and completions must be non-empty and of one length, got {len(prompts)} "
                        f"and {len(completions)}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise DataError(f"beta must be a finite number > 0, got {beta!r}")
    prov = spec.path / "provenance.json"
    tokenization = json.loads(prov.read_text(encoding="utf-8")).get("tokenization", {}) if prov.is_file() else {}
    chat = bool(tokenization.get("chat_template", False)) if chat_template is None else chat_template
    return spec, chat, tokenization.get("max_length") if max_length is None else max_length


def implicit_reward(model_spec_or_adapter_dir, prompts, completions, *, beta: float, batch_size: int = 8,
                    chat_template: bool | None = None, max_length: int | None = None) -> np.ndarray:
    """β·(log π_θ(y|x) − log π_ref(y|x)) for each (prompt, completion), the log-probabilities summed
    over the completion's tokens; π_θ = the adapter model, π_ref = its base (adapter disabled): the DPO
    model's own implicit reward. Tokenized as in training (:func:`encode`); ``chat_template`` and
    ``max_length`` default to the adapter's provenance.json (else raw text, no cut).

    Raises
    ------
    DataError
        Not an adapter, empty lists or lists of two lengths, β ≤ 0, or a row without tokens.
    """
    from fairl_opt.detox.train import completion_logps, encode
    from fairl_opt.models import load_model, load_tokenizer

    spec, chat, max_length = check_implicit_args(model_spec_or_adapter_dir, prompts, completions, beta,
                                                 chat_template, max_length)
    prompts, completions = [str(p) for p in prompts], [str(c) for c in completions]
    tok = load_tokenizer(spec)
    rows = [encode(tok, p, c, chat, max_length) for p, c in zip(prompts, completions)]
    for j, (p, c) in enumerate(rows):
        if not p or not c:
            raise DataError(f"row {j}: the {'prompt' if not p else 'completion'} has no tokens")
    model = load_model(spec, causal=True, merge=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    policy = completion_logps(model, rows, pad, batch_size)
    with model.disable_adapter():
        return beta * (policy - completion_logps(model, rows, pad, batch_size))


# -- implicit reward as a resumable job -------------------------------------------------------------
def _implicit_worker(args):
    from fairl_opt.detox.train import completion_logps
    from fairl_opt.models import load_model, load_tokenizer

    worker, n_workers, spec, chunks, keys, todo, cache, beta, batch_size = args
    mine = todo[worker::n_workers]
    if not mine:
        return worker
    tok = load_tokenizer(spec)
    model = load_model(spec, causal=True, merge=False)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for c in mine:
        policy = completion_logps(model, chunks[c], pad, batch_size)
        with model.disable_adapter():
            ref = completion_logps(model, chunks[c], pad, batch_size)
        jobs.save_npy(cache / f"imp-{keys[c]}.npy", (beta * (policy - ref)).astype(np.float32)[:, None])
    return worker


def implicit_rewards(adapter, prompts, completions, *, beta: float, cache_dir=None, workers: int = 1,
                     chunk_size: int = 64, batch_size: int = 8, progress=True) -> np.ndarray:
    """:func:`implicit_reward` as a resumable chunk job (:mod:`fairl_opt.jobs`):
    chunks of ``chunk_size`` rows cached in ``cache_dir`` under a key of the adapter's fingerprint, β,
    the tokenization and the rows' token ids, ``workers`` processes, a progress bar. float32 values
    (the cache's format), returned as float64. Same values as ``implicit_reward`` to float32 rounding."""
    from fairl_opt.detox.train import encode
    from fairl_opt.models import load_tokenizer

    spec, chat, max_length = check_implicit_args(adapter, prompts, completions, beta)
    tok = load_tokenizer(spec)
    rows = [encode(tok, p, c, chat, max_length) for p, c in zip(prompts, completions)]
    for j, (p, c) in enumerate(rows):
        if not p or not c:
            raise DataError(f"row {j}: the {'prompt' if not p else 'completion'} has no tokens")
    chunks = [rows[s:s + chunk_size] for s in range(0, len(rows), chunk_size)]
    keys = [jobs.chunk_key("implicit-v1", spec.fingerprint(), float(beta), [[list(p), list(c)] for p, c in ch])
            for ch in chunks]
    cache, tmp = jobs.open_cache(cache_dir, "fairl-implicit-")
    try:
        paths = [cache / f"imp-{k}.npy" for k in keys]

        def load(c):
            return jobs.load_npy(paths[c], len(chunks[c]), 1)

        arrays, todo = jobs.verified_chunks(paths, load)
        cached = sum(len(chunks[c]) for c in arrays)
        bar = jobs.Progress(f"implicit reward [{spec.name}]", len(rows), "texts", resumed=cached) if progress else None
        if todo:
            work = [(w, workers, spec, chunks, keys, todo, cache, float(beta), batch_size)
                    for w in range(min(workers, len(todo)))]
            done = lambda: sum(len(chunks[c]) for c in range(len(chunks)) if jobs.record_path(paths[c]).exists())  # noqa: E731
            jobs.run_sharded(_implicit_worker, work, lambda: bar.update(done()) if bar else None)
            arrays.update(jobs.load_fresh(paths, todo, load))
        if bar:
            bar.update(len(rows), force=True)
        return np.concatenate([arrays[c][:, 0] for c in range(len(chunks))]).astype(np.float64)
    finally:
        if tmp is not None:
            tmp.cleanup()


# -- adding, writing and reading a policy -----------------------------------------------------------
def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name) or name == "sir":
        raise DataError(f"policy name {name!r}: use 1-32 lowercase letters, digits, '-' or '_', starting with a "
                        "letter ('sir' is the dataset's own aligned policy)")
    return name


def dataset_feature_model(manifest: dict, data_dir="the dataset"):
    """The feature model a dataset was embedded with (its manifest's ``feature_model``): the named
    model, else the recorded folder, resolved (a DataError when it is not here)."""
    from fairl_opt.models import NAMED_MODELS, resolve_model

    fm = manifest.get("feature_model", {})
    target = fm.get("name") if fm.get("name") in NAMED_MODELS else fm.get("path")
    if not target:
        raise DataError(f"{data_dir}: manifest.json names no feature model to embed new completions with")
    try:
        return resolve_model(target)
    except DataError as exc:
        raise DataError(f"{data_dir}: its feature model {target}: {exc}") from None


def add_policy(data_dir, name: str, model: str, *, samples: int = 1, workers: int = 1, beta: float | None = None,
               cache_dir=None, progress=True, force: bool = False, log=print, scheduler=None) -> dict:
    """Sample, score, embed (and for an adapter, score by its implicit reward with ``beta``, default
    its provenance's β) policy ``name`` = ``model`` on every prompt of the dataset in ``data_dir``; write
    ``<data_dir>/policies/<name>/`` and list it in the manifest. Returns ``policy.json``'s content.
    ``scheduler`` (a ``distributed.Client``): the sampling and embedding chunks on a Dask cluster (the
    implicit reward's log-probabilities stay in local processes)."""
    from fairl_opt.detox.dataset import TEMPLATES, DetoxDataset, _versions
    from fairl_opt.detox.toxicity import true_reward
    from fairl_opt.lm import SamplingConfig, embed_texts, generate_completions
    from fairl_opt.models import check_adapter, resolve_model

    check_name(name)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise DataError(f"samples must be an integer >= 1, got {samples!r}")
    data_dir = Path(data_dir)
    ds = DetoxDataset.load(data_dir)
    if name in ds.policies and not force:
        raise DataError(f"{data_dir}: already has policy {name!r} (force replaces it)")
    spec = resolve_model(model)
    check_adapter(spec, causal=True)
    feat = dataset_feature_model(ds.manifest, data_dir)
    gen = ds.manifest["generator"]
    config = SamplingConfig(**gen["sampling"])
    chat = gen.get("template") == TEMPLATES[True]
    if spec.is_adapter and beta is None:
        prov = spec.path / "provenance.json"
        beta = json.loads(prov.read_text(encoding="utf-8"))["hyperparameters"]["beta"] if prov.is_file() else None
        if beta is None:
            raise DataError(f"model {model}: an adapter without provenance.json; pass beta")
    cache = Path(cache_dir) if cache_dir is not None else data_dir / ".cache"
    n, seed = ds.n_prompts, int(ds.manifest["seed"])

    t0 = time.perf_counter()
    texts = generate_completions(ds.prompts, samples, model=spec, cache_dir=cache / f"policy-{name}", seed=seed,
                                 config=config, chunk_prompts=max(1, 64 // samples), workers=workers,
                                 progress=progress, chat_template=chat, scheduler=scheduler)
    t_gen = time.perf_counter() - t0
    flat = [t for row in texts for t in row]
    r_star, toxic, p_off = (a.reshape(n, samples) for a in true_reward(flat))
    t1 = time.perf_counter()
    features = embed_texts(flat, model=feat, cache_dir=cache / "embed", workers=workers,
                           progress=progress, scheduler=scheduler).reshape(n, samples, -1)
    t_emb = time.perf_counter() - t1
    implicit = implicit_data = None
    t2 = time.perf_counter()
    if spec.is_adapter:
        rows = np.arange(n)
        prompts = [ds.prompts[i] for i in range(n) for _ in range(samples)]
        prompts += ds.prompts + ds.prompts
        comps = flat + [ds.texts[i][0] for i in rows] + [ds.texts[i][ds.aligned_index[i]] for i in rows]
        values = implicit_rewards(spec, prompts, comps, beta=beta, cache_dir=cache / f"implicit-{name}",
                                  workers=workers, progress=progress)
        implicit = values[:n * samples].reshape(n, samples)
        implicit_data = np.full((n, ds.K + 1), np.nan)
        implicit_data[rows, 0] = values[n * samples:n * samples + n]
        implicit_data[rows, ds.aligned_index] = values[n * samples + n:]
    t_imp = time.perf_counter() - t2
    fam = np.asarray(ds.families)
    meta = {
        "name": name, "model": spec.describe(), "fingerprint": spec.fingerprint(), "samples": samples, "seed": seed,
        "sampling": config.as_dict(), "template": gen.get("template", TEMPLATES[False]),
        "implicit_reward": None if implicit is None else {
            "beta": float(beta), "computed_on": IMPLICIT_ON,
            "definition": "beta * (log pi_theta(y|x) - log pi_ref(y|x)), summed over the completion's tokens "
                          "(fairl_opt.detox.train.encode; pi_ref = the base, adapter disabled)"},
        "rates": {"toxic": float(toxic.mean()),
                  "toxic_by_family": {f: float(toxic[fam == f].mean()) for f in sorted(set(ds.families))},
                  "base_toxic_same_prompts": float(ds.toxic[:, 0].mean())},
        "cost": {"generate_seconds": round(t_gen, 1), "embed_seconds": round(t_emb, 1),
                 "implicit_seconds": round(t_imp, 1), "workers": workers},
        "versions": _versions(),
    }
    write_policy(data_dir, meta, texts, features, r_star, p_off, toxic, implicit, implicit_data)
    log(f"added policy {name} ({spec.name}) to {data_dir}: toxic {meta['rates']['toxic']:.3f} "
        f"(base {meta['rates']['base_toxic_same_prompts']:.3f})")
    return json.loads((data_dir / POLICY_DIR / name / "policy.json").read_text(encoding="utf-8"))


def write_policy(data_dir, meta: dict, texts, features, r_star, p_off, toxic, implicit=None, implicit_data=None):
    """Write a policy's files, then list it (the sha256 of its policy.json) in the dataset's manifest."""
    data_dir = Path(data_dir)
    out = data_dir / POLICY_DIR / meta["name"]
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"prompt_id": i, "sample": j, "text": texts[i][j],
                         "p_offensive": round(float(p_off[i, j]), 6), "r_star": round(float(r_star[i, j]), 6),
                         "toxic": bool(toxic[i, j])}, ensure_ascii=False)
             for i in range(len(texts)) for j in range(len(texts[i]))]
    atomic_write_text(out / "completions.jsonl", "\n".join(lines) + "\n")
    arrays = {"features": np.asarray(features, dtype=np.float16), "r_star": r_star, "p_offensive": p_off,
              "toxic": np.asarray(toxic, dtype=bool)}
    if implicit is not None:
        arrays.update(implicit_reward=implicit, implicit_reward_data=implicit_data)
    tmp = out / "arrays.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / "arrays.npz")
    meta = dict(meta)
    meta.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    meta["files"] = {f: {"sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in POLICY_FILES}
    meta = {k: meta[k] for k in POLICY_KEYS}
    atomic_write_text(out / "policy.json", json.dumps(meta, indent=2) + "\n")
    man_path = data_dir / "manifest.json"
    manifest = json.loads(man_path.read_text(encoding="utf-8"))
    manifest.setdefault("policies", {})[meta["name"]] = sha256_file(out / "policy.json")
    atomic_write_text(man_path, json.dumps(manifest, indent=2) + "\n")


def load_policies(data_dir, manifest: dict, n: int, k1: int, dim: int, verify: bool = True) -> dict:
    """{name: :class:`PolicySamples`} of the policies ``manifest`` lists, each checked: its
    policy.json's sha256 (with ``verify``), its form, its files' sha256, every array's shape, dtype and
    finiteness, r* = logit(1 − p), labels, and completions.jsonl against arrays.npz."""
    from fairl_opt.detox.files import check_labels, read_rows

    listed = manifest.get("policies", {})
    if not isinstance(listed, dict):
        raise DataError(f"{data_dir}/manifest.json: policies must map names to sha256, got {type(listed).__name__}")
    out = {}
    for name, digest in listed.items():
        where = Path(data_dir) / POLICY_DIR / str(name)
        path = where / "policy.json"
        if not path.is_file():
            raise DataError(f"{path} is missing (manifest.json lists policy {name!r})")
        if verify and sha256_file(path) != digest:
            raise DataError(f"{path} does not match the sha256 in manifest.json (altered or replaced)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or sorted(meta) != sorted(POLICY_KEYS) or meta["name"] != name:
            raise DataError(f"{path}: expected an object with keys {', '.join(POLICY_KEYS)} and name {name!r}")
        for f in POLICY_FILES:
            entry = meta["files"].get(f) if isinstance(meta["files"], dict) else None
            if not (where / f).is_file():
                raise DataError(f"{where / f} is missing (listed in {path})")
            if verify and (not isinstance(entry, dict) or sha256_file(where / f) != entry.get("sha256")):
                raise DataError(f"{where / f} does not match the sha256 in {path} (altered or truncated)")
        s = meta["samples"]
        try:
            with np.load(where / "arrays.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise DataError(f"{where / 'arrays.npz'}: not a readable .npz ({type(exc).__name__}: {exc})") from None
        want = {"features": (n, s, dim), "r_star": (n, s), "p_offensive": (n, s), "toxic": (n, s)}
        if meta["implicit_reward"] is not None:
            want.update(implicit_reward=(n, s), implicit_reward_data=(n, k1))
        if sorted(arrays) != sorted(want):
            raise DataError(f"{where / 'arrays.npz'}: arrays {sorted(arrays)}, expected {sorted(want)}")
        for key, shape in want.items():
            if arrays[key].shape != shape:
                raise DataError(f"{where / 'arrays.npz'}: {key} has shape {arrays[key].shape}, expected {shape}")
            bad = ~np.isfinite(arrays[key]) if key not in ("toxic", "implicit_reward_data") else None
            if bad is not None and bad.any():
                raise DataError(f"{where / 'arrays.npz'}: {key} of prompt {int(np.argwhere(bad)[0][0])} is not finite")
        check_labels(where / "arrays.npz", arrays, manifest)
        texts = read_rows(where / "completions.jsonl", n, s, arrays)
        implicit_data = arrays.get("implicit_reward_data")
        if implicit_data is not None and (np.isinf(implicit_data).any() or np.isnan(implicit_data[:, 0]).any()):
            raise DataError(f"{where / 'arrays.npz'}: implicit_reward_data must be finite on every base completion")
        out[name] = PolicySamples(name, arrays["features"].astype(np.float64), arrays["r_star"], arrays["toxic"],
                                  texts, arrays.get("implicit_reward"), implicit_data, meta)
    return out
