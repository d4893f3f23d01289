"""How texts become the features a reward reads: the feature model, pooling, truncation and the one
standardisation fitted on the training rows.

A :class:`FeatureSpec` travels with a pairs file (:mod:`fairl_opt.data.pairs_file`) and with a saved
reward (:mod:`fairl_opt.data.reward`), so that scoring a new text applies exactly the embedding and
the standardisation the reward was fitted on, and refuses a feature model that is not the one the
reward was fitted with (its fingerprint differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairl_opt.exceptions import DataError

#: The pooling :func:`fairl_opt.lm.mean_pooled` applies.
POOLING = "mean of the last hidden state over the attention mask"


def fit_standardisation(raw) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of the rows of ``raw`` (float64): the column means and standard deviations,
    a deviation at or below ``1e-8 × max(1, largest deviation)`` (a constant column) replaced by 1
    so that standardising never divides by ~0.

    Raises
    ------
    DataError
        On an empty or non-finite matrix.
    """
    x = np.asarray(raw, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"standardisation needs a non-empty (rows, d) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("standardisation got NaN/inf features")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    floor = 1e-8 * max(1.0, float(std.max(initial=0.0)))
    return mean, np.where(std > floor, std, 1.0)


@dataclass(frozen=True, eq=False)
class FeatureSpec:
    """The recipe from text to features.

    Parameters
    ----------
    model : str
        The feature model as given (a name of :data:`fairl_opt.models.NAMED_MODELS` or a directory).
    fingerprint : str
        ``resolve_model(model).fingerprint()`` when the features were computed.
    max_length : int
        Tokens kept per text.
    with_prompt : bool
        Whether the embedded text is ``prompt + completion`` (else the completion alone).
    mean, scale : (d,) arrays, optional
        Standardisation ``(raw - mean) / scale``; None means the raw features are used.
    pooling : str
        Always :data:`POOLING` today; recorded so that a future pooling cannot be mistaken for it.
    """

    model: str
    fingerprint: str
    max_length: int = 128
    with_prompt: bool = False
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    pooling: str = POOLING

    def __post_init__(self):
        if (self.mean is None) != (self.scale is None):
            raise DataError("feature standardisation needs both mean and scale, or neither")
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
            scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
            if mean.shape != scale.shape:
                raise DataError(f"feature mean has {mean.size} entries but scale has {scale.size}")
            if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
                raise DataError("feature standardisation must be finite with scale > 0")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "scale", scale)

    @property
    def dim(self) -> int | None:
        """The feature dimension when the standardisation records it, else None."""
        return None if self.mean is None else int(self.mean.size)

    def to_dict(self) -> dict:
        """JSON-ready fields (the standardisation arrays are stored beside it, not in it)."""
        return {"model": self.model, "fingerprint": self.fingerprint, "pooling": self.pooling,
                "max_length": int(self.max_length), "with_prompt": bool(self.with_prompt),
                "standardised": self.mean is not None, "dim": self.dim}

    @classmethod
    def from_dict(cls, fields: dict, mean=None, scale=None, where: str = "feature spec") -> "FeatureSpec":
        """The spec :meth:`to_dict` wrote; DataError naming ``where`` on a missing or odd field."""
        if not isinstance(fields, dict):
            raise DataError(f"{where}: expected an object, got {type(fields).__name__}")
        for key, kind in (("model", str), ("fingerprint", str), ("max_length", int), ("with_prompt", bool),
                          ("pooling", str)):
            if not isinstance(fields.get(key), kind) or (kind is int and isinstance(fields[key], bool)):
                raise DataError(f"{where}: field {key!r} missing or not a {kind.__name__}")
        if fields["pooling"] != POOLING:
            raise DataError(f"{where}: pooling {fields['pooling']!r} is not the one this version computes")
        spec = cls(fields["model"], fields["fingerprint"], fields["max_length"], fields["with_prompt"],
                   mean, scale)
        if fields.get("standardised") and spec.mean is None:
            raise DataError(f"{where}: says standardised but the mean/scale arrays are missing")
        return spec

    def texts(self, completions, prompts=None) -> list[str]:
        """The strings to embed: the completions, or ``prompt + completion`` when :attr:`with_prompt`."""
        completions = [str(c) for c in completions]
        if not self.with_prompt:
            return completions
        if prompts is None:
            raise DataError(f"features of {self.model} were computed on prompt + completion: prompts are needed")
        prompts = [str(p) for p in prompts]
        if len(prompts) != len(completions):
            raise DataError(f"{len(prompts)} prompts for {len(completions)} completions")
        return [p + c for p, c in zip(prompts, completions)]

    def standardise(self, raw) -> np.ndarray:
        """``(raw - mean) / scale`` (float64); raw features when there is no standardisation."""
        x = np.asarray(raw, dtype=np.float64)
        if self.mean is None:
            return x
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise DataError(f"features have shape {x.shape}, the standardisation expects (n, {self.mean.size})")
        return (x - self.mean) / self.scale

    def check_installed(self):
        """The installed model's :class:`~fairl_opt.models.ModelSpec`, after checking its fingerprint.

        Raises
        ------
        DataError
            When the model cannot be found or its fingerprint is not :attr:`fingerprint` (another
            version or other weights: its features would not be the ones the reward reads).
        """
        from fairl_opt.models import resolve_model

        spec = resolve_model(self.model)
        found = spec.fingerprint()
        if found != self.fingerprint:
            raise DataError(
                f"feature model {self.model!r}: the installed one has fingerprint {found}, but these "
                f"features were computed with {self.fingerprint}; install that model or refit"
            )
        return spec

    def embed(self, completions, prompts=None, *, cache_dir=None, batch_size: int = 32, workers: int = 1,
              progress=True, scheduler=None) -> np.ndarray:
        """Standardised features of ``completions`` (checked model, resumable through ``cache_dir``;
        ``scheduler``: the chunks on a Dask cluster, as :func:`fairl_opt.lm.embed_texts`)."""
        from fairl_opt.lm import embed_texts

        self.check_installed()
        raw = embed_texts(self.texts(completions, prompts), model=self.model, cache_dir=cache_dir,
                          batch_size=batch_size, max_length=self.max_length, workers=workers,
                          progress=progress, scheduler=scheduler)
        return self.standardise(raw)
