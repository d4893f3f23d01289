"""Frozen language models, offline: embed texts and sample completions, resumably.

Which model a name means, its fingerprint, loading it (named models, local and GGUF directories,
PEFT adapters) and chat templates live in :mod:`fairl_opt.models`; the names are re-exported here.
Every function here needs the ``llm`` extra (torch==2.13.0, transformers, gguf); the rest of the
toolkit never imports torch.

Features are the mean of the last hidden state over the tokens the attention mask keeps. Long jobs
(:func:`embed_texts`, :func:`generate_completions`) work in chunks whose results are written to a
cache directory one file per chunk (atomically), so an interrupted run resumes where it stopped and
loses at most the chunk in flight; a progress line goes to stderr. Each chunk is followed by a
checksum record ``<chunk>.meta`` (shape, dtype and sha256 of the array bytes, or sha256 of the JSON
text); a cached chunk is used only after it verifies against its record and its expected size, and
one that does not (damaged bytes, NaN, a wrong shape or sample count, no record) is recomputed, with
``cache: chunk <file> failed verification (<reason>); recomputing`` on stderr.

The chunks are computed by :func:`fairl_opt.jobs.run_chunks`: in ``workers`` local processes, or
with ``scheduler`` (a ``distributed.Client`` or an address, :mod:`fairl_opt.cluster`) on the workers
of a Dask cluster, each of which loads the model once (after checking that its model files have the
driver's fingerprint) and returns its chunks to this process, which writes and verifies the cache.
Results do not depend on where or in how many processes the chunks ran.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from fairl_opt import cluster, jobs
from fairl_opt.exceptions import DataError
from fairl_opt.models import (
    DEFAULT_MODEL,
    NAMED_MODELS,
    ModelSpec,
    _torch,
    chat_template_of,
    load_model,
    load_tokenizer,
    render_chat,
    resolve_model,
)


__all__ = ["DEFAULT_MODEL", "NAMED_MODELS", "ModelSpec", "SamplingConfig", "embed_texts", "generate_completions",
           "load_model", "load_tokenizer", "mean_pooled", "resolve_model", "sample_completions"]


def _spec(model) -> ModelSpec:
    """``model`` as a :class:`ModelSpec` (resolved when given as a name or a path)."""
    return model if isinstance(model, ModelSpec) else resolve_model(model)


# ----------------------------------------------------------------------------------------------
# embedding


def _token_batches(tok, texts, max_length):
    """Token ids of each text; an empty text becomes the single EOS token (so every row has a mean)."""
    ids = tok(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    fallback = tok.eos_token_id if tok.eos_token_id is not None else tok.pad_token_id
    return [row if len(row) else [fallback] for row in ids]


def mean_pooled(model, tok, texts, batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """Mean of the last hidden state over real tokens, for each text (float32, n × hidden).

    Texts are batched by length (less padding); the result is in the input order.
    """
    torch = _torch()
    ids = _token_batches(tok, texts, max_length)
    order = np.argsort([len(r) for r in ids], kind="stable")
    hidden = model.config.hidden_size
    out = np.empty((len(ids), hidden), dtype=np.float32)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for start in range(0, len(ids), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i])] = 1
        with torch.no_grad():
            states = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1)
        out[idx] = pooled.float().numpy()
    if not np.all(np.isfinite(out)):
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise DataError(f"the model produced a non-finite embedding for text {bad}: {texts[bad][:60]!r}")
    return out


@dataclass(frozen=True)
class _ModelOnWorker:
    """The model a chunk job loads (:func:`_load_for_chunks`): spec, the driver's fingerprint of it, and
    whether to load the causal LM; hashable, so it keys the Dask workers' memo."""

    spec: ModelSpec
    fingerprint: str
    causal: bool


def _load_for_chunks(resource: _ModelOnWorker):
    """(tokenizer, model) for a chunk job, in the process that runs the chunks (a local worker or a
    Dask worker). A named model is resolved again here (its package may live elsewhere on this
    machine); the model files here must have the driver's fingerprint, or the features would differ."""
    import socket

    spec = resource.spec
    if not spec.is_adapter and spec.name in NAMED_MODELS and resource.fingerprint.startswith(f"{spec.name}:"):
        spec = resolve_model(spec.name)
    here = spec.fingerprint()
    if here != resource.fingerprint:
        raise DataError(f"model {spec.name} at {spec.path} on {socket.gethostname()} has fingerprint {here}, "
                        f"the driver's has {resource.fingerprint}: install the same model files on every worker")
    return load_tokenizer(spec), load_model(spec, causal=resource.causal)


def _embed_chunk(state, texts, batch_size: int, max_length: int) -> np.ndarray:
    """One embedding chunk: :func:`mean_pooled` of ``texts`` with the loaded (tokenizer, model)."""
    tok, net = state
    return mean_pooled(net, tok, texts, batch_size=batch_size, max_length=max_length)


def _save_npy_chunk(paths, c: int, arr) -> None:
    """Chunk ``c``'s array and its checksum record (:func:`fairl_opt.jobs.save_npy`)."""
    jobs.save_npy(paths[c], arr)


def _expected_width(spec: ModelSpec) -> int | None:
    """The hidden size a transformers model directory (an adapter's base) declares in config.json
    (None if it does not)."""
    spec = spec.base if spec.is_adapter else spec
    config = spec.path / "config.json"
    if spec.gguf_file or not config.is_file():
        return None
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(cfg, dict) and isinstance(cfg.get(key), int) and cfg[key] > 0:
            return int(cfg[key])
    return None


def _odd_widths(arrays: dict, width: int | None) -> list[tuple[int, str]]:
    """(chunk, reason) for cached chunks whose width is not ``width`` (when None: not the width most
    chunks share; every chunk, when no width has a strict majority)."""
    widths = {c: a.shape[1] for c, a in arrays.items()}
    if width is None:
        if len(set(widths.values())) <= 1:
            return []
        values = sorted(widths.values())
        top = max(set(values), key=lambda w: (values.count(w), -w))
        if 2 * values.count(top) <= len(values):
            return [(c, f"widths {sorted(set(values))} disagree between chunks") for c in widths]
        return [(c, f"width {w}, the other chunks have {top}") for c, w in widths.items() if w != top]
    return [(c, f"width {w}, the model's hidden size is {width}") for c, w in widths.items() if w != width]


def _check_executor(workers, scheduler) -> None:
    """DataError for ``workers`` below 1, or above 1 together with a ``scheduler``."""
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    if workers > 1 and scheduler is not None:
        raise DataError(f"workers={workers} and a scheduler: choose one (local processes or Dask workers)")


def embed_texts(texts, model: str | ModelSpec = DEFAULT_MODEL, cache_dir=None, chunk_size: int = 256,
                batch_size: int = 32, max_length: int = 128, workers: int = 1, progress=True,
                scheduler=None) -> np.ndarray:
    """Frozen features of ``texts`` (float32, n × hidden) from ``model``; resumable through ``cache_dir``.

    Each chunk of ``chunk_size`` texts is written to ``cache_dir`` as ``emb-<key>.npy`` where the key
    hashes the model, pooling settings and the chunk's texts, so a rerun after an interrupt (or with
    more texts appended) recomputes only what is missing, and a changed text is never served stale.
    After each chunk, its checksum record ``emb-<key>.npy.meta`` (shape, dtype, sha256 of the array
    bytes) is written. A cached chunk is used only when it matches its record, has one finite row per
    text and the model's width; any other is recomputed, with a line on stderr naming it
    (``cache: chunk <file> failed verification (<reason>); recomputing``). ``workers`` processes
    (one thread each) share the chunks; or, with ``scheduler`` (a ``distributed.Client``, or an
    address that :func:`fairl_opt.cluster.connect` opens and closes), the workers of a Dask cluster,
    each loading the model once; the cache stays in this process either way, and the features are
    the same bit for bit.
    """
    texts = [str(t) for t in texts]
    if not texts:
        raise DataError("texts is empty: nothing to embed")
    _check_executor(workers, scheduler)
    if chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    spec = _spec(model)
    cache, tmp = jobs.open_cache(cache_dir, "fairl-embed-")
    try:
        with cluster.client_for(scheduler) as client:
            return _embed_cached(texts, spec, cache, chunk_size, batch_size, max_length, workers, progress, client)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _embed_cached(texts, spec, cache, chunk_size, batch_size, max_length, workers, progress, client):
    """:func:`embed_texts` on an open ``cache``: verify the cached chunks, compute the rest
    (:func:`fairl_opt.jobs.run_chunks`, on ``client``'s workers when given) and concatenate."""
    chunks = [texts[s:s + chunk_size] for s in range(0, len(texts), chunk_size)]
    fingerprint = spec.fingerprint()
    keys = [jobs.chunk_key("embed-v2", fingerprint, max_length, chunk) for chunk in chunks]
    paths = [cache / f"emb-{key}.npy" for key in keys]
    width = _expected_width(spec)

    def load(c):
        return jobs.load_npy(paths[c], len(chunks[c]), width)

    arrays, todo = jobs.verified_chunks(paths, load)
    # with an unknown width and chunks to compute, the fresh chunks settle the width (below)
    for c, reason in (_odd_widths(arrays, width) if width is not None or not todo else []):
        jobs.drop_chunk(paths[c], reason)
        del arrays[c]
        todo.append(c)
    todo.sort()
    cached = sum(len(chunks[c]) for c in arrays)
    bar = jobs.Progress(f"embed [{spec.name}]", len(texts), "texts", resumed=cached) if progress else None
    if bar and cached:
        print(f"embed [{spec.name}]: resuming, {cached} texts cached in {cache}", file=bar.stream)

    def done():
        return sum(len(chunk) for chunk, p in zip(chunks, paths) if jobs.record_path(p).exists())

    work = jobs.ChunkWork(_load_for_chunks, _ModelOnWorker(spec, fingerprint, False),
                          functools.partial(_embed_chunk, batch_size=batch_size, max_length=max_length))

    def run(todo):
        jobs.run_chunks(work, {c: chunks[c] for c in todo}, functools.partial(_save_npy_chunk, paths),
                        workers=workers, client=client, poll=lambda: bar.update(done()) if bar else None,
                        on_saved=lambda c: bar.update(bar.done + len(chunks[c])) if bar else None)
        return jobs.load_fresh(paths, todo, load)

    if todo:
        fresh = run(todo)
        if width is None:  # the model's width is now known: cached chunks must share it
            width = next(iter(fresh.values())).shape[1]
            odd = _odd_widths(arrays, width)
            for c, reason in odd:
                jobs.drop_chunk(paths[c], reason)
                del arrays[c]
            if odd:
                if bar:
                    bar.resumed -= sum(len(chunks[c]) for c, _ in odd)
                fresh.update(run(sorted(c for c, _ in odd)))
        arrays.update(fresh)
    if bar:
        bar.update(len(texts), force=True)
    return np.concatenate([arrays[c] for c in range(len(chunks))], axis=0)


# ----------------------------------------------------------------------------------------------
# generation


@dataclass(frozen=True)
class SamplingConfig:
    """Pure ancestral sampling from the base model (no top-k, no nucleus cut, temperature 1)."""

    max_new_tokens: int = 30
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        import math

        def bad(name, rule):
            raise DataError(f"sampling: {name} must be {rule}, got {getattr(self, name)!r}")

        for name in ("max_new_tokens", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (name == "max_new_tokens"):
                bad(name, "an integer >= 1" if name == "max_new_tokens" else "an integer >= 0 (0 = off)")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            bad("temperature", "a finite number > 0")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            bad("top_p", "in (0, 1]")

    def as_dict(self) -> dict:
        return dict(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                    top_p=self.top_p, top_k=self.top_k)


def sample_completions(model, tok, prompts, n_samples: int, seed: int, config: SamplingConfig,
                       chat_template: bool = False) -> list[list[str]]:
    """``n_samples`` independent continuations of each prompt: of its raw text, or with
    ``chat_template`` of :func:`fairl_opt.models.render_chat` (the reply to one user turn, tokenized
    without adding special tokens again: the template writes its own).

    One ``generate`` call over ``len(prompts) × n_samples`` left-padded rows, seeded with ``seed``.
    """
    torch = _torch()
    tok.padding_side = "left"
    texts = render_chat(tok, prompts) if chat_template else list(prompts)
    rows = [p for p in texts for _ in range(n_samples)]
    enc = tok(rows, return_tensors="pt", padding=True, **({"add_special_tokens": False} if chat_template else {}))
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=True, pad_token_id=tok.pad_token_id, **config.as_dict()
        )
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [texts[i * n_samples:(i + 1) * n_samples] for i in range(len(prompts))]


def _sample_chunk(state, payload, n_samples: int, seed: int, config: SamplingConfig, chat: bool):
    """One generation chunk, ``payload = (c, prompts)``: :func:`sample_completions` seeded with
    ``seed·1000003 + c``."""
    tok, net = state
    c, batch = payload
    return sample_completions(net, tok, batch, n_samples, seed * 1_000_003 + c, config,
                              **({"chat_template": True} if chat else {}))


def _save_samples_chunk(paths, n_samples: int, c: int, texts) -> None:
    """Chunk ``c``'s samples and their checksum record (:func:`fairl_opt.jobs.save_json`)."""
    jobs.save_json(paths[c], texts, n_prompts=len(texts), n_samples=n_samples)


def generate_completions(prompts, n_samples: int, model: str | ModelSpec = DEFAULT_MODEL, cache_dir=None,
                         seed: int = 0, config: SamplingConfig = SamplingConfig(), chunk_prompts: int = 8,
                         workers: int = 1, progress=True, chat_template: bool = False,
                         scheduler=None) -> list[list[str]]:
    """``n_samples`` sampled completions for each prompt, resumable through ``cache_dir``.

    Prompts are cut into chunks of ``chunk_prompts``; chunk ``c`` is sampled with torch seed
    ``seed·1000003 + c`` and stored as ``gen-<key>.json`` (key = model, settings, seed, chunk index and
    the chunk's prompts), so results do not depend on ``workers`` or on interruptions. After each
    chunk its checksum record ``gen-<key>.json.meta`` (sha256 of the JSON text, prompt and sample
    counts) is written; a cached chunk that does not match it, or does not hold ``n_samples`` strings
    for each of its prompts, is recomputed with a line on stderr naming it. ``workers`` processes
    (one thread each) share the chunks, or the workers of the Dask cluster at ``scheduler``
    (as in :func:`embed_texts`); the parent reports progress.

    With ``chat_template`` each prompt is rendered through the tokenizer's chat template
    (:func:`sample_completions`) and the template's sha256 joins the chunk key; without it the keys
    and results are those of earlier versions. ``model`` is a name, a path or a resolved
    :class:`~fairl_opt.models.ModelSpec`.

    Raises
    ------
    DataError
        On no prompts, a count below 1, an unknown model, or ``chat_template`` with a tokenizer that
        has none (checked before any model loads).
    """
    prompts = [str(p) for p in prompts]
    if not prompts:
        raise DataError("prompts is empty: nothing to generate")
    if n_samples < 1:
        raise DataError(f"n_samples must be >= 1, got {n_samples}")
    if chunk_prompts < 1:
        raise DataError(f"chunk_prompts must be >= 1, got {chunk_prompts}")
    _check_executor(workers, scheduler)
    spec = _spec(model)
    template = None
    if chat_template:
        template = hashlib.sha256(chat_template_of(load_tokenizer(spec), spec).encode()).hexdigest()
    cache, tmp = jobs.open_cache(cache_dir, "fairl-gen-")
    try:
        with cluster.client_for(scheduler) as client:
            return _generate_cached(prompts, n_samples, spec, cache, seed, config, chunk_prompts, workers,
                                    progress, template, client)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _generate_cached(prompts, n_samples, spec, cache, seed, config, chunk_prompts, workers, progress, template,
                     client):
    """:func:`generate_completions` on an open ``cache``: verify the cached chunks, sample the rest."""
    n_chunks = (len(prompts) + chunk_prompts - 1) // chunk_prompts
    sizes = [len(prompts[c * chunk_prompts:(c + 1) * chunk_prompts]) for c in range(n_chunks)]
    fingerprint = spec.fingerprint()
    extra = [{"chat_template": template}] if template is not None else []  # none: the keys of before
    keys = [
        jobs.chunk_key("gen-v2", fingerprint, config.as_dict(), seed, c, n_samples,
                       prompts[c * chunk_prompts:(c + 1) * chunk_prompts], *extra)
        for c in range(n_chunks)
    ]
    paths = [cache / f"gen-{k}.json" for k in keys]

    def load(c):
        return jobs.load_samples(paths[c], sizes[c], n_samples)

    def done():
        return sum(size for size, p in zip(sizes, paths) if jobs.record_path(p).exists())

    results, todo = jobs.verified_chunks(paths, load)
    cached = sum(sizes[c] for c in results)
    bar = jobs.Progress(f"generate [{spec.name}]", len(prompts), "prompts", resumed=cached) if progress else None
    if bar and results:
        print(f"generate: resuming, {len(results)}/{n_chunks} chunks cached in {cache}", file=bar.stream)
    if todo:
        work = jobs.ChunkWork(_load_for_chunks, _ModelOnWorker(spec, fingerprint, True),
                              functools.partial(_sample_chunk, n_samples=n_samples, seed=seed, config=config,
                                                chat=template is not None))
        batches = {c: (c, prompts[c * chunk_prompts:(c + 1) * chunk_prompts]) for c in todo}
        jobs.run_chunks(work, batches, functools.partial(_save_samples_chunk, paths, n_samples), workers=workers,
                        client=client, poll=lambda: bar.update(done()) if bar else None,
                        on_saved=lambda c: bar.update(bar.done + sizes[c]) if bar else None)
        results.update(jobs.load_fresh(paths, todo, load))
    if bar:
        bar.update(len(prompts), force=True)
    return [row for c in range(n_chunks) for row in results[c]]
