"""Preference pairs from two models: ``fairl generate --base MODEL --aligned MODEL --prompts FILE
--out pairs.jsonl``.

Each prompt gets ``--n-samples`` completions from each model (:func:`fairl_opt.lm.generate_completions`,
the same seeds for both, so that the two sides differ only by the model), and sample k of the
aligned model is paired with sample k of the base: the aligned completion is ``chosen``, the base's
``rejected``. A pair whose two sides are the same text carries no preference, and one with an empty
side (a model that stopped at once) is a row ``fairl pairs`` refuses: both are dropped and counted. A model is anything :func:`fairl_opt.models.resolve_model` accepts (``smollm2``, a local
transformers or GGUF directory, a PEFT/LoRA adapter directory, ``BASE+ADAPTER_DIR``). With
``--chat-template`` each prompt is rendered as one user turn through each model's own chat template.

Every check runs before a model loads: the output, metadata and cache paths, the prompts file, both
models (an adapter's tensors against its base's modules), that they are two different models, the
sampling settings and, with ``--chat-template``, that both tokenizers have one. Generation goes
through the chunk cache (``--cache-dir``, default ``<out>.cache``): an interrupted run, rerun with
the same arguments, recomputes only the chunks that are missing and writes the same file.

Prompts file: ``.txt`` (one prompt per line; a blank line is an error) or ``.jsonl`` (one object a
line with a string ``prompt`` or ``text``, or RealToxicityPrompts' ``{"prompt": {"text": ...}}``;
blank lines are skipped). An empty prompt or a repeated one is an error naming the line.

Output, ``--out`` (JSONL, one pair a line, the standard preference layout that
``datasets.load_dataset("json", data_files=...)`` and ``fairl pairs`` read), in prompt order then
sample order:

* ``prompt`` — the prompt as written in the prompts file (not the rendered chat template);
* ``chosen`` — the aligned model's completion; ``rejected`` — the base model's;
* ``prompt_id`` — the prompt's position among the prompts (0-based), shared by its pairs;
* ``sample`` — k, the sample index (0 .. n_samples-1) of both sides.

Metadata, ``<out>.meta.json`` (written after the pairs; both atomically, a stale one removed first,
so a pairs file without its metadata is from an unfinished run):

* ``format`` — ``"fairl generate v1"``; ``created`` — UTC time, ISO 8601; ``fairl_version``;
* ``pairs_file`` — ``path``, ``sha256`` and ``bytes`` of the pairs file;
* ``layout`` — ``chosen`` (``"aligned"``), ``rejected`` (``"base"``), ``fields`` of each row;
* ``prompts`` — ``file``, ``sha256`` (of its bytes), ``format`` (``txt`` or ``jsonl``), ``n_prompts``;
* ``models`` — ``base`` and ``aligned``: the model as given (``given``), its description
  (``name``, ``path``, ``gguf_file``; for an adapter also ``peft_type`` and ``base``), its
  ``fingerprint`` and, with the chat template on, ``chat_template_sha256``;
* ``sampling`` — ``n_samples``, ``seed``, ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``
  (0 = off), ``chat_template`` (true/false), ``chunk_prompts`` and ``seeding`` (how seeds are derived);
* ``counts`` — ``n_prompts``, ``n_samples``, ``n_candidates`` (prompts × samples), ``n_pairs``,
  ``n_identical_dropped``, ``n_empty_dropped``;
* ``run`` — :func:`fairl_opt._json.run_record` (command, version, inputs, every parameter).

Printed on stdout (one JSON object): ``out`` and ``meta`` (the two paths written), ``cache``,
``n_prompts``, ``n_samples``, ``n_pairs``, ``n_identical_dropped``, ``n_empty_dropped``, ``models``
(as in the metadata)
and ``run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from fairl_opt._io import (
    atomic_write_text,
    check_output_dir,
    check_output_path,
    decode_utf8,
    iter_jsonl,
    sha256_file,
)
from fairl_opt.exceptions import DataError
from fairl_opt.lm import SamplingConfig, generate_completions
from fairl_opt.models import ModelSpec, chat_template_of, check_adapter, load_tokenizer, resolve_model

log = logging.getLogger(__name__)

FORMAT = "fairl generate v1"
FIELDS = ("prompt", "chosen", "rejected", "prompt_id", "sample")
SEEDING = "both models, chunk c of chunk_prompts prompts: torch seed seed*1000003 + c"


def read_prompts(path) -> tuple[list[str], str]:
    """(prompts, "txt" or "jsonl") of a prompts file (see the module docstring).

    Raises
    ------
    DataError
        Naming the file and line: missing, not UTF-8, not JSON, no prompt field, an empty or
        repeated prompt, or no prompt at all.
    """
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl", ""):
        raise DataError(f"--prompts {path}: expected a .txt (one prompt per line) or .jsonl file")
    if not path.exists():
        raise DataError(f"--prompts {path} does not exist")
    if not path.is_file():
        raise DataError(f"--prompts {path} is not a file")
    kind = "jsonl" if path.suffix == ".jsonl" else "txt"
    if kind == "jsonl":
        entries = iter_jsonl(path, "--prompts")
    else:
        entries = enumerate(decode_utf8(path.read_bytes(), path).splitlines(), 1)
    prompts, seen = [], {}
    for lineno, entry in entries:
        if kind == "jsonl":
            prompt = entry.get("prompt", entry.get("text")) if isinstance(entry, dict) else None
            if isinstance(prompt, dict):
                prompt = prompt.get("text")
            if not isinstance(prompt, str):
                raise DataError(f"{path}:{lineno}: no string field 'prompt' or 'text'")
        else:
            prompt = entry
        if not prompt.strip():
            raise DataError(f"{path}:{lineno}: empty prompt")
        if prompt in seen:
            raise DataError(f"{path}:{lineno}: repeats the prompt of line {seen[prompt]} "
                            "(use --n-samples for several completions of one prompt)")
        seen[prompt] = lineno
        prompts.append(prompt)
    if not prompts:
        raise DataError(f"--prompts {path} holds no prompts")
    return prompts, kind


def pair_rows(prompts, aligned, base) -> tuple[list[dict], int, int]:
    """(rows, identical, empty): sample k of ``aligned[i]`` (chosen) against sample k of ``base[i]``
    (rejected) for each prompt i, without the pairs whose two sides are equal (counted in
    ``identical``) or that have an empty or whitespace-only side (a model that stopped at once;
    counted in ``empty``) — the rows ``fairl pairs`` would refuse."""
    rows, identical, empty = [], 0, 0
    for i, (prompt, chosen, rejected) in enumerate(zip(prompts, aligned, base, strict=True)):
        for k, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
            if c == r:
                identical += 1
            elif not (c.strip() and r.strip()):
                empty += 1
            else:
                rows.append({"prompt": prompt, "chosen": c, "rejected": r, "prompt_id": i, "sample": k})
    return rows, identical, empty


@dataclass
class GeneratePlan:
    """Everything :func:`generate_pairs` checked before any model loads."""

    out: Path
    meta: Path
    cache: Path
    prompts_file: Path
    prompts: list
    prompts_format: str
    prompts_sha256: str
    base: ModelSpec
    aligned: ModelSpec
    given: dict
    templates: dict = field(default_factory=dict)


def _model(arg: str, given) -> ModelSpec:
    try:
        spec = resolve_model(given)
        check_adapter(spec, causal=True)
    except DataError as exc:
        raise DataError(f"{arg} {given}: {exc}") from None
    return spec


def plan(base, aligned, prompts_file, out, cache_dir=None, chat_template: bool = False) -> GeneratePlan:
    """Check every input and output of a run (no model weights load; with ``chat_template`` the two
    tokenizers do). Raises DataError naming the argument at fault."""
    out = check_output_path(out)
    meta = check_output_path(out.with_name(out.name + ".meta.json"), what="metadata file")
    cache = Path(cache_dir) if cache_dir is not None else out.with_name(out.name + ".cache")
    check_output_dir(cache, "--cache-dir")
    prompts, kind = read_prompts(prompts_file)
    specs = {"base": _model("--base", base), "aligned": _model("--aligned", aligned)}
    if specs["base"].fingerprint() == specs["aligned"].fingerprint():
        raise DataError(f"--base {base} and --aligned {aligned} are the same model (fingerprint "
                        f"{specs['base'].fingerprint()}): every pair would have two equal sides")
    templates = {}
    if chat_template:
        for role, spec in specs.items():
            try:
                text = chat_template_of(load_tokenizer(spec), spec)
            except DataError as exc:
                raise DataError(f"--{role}: {exc}") from None
            templates[role] = hashlib.sha256(text.encode()).hexdigest()
    return GeneratePlan(out, meta, cache, Path(prompts_file), prompts, kind, sha256_file(Path(prompts_file)),
                        specs["base"], specs["aligned"],
                        {"base": str(base), "aligned": str(aligned)}, templates)


def generate_pairs(base, aligned, prompts_file, out, *, n_samples: int = 1, seed: int = 0,
                   config: SamplingConfig = SamplingConfig(), chat_template: bool = False, workers: int = 1,
                   cache_dir=None, progress=True, run: dict | None = None, scheduler=None) -> dict:
    """Run ``fairl generate`` (see the module docstring); returns the summary it prints.

    ``run`` is the run record to store (default: one built from these arguments); ``scheduler`` (a
    Dask client or address) samples the chunks on its workers instead of ``workers`` processes.

    Raises
    ------
    DataError
        Before any model loads, naming the argument at fault; after generation, when every pair has
        two equal sides (nothing is written, the cache is kept).
    """
    from fairl_opt import __version__
    from fairl_opt._json import emit_json, run_record

    if not isinstance(n_samples, int) or n_samples < 1:
        raise DataError(f"--n-samples must be >= 1, got {n_samples!r}")
    if not isinstance(workers, int) or workers < 1:
        raise DataError(f"--workers must be >= 1, got {workers!r}")
    p = plan(base, aligned, prompts_file, out, cache_dir, chat_template)
    chunk = max(1, 64 // n_samples)
    sampling = {"n_samples": n_samples, "seed": seed, **config.as_dict(), "chat_template": bool(chat_template),
                "chunk_prompts": chunk, "seeding": SEEDING}
    if run is None:
        run = run_record("generate", {"prompts": p.prompts_file, "base": base, "aligned": aligned},
                         {**{k: v for k, v in sampling.items() if k != "seeding"}, "workers": workers,
                          "out": str(p.out), "cache_dir": str(p.cache)})
    samples = {}
    for role in ("base", "aligned"):
        log.info("generate: %d prompts × %d samples from the %s model %s", len(p.prompts), n_samples, role,
                 getattr(p, role).name)
        samples[role] = generate_completions(p.prompts, n_samples, model=getattr(p, role), cache_dir=p.cache,
                                             seed=seed, config=config, chunk_prompts=chunk, workers=workers,
                                             progress=progress, chat_template=chat_template, scheduler=scheduler)
    rows, dropped, empty = pair_rows(p.prompts, samples["aligned"], samples["base"])
    n_candidates = len(p.prompts) * n_samples
    if not rows:
        raise DataError(f"all {n_candidates} pairs have two equal sides ({dropped}) or an empty side ({empty}): "
                        f"nothing written; the samples are cached in {p.cache}")
    if dropped or empty:
        log.info("generate: dropped %d of %d pairs whose two sides are the same text and %d with an empty side",
                 dropped, n_candidates, empty)
    models = {}
    for role in ("base", "aligned"):
        spec = getattr(p, role)
        models[role] = {"given": p.given[role], **spec.describe(), "fingerprint": spec.fingerprint()}
        if role in p.templates:
            models[role]["chat_template_sha256"] = p.templates[role]
    p.meta.unlink(missing_ok=True)
    atomic_write_text(p.out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    counts = {"n_prompts": len(p.prompts), "n_samples": n_samples, "n_candidates": n_candidates,
              "n_pairs": len(rows), "n_identical_dropped": dropped, "n_empty_dropped": empty}
    meta = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fairl_version": __version__,
        "pairs_file": {"path": str(p.out), "sha256": sha256_file(p.out), "bytes": p.out.stat().st_size},
        "layout": {"chosen": "aligned", "rejected": "base", "fields": list(FIELDS)},
        "prompts": {"file": str(p.prompts_file), "sha256": p.prompts_sha256, "format": p.prompts_format,
                    "n_prompts": len(p.prompts)},
        "models": models,
        "sampling": sampling,
        "counts": counts,
        "run": run,
    }
    emit_json(meta, out=p.meta)
    return {"out": str(p.out), "meta": str(p.meta), "cache": str(p.cache), "n_prompts": len(p.prompts),
            "n_samples": n_samples, "n_pairs": len(rows), "n_identical_dropped": dropped,
            "n_empty_dropped": empty, "models": models,
            "run": run}
