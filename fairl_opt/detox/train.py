"""The aligned model, trained for real: DPO with TRL through a LoRA adapter on CPU, and the trained
model's own implicit reward β·log π_θ(y|x)/π_ref(y|x).

:func:`train_dpo` fine-tunes a base causal LM (any :func:`fairl_opt.models.resolve_model` name but an
adapter) with ``trl.DPOTrainer`` and a PEFT ``LoraConfig``: LoRA B = 0 at the start, so the first DPO
loss is exactly log 2; the reference is the same model with the adapter disabled (TRL's PEFT path: no
second copy). CPU, float32, one torch thread, no hub access, no telemetry, no reporting integrations.
A GGUF base (``smollm2``) is dequantised to float32 when transformers loads it, but stays marked as
quantised, which Trainer refuses to train: the marks are dropped, leaving the plain float32 model.

Tokenization (:func:`encode`: training, the KL estimate and :func:`fairl_opt.detox.policy.implicit_reward` share it): the
prompt (through the chat template with ``chat_template``) and prompt + completion are tokenized; the
completion is what follows their common prefix (TRL's rule). Unlike TRL's default for plain text,
**no EOS is appended**: detox completions are cut at ``max_new_tokens``, not ended, so log π(y|x) is
the probability of the completion's tokens as a prefix. Of prompt + completion the first
``max_length`` tokens are kept (TRL's ``keep_start``).

Files in ``out_dir``: ``adapter_config.json`` + ``adapter_model.safetensors`` (its base = the base's
name, or its absolute directory), ``training_log.json`` (:data:`LOG_FIELDS` per logging step),
``training.png`` (loss, reward margin and KL against step), and ``provenance.json``, written last: it
marks a finished adapter. Checkpoints go to ``checkpoints/`` every ``save_every`` steps (transformers'
format; its optimizer and RNG states are torch pickles, removed when the run ends); rerunning the same
call resumes from the last one, ``force`` discards a finished adapter or another run's checkpoints."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from fairl_opt._io import _atomic, atomic_write_text, check_output_dir, sha256_file
from fairl_opt._progress import progress_bar
from fairl_opt.exceptions import DataError

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
OUTPUT_FILES = ADAPTER_FILES + ("training_log.json", "training.png", "provenance.json")
CHECKPOINTS = "checkpoints"
KL_ESTIMATOR = (
    "Monte Carlo estimate of KL(π_θ(·|x) ‖ π_ref(·|x)) over the first kl_max_new_tokens tokens, averaged over "
    "the KL prompts, after `step` updates: one completion y per prompt sampled from the adapter model "
    "(temperature 1, no top-k/top-p; torch seed = seed + step in a forked RNG, training untouched), stopped at "
    "EOS (kept) or the token limit; kl = mean over prompts of Σ_t [log π_θ(y_t|x, y_<t) − log π_ref(y_t|x, "
    "y_<t)], π_ref = the same model, adapter disabled; kl_se = its standard error")
#: The fields of each record of ``training_log.json``.
LOG_FIELDS = {
    "step": "optimizer steps so far", "epoch": "epochs so far (fractional)",
    "loss": "mean DPO loss −log σ(β·Δ log-ratio) of the batches since the previous record, before each update",
    "rewards/chosen": "mean β·(log π_θ − log π_ref) of the chosen completions (TRL's metric, like loss)",
    "rewards/rejected": "the same for the rejected completions", "rewards/margins": "mean chosen − rejected",
    "accuracy": "fraction of pairs with rewards/chosen > rewards/rejected (TRL's rewards/accuracies)",
    "kl": "KL to the base on the KL prompts (kl_estimator)", "kl_se": "standard error of kl",
    "learning_rate": "learning rate of this step", "grad_norm": "gradient norm before clipping",
    "eval_loss": "DPO loss on eval_pairs after `step` updates", "eval_margin": "rewards/margins on eval_pairs",
    "eval_accuracy": "accuracy on eval_pairs"}


def _check_pairs(pairs, what: str) -> list[dict]:
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise DataError(f"{what} is empty: no (prompt, chosen, rejected) pair to train on")
    for j, p in enumerate(pairs):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise DataError(f"{what}[{j}]: needs string fields prompt, chosen and rejected")
        if p["chosen"] == p["rejected"]:
            raise DataError(f"{what}[{j}]: chosen and rejected are the same text (no preference)")
    return list(pairs)


def texts_sha256(rows) -> str:
    """sha256 of ``json.dumps(rows, ensure_ascii=False, separators=(",", ":"))`` in UTF-8 (provenance's
    name for the pairs, [prompt, chosen, rejected] each, and prompts of a run)."""
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def encode(tok, prompt: str, completion: str, chat_template: bool, max_length: int | None):
    """(prompt ids, completion ids) as training sees them (the module docstring's rule)."""
    from fairl_opt.models import render_chat

    text = render_chat(tok, [prompt])[0] if chat_template else prompt
    kw = {"add_special_tokens": False} if chat_template else {}
    p_ids, full = list(tok(text, **kw)["input_ids"]), list(tok(text + completion, **kw)["input_ids"])
    k = next((k for k, (a, b) in enumerate(zip(p_ids, full)) if a != b), min(len(p_ids), len(full)))
    cut = len(full) if max_length is None else max(k, max_length)
    return p_ids[:k], full[k:cut]


def _encode_pairs(tok, pairs, what, chat_template, max_length) -> tuple[list[dict], int]:
    """TRL's tokenized rows (its collator cuts them at max_length) and how many pairs that cuts."""
    rows, cut = [], 0
    for j, p in enumerate(pairs):
        (p_ids, c), (_, r) = (encode(tok, p["prompt"], p[k], chat_template, None) for k in ("chosen", "rejected"))
        if not p_ids:
            raise DataError(f"{what}[{j}]: the prompt has no tokens (its first completion token has no context)")
        if len(p_ids) >= max_length:
            raise DataError(f"{what}[{j}]: the prompt alone has {len(p_ids)} tokens, --max-length is {max_length}")
        if not c or not r:
            raise DataError(f"{what}[{j}]: the {'chosen' if not c else 'rejected'} completion has no tokens")
        cut += len(p_ids) + max(len(c), len(r)) > max_length
        rows.append({"prompt_ids": p_ids, "chosen_ids": c, "rejected_ids": r})
    return rows, cut


def completion_logps(model, rows, pad_id: int, batch_size: int = 8) -> np.ndarray:
    """Σ_t log p(c_t | prompt, c_<t) for each (prompt ids, completion ids) row: a right-padded
    forward pass per batch (rows sorted by length), float32, no gradient."""
    from fairl_opt.models import _torch

    torch = _torch()
    out = np.zeros(len(rows))
    order = np.argsort([len(p) + len(c) for p, c in rows], kind="stable")
    for s in range(0, len(rows), batch_size):
        idx = order[s:s + batch_size]
        width = max(len(rows[i][0]) + len(rows[i][1]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask, comp = torch.zeros_like(ids), torch.zeros_like(ids)
        for b, i in enumerate(idx):
            p, c = rows[i]
            ids[b, :len(p) + len(c)] = torch.tensor(list(p) + list(c))
            mask[b, :len(p) + len(c)], comp[b, len(p):len(p) + len(c)] = 1, 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        out[idx] = (logp * comp[:, 1:]).sum(1).double().numpy()
    return out


def estimate_kl(model, tok, prompt_ids, max_new_tokens: int, seed: int, batch_size: int = 8):
    """(kl, standard error) of the PEFT model ``model`` to its base on tokenized prompts (:data:`KL_ESTIMATOR`)."""
    from fairl_opt.models import _torch

    torch = _torch()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = set(eos) if isinstance(eos, (list, tuple)) else {tok.eos_token_id if eos is None else eos}
    training, samples = model.training, []
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for s in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[s:s + batch_size]
            width = max(len(p) for p in chunk)
            ids, mask = torch.full((len(chunk), width), pad), torch.zeros((len(chunk), width), dtype=torch.long)
            for b, p in enumerate(chunk):  # left padding for generation
                ids[b, width - len(p):], mask[b, width - len(p):] = torch.tensor(p), 1
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=max_new_tokens,
                                 temperature=1.0, top_p=1.0, top_k=0, pad_token_id=pad)
            for b, p in enumerate(chunk):
                gen = out[b, width:].tolist()
                samples.append((p, gen[:next((t + 1 for t, g in enumerate(gen) if g in eos), len(gen))]))
        samples = [(p, g) for p, g in samples if g]
        policy = completion_logps(model, samples, pad, batch_size)
        with model.disable_adapter():
            d = policy - completion_logps(model, samples, pad, batch_size)
    model.train(training)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan


def _trl_parts(tok, kl_ids, kl_max_new_tokens, seed, batch_size, progress):
    """TRL's DPOTrainer on data tokenized by :func:`encode` (no telemetry, no model card), and a callback
    adding kl/kl_se to each training record (in the trainer state: checkpoints keep them), a progress
    bar and a log line per record."""
    from transformers import TrainerCallback
    from trl import DPOTrainer

    class OfflineDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        _send_telemetry = create_model_card = lambda self, *args, **kwargs: None  # noqa: E731

    class KLAndProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.bar = progress_bar(state.max_steps, "dpo", "steps", initial=state.global_step, enabled=progress)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)
            control.should_log = control.should_log or state.global_step >= state.max_steps  # log the last step

        def on_log(self, args, state, control, model=None, logs=None, **kw):
            record = state.log_history[-1] if state.log_history else {}
            if "loss" not in (logs or {}) or record.get("step") != state.global_step:
                return
            if kl_ids:
                record["kl"], record["kl_se"] = estimate_kl(model, tok, kl_ids, kl_max_new_tokens,
                                                            seed + state.global_step, batch_size)
            log.info("dpo step %d/%d: loss %.4f, margin %.4f, accuracy %.2f, kl %.4f", state.global_step,
                     state.max_steps, record["loss"], record.get("rewards/margins", math.nan),
                     record.get("rewards/accuracies", math.nan), record.get("kl", math.nan))

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return OfflineDPOTrainer, KLAndProgress()


def _check_settings(s: dict) -> None:
    for name, low in (("beta", 0), ("lora_alpha", 0), ("learning_rate", 0), ("lora_r", 1), ("epochs", 1),
                      ("batch_size", 1), ("max_length", 2), ("log_every", 1), ("save_every", 1), ("eval_every", 1),
                      ("warmup_steps", 0), ("kl_max_new_tokens", 1), ("max_steps", 1)):
        v, real = s[name], name in ("beta", "lora_alpha", "learning_rate")
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not (v is None and name == "max_steps") and not (
                number and (v > low if real else (float(v).is_integer() and v >= low))):
            raise DataError(f"{name} must be {'a finite number > 0' if real else f'an integer >= {low}'}, got {v!r}")
    if not s["target_modules"] or not all(isinstance(m, str) and m for m in s["target_modules"]):
        raise DataError(f"target_modules must be module names, got {s['target_modules']!r}")


def prepare_output(out_dir, force: bool) -> Path:
    """``out_dir`` checked (``--out``); a finished adapter there: DataError, or with ``force`` removed."""
    out = check_output_dir(out_dir)
    if (out / "provenance.json").exists():
        if not force:
            raise DataError(f"--out {out}: holds a finished adapter (provenance.json); pass --force to retrain it")
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return out


def train_dpo(base, pairs, out_dir, *, beta: float = 0.1, lora_r: int = 8, lora_alpha: float = 16,
              target_modules=("q_proj", "v_proj"), learning_rate: float = 1e-4, epochs: int = 1, batch_size: int = 8,
              max_length: int = 128, seed: int = 0, eval_pairs=None, progress=True, kl_prompts=None,
              kl_max_new_tokens: int = 30, log_every: int = 10, save_every: int = 50, eval_every: int | None = None,
              warmup_steps: int = 0, max_steps: int | None = None, chat_template: bool = False, force: bool = False,
              keep_checkpoints: bool = False, data_source: dict | None = None, callbacks=()) -> dict:
    """Train a LoRA adapter on ``base`` with DPO on ``pairs`` (dicts with prompt, chosen, rejected),
    write it with its log, figure and provenance to ``out_dir`` (the module docstring); returns the
    provenance. ``kl_prompts`` (default: the prompts of ``eval_pairs``, else of the first 16 pairs)
    are the held-out prompts of the KL estimate (:data:`KL_ESTIMATOR`) at every logging step;
    ``eval_pairs`` are scored every ``eval_every`` steps (default ``log_every``). AdamW, linear decay
    after ``warmup_steps``, gradient clipping at 1, no weight decay, LoRA dropout 0. ``max_steps``
    stops early (measurements); ``callbacks``: extra TrainerCallbacks; ``data_source`` joins
    provenance.json's ``data``.

    Raises
    ------
    DataError
        Naming the argument: empty or malformed pairs, a bad setting, an adapter as ``base``, or
        without ``force`` (which removes them), a finished adapter or another run's checkpoints there.
    """
    settings = dict(beta=beta, lora_r=lora_r, lora_alpha=lora_alpha, target_modules=list(target_modules),
                    learning_rate=learning_rate, epochs=epochs, batch_size=batch_size, max_length=max_length,
                    seed=seed, kl_max_new_tokens=kl_max_new_tokens, log_every=log_every, save_every=save_every,
                    eval_every=log_every if eval_every is None else eval_every, warmup_steps=warmup_steps,
                    max_steps=max_steps, chat_template=bool(chat_template))
    _check_settings(settings)
    pairs = _check_pairs(pairs, "pairs")
    eval_pairs = _check_pairs(eval_pairs, "eval_pairs") if eval_pairs is not None else None
    out = prepare_output(out_dir, force)
    t_start = time.perf_counter()
    from fairl_opt.models import _torch, resolve_model

    spec = resolve_model(base)
    if spec.is_adapter:
        raise DataError(f"--base {base}: is an adapter; train on its merged base (save the merged model first)")
    kl_prompts = list(kl_prompts) if kl_prompts is not None else [p["prompt"] for p in (eval_pairs or pairs[:16])]
    data = {"n_kl_prompts": len(kl_prompts), "kl_prompts_sha256": texts_sha256(kl_prompts)}
    for name, rows in (("pairs", pairs), ("eval_pairs", eval_pairs or [])):
        data.update({f"n_{name}": len(rows),
                     f"{name}_sha256": texts_sha256([[p["prompt"], p["chosen"], p["rejected"]] for p in rows])})
    data.update(data_source or {})
    run_key = texts_sha256([settings, {k: v for k, v in data.items() if k != "dataset"}, spec.fingerprint()])
    marker = out / CHECKPOINTS / "run.json"
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("run_key") != run_key:
        if not force:
            raise DataError(f"--out {out}: holds checkpoints of a run with other settings or data ({marker}); "
                            "pass --force to discard them")
        shutil.rmtree(marker.parent)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"run_key": run_key, "settings": settings, "data": data}, indent=2) + "\n")
    with warnings.catch_warnings():  # transformers 5.24 renamed gradient checkpointing; TRL 1.16 uses the old name
        warnings.filterwarnings("ignore", ".*gradient_checkpointing.*", FutureWarning)
        warnings.filterwarnings("ignore", "Could not find a config file in", UserWarning)  # peft, GGUF bases
        trainer, last, n_cut = _trainer(spec, settings, pairs, eval_pairs, kl_prompts, marker.parent, progress,
                                        callbacks)
        result = trainer.train(resume_from_checkpoint=last)
        seconds = float(result.metrics["train_runtime"])
        trainer.model.peft_config["default"].base_model_name_or_path = (
            str(base) if str(base) == spec.name and not Path(str(base)).is_dir() else str(Path(spec.path).resolve()))
        with tempfile.TemporaryDirectory(dir=out, prefix=".adapter-") as tmp:
            trainer.model.save_pretrained(tmp, safe_serialization=True)  # and a README model card, not kept
            for name in ADAPTER_FILES:
                os.chmod(Path(tmp, name), 0o644)
                os.replace(Path(tmp, name), out / name)
    records = _records(trainer.state.log_history)
    atomic_write_text(out / "training_log.json", json.dumps(
        {"fields": LOG_FIELDS, "kl_estimator": KL_ESTIMATOR, "records": records, "summary": result.metrics},
        indent=2) + "\n")
    figure = write_figure(records, out / "training.png")
    steps = int(trainer.state.global_step)
    done = steps - (int(Path(last).name.split("-")[-1]) if last else 0)
    provenance = {
        "base": {**spec.describe(), "given": str(base), "fingerprint": spec.fingerprint()},
        "data": {**data, "n_truncated_pairs": int(n_cut)},
        "hyperparameters": {**settings, "optimizer": "adamw_torch", "lr_scheduler": "linear", "weight_decay": 0.0,
                            "max_grad_norm": 1.0, "lora_dropout": 0.0, "loss_type": "sigmoid",
                            "reference": "the base, adapter disabled", "dtype": "float32", "device": "cpu",
                            "torch_threads": _torch().get_num_threads()},
        "tokenization": {"eos_appended": False, "truncation": "keep_start", "max_length": max_length,
                         "chat_template": bool(chat_template), "rule": "fairl_opt.detox.train.encode"},
        "kl_estimator": KL_ESTIMATOR,
        "cost": {"seconds": round(time.perf_counter() - t_start, 1), "train_seconds": round(seconds, 1),
                 "seconds_per_step": round(seconds / max(1, done), 2), "steps": steps,
                 "resumed_from": last and Path(last).name, "machine": f"{platform.machine()}, {os.cpu_count()} cores"},
        "final": records[-1] if records else None,
        "versions": {"python": platform.python_version(), **{k: metadata.version(k) for k in (
            "fairl_opt", "trl", "peft", "torch", "transformers", "accelerate", "datasets", "gguf")}},
        "files": {name: sha256_file(out / name) for name in ADAPTER_FILES + ("training_log.json",)},
        "figure": figure and figure.name, "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    atomic_write_text(out / "provenance.json", json.dumps(provenance, indent=2) + "\n")
    if not keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    log.info("dpo: wrote %s (%d steps, %.0f s)", out, steps, seconds)
    return provenance


def _trainer(spec, s, pairs, eval_pairs, kl_prompts, ckpt: Path, progress, callbacks):
    """(TRL trainer with the run's model, data, DPOConfig and LoraConfig; last checkpoint; pairs cut)."""
    os.environ.update({k: os.environ.get(k, "1") for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")})
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig

    from fairl_opt.models import load_model, load_tokenizer

    tok = load_tokenizer(spec)
    rows, n_cut = _encode_pairs(tok, pairs, "pairs", s["chat_template"], s["max_length"])
    eval_rows = _encode_pairs(tok, eval_pairs, "eval_pairs", s["chat_template"], s["max_length"])[0] \
        if eval_pairs else None
    kl_ids = [encode(tok, p, "", s["chat_template"], None)[0] for p in kl_prompts]
    config = DPOConfig(
        output_dir=str(ckpt), beta=s["beta"], learning_rate=s["learning_rate"], num_train_epochs=s["epochs"],
        max_steps=s["max_steps"] or -1, per_device_train_batch_size=s["batch_size"],
        per_device_eval_batch_size=s["batch_size"], max_length=s["max_length"], seed=s["seed"], data_seed=s["seed"],
        logging_steps=s["log_every"], logging_first_step=True, save_strategy="steps", save_steps=s["save_every"],
        save_total_limit=2, eval_strategy="steps" if eval_rows else "no", eval_steps=s["eval_every"],
        report_to="none", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, disable_tqdm=True,
        dataloader_num_workers=0, lr_scheduler_type="linear", warmup_steps=s["warmup_steps"], weight_decay=0.0,
        max_grad_norm=1.0, optim="adamw_torch", loss_type=["sigmoid"], precompute_ref_log_probs=False)
    lora = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], target_modules=s["target_modules"],
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    cls, callback = _trl_parts(tok, kl_ids, s["kl_max_new_tokens"], s["seed"], s["batch_size"], progress)
    model = load_model(spec, causal=True)
    if spec.gguf_file:  # float32 already (the module docstring)
        model.hf_quantizer, model.is_quantized = None, False
    trainer = cls(model=model, args=config, train_dataset=Dataset.from_list(rows),
                  eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None, processing_class=tok,
                  peft_config=lora, callbacks=[callback, *callbacks])
    trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(ckpt))
    log.info("dpo: resuming from %s", last) if last else None
    return trainer, last, n_cut


def _records(history) -> list[dict]:
    """One record per step that logged: the training log with its KL, and the eval log of that step."""
    rename = {"rewards/accuracies": "accuracy", "eval_rewards/margins": "eval_margin",
              "eval_rewards/accuracies": "eval_accuracy"}
    by_step: dict[int, dict] = {}
    for h in history:
        if "loss" in h or "eval_loss" in h:
            by_step.setdefault(h["step"], {"step": h["step"]}).update(
                {rename.get(k, k): v for k, v in h.items() if rename.get(k, k) in LOG_FIELDS})
    return [by_step[s] for s in sorted(by_step)]


def write_figure(records, path: Path) -> Path | None:
    """Loss, reward margin and KL (± 2 se) against step, train and eval (matplotlib, Agg), written
    atomically; None (and a warning) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return log.warning("no matplotlib: %s not drawn (pip install matplotlib)", path)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = [("loss", "eval_loss", "DPO loss"), ("rewards/margins", "eval_margin", "reward margin"),
              ("kl", None, "KL to the base (nats)")]
    for ax, (key, eval_key, title) in zip(axes, panels):
        for k, label in ((key, "train"), (eval_key, "eval")):
            rows = [r for r in records if k and k in r]
            if rows:
                ax.plot([r["step"] for r in rows], [r[k] for r in rows], marker="." if label == "train" else "o",
                        label=label)
        rows = [r for r in records if "kl_se" in r] if key == "kl" else []
        if rows:
            kl, se = (np.array([r[k] for r in rows], dtype=float) for k in ("kl", "kl_se"))
            ax.fill_between([r["step"] for r in rows], kl - 2 * se, kl + 2 * se, alpha=0.25, label="± 2 se")
        ax.set(title=title, xlabel="step")
        ax.legend() if ax.get_legend_handles_labels()[0] else None
    fig.tight_layout()
    _atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path
