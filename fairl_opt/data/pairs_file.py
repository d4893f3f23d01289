"""A pairs file with everything beside the features: texts, prompt ids, the held-out split, the
source rows and the :class:`~fairl_opt.data.features.FeatureSpec` (model, pooling, standardisation).

The file is an ordinary pairs ``.npz`` (``fairl solve`` reads it as it reads any other), with these
extra arrays, all numeric or fixed-width strings so that it loads without pickle:

=================  ==========================================================================
array              meaning
=================  ==========================================================================
chosen, rejected   (n, d) features, standardised with ``feature_mean``/``feature_scale``
prompt_ids         (n,) int: pairs of one prompt share an id (splits keep them together)
kinds              (n,) str, optional: one of :data:`fairl_opt.pairs.KINDS`
prompt_text_*      optional: the prompt (or shared dialogue prefix) of each pair, stored as
                   ``prompt_text_utf8`` (uint8: the UTF-8 bytes of every text, concatenated) and
                   ``prompt_text_offsets`` (n+1 int64: text i is bytes offsets[i]:offsets[i+1]), so
                   that long texts cost their length, not n × the longest one
chosen_text_*      optional: the preferred completions, stored the same way
rejected_text_*    optional: the dispreferred completions, stored the same way
test_mask          (n,) bool, optional: held-out pairs (whole prompts); the rest are training
source_rows        (n,) int, optional: row of each pair in the input file (0-based)
feature_mean,      (d,) float64, optional: the standardisation, fitted on the training pairs'
feature_scale      completions (both sides)
meta               0-d str: JSON object (``format``, ``feature_model``, ``input``, ``layout``,
                   ``fields``, ``bad_rows``, ``fairl_version`` ...)
=================  ==========================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairl_opt.data.features import FeatureSpec
from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs, load_npz

FORMAT = "fairl-pairs/1"
TEXT_KEYS = ("prompt_text", "chosen_text", "rejected_text")


def _text_array(name: str, values, n: int) -> np.ndarray | None:
    """``values`` as a read-only object array of ``n`` Python strings (never pickled: see :func:`pack_texts`)."""
    if values is None:
        return None
    texts = [str(v) for v in values]
    if len(texts) != n:
        raise DataError(f"{name} has {len(texts)} entries for {n} pairs")
    arr = np.empty(n, dtype=object)
    arr[:] = texts
    arr.setflags(write=False)
    return arr


def pack_texts(texts) -> tuple[np.ndarray, np.ndarray]:
    """``(utf8, offsets)``: the UTF-8 bytes of every text concatenated (uint8) and the n+1 offsets."""
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def unpack_texts(utf8, offsets, name: str) -> list[str]:
    """The texts :func:`pack_texts` packed; DataError naming ``name`` when the arrays disagree."""
    utf8, offsets = np.asarray(utf8), np.asarray(offsets)
    if utf8.dtype != np.uint8 or utf8.ndim != 1 or offsets.ndim != 1 or offsets.dtype.kind not in "iu":
        raise DataError(f"{name}: expected uint8 bytes and integer offsets")
    if offsets.size == 0 or offsets[0] != 0 or offsets[-1] != utf8.size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{name}: offsets do not cut the {utf8.size} bytes into texts")
    data = utf8.tobytes()
    try:
        return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not valid UTF-8 ({exc.reason})") from None


@dataclass(frozen=True, eq=False)
class PairsData:
    """Pairs plus the texts, split and feature recipe that produced them.

    Parameters
    ----------
    pairs : PreferencePairs
        Features (standardised when ``features`` carries a standardisation).
    prompt_text, chosen_text, rejected_text : sequences of str, optional
        One per pair.
    test_mask : bool array, optional
        Held-out pairs; None means every pair is a training pair.
    source_rows : int array, optional
        Row of each pair in the file it was read from.
    features : FeatureSpec, optional
        How the features were computed (None for simulated or hand-made features).
    meta : dict
        JSON-ready provenance.
    """

    pairs: PreferencePairs
    prompt_text: np.ndarray | None = None
    chosen_text: np.ndarray | None = None
    rejected_text: np.ndarray | None = None
    test_mask: np.ndarray | None = None
    source_rows: np.ndarray | None = None
    features: FeatureSpec | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.pairs.n_pairs
        for name in TEXT_KEYS:
            object.__setattr__(self, name, _text_array(name, getattr(self, name), n))
        if self.test_mask is not None:
            mask = np.asarray(self.test_mask)
            if mask.dtype != bool or mask.shape != (n,):
                raise DataError(f"test_mask must be a boolean array of {n} entries, got {mask.dtype} {mask.shape}")
            if mask.all():
                raise DataError("test_mask holds every pair out: no training pairs are left")
            object.__setattr__(self, "test_mask", mask)
        if self.source_rows is not None:
            rows = np.asarray(self.source_rows)
            if rows.shape != (n,) or rows.dtype.kind not in "iu":
                raise DataError(f"source_rows must be {n} integers, got {rows.dtype} {rows.shape}")
            object.__setattr__(self, "source_rows", rows.astype(np.int64))
        if self.features is not None and self.features.dim not in (None, self.pairs.dim):
            raise DataError(f"the standardisation has d={self.features.dim} but the features have d={self.pairs.dim}")

    # -- views -------------------------------------------------------------------------------
    @property
    def has_texts(self) -> bool:
        return self.chosen_text is not None and self.rejected_text is not None

    @property
    def train_index(self) -> np.ndarray:
        """Indices of the training pairs (all pairs when there is no test mask)."""
        n = self.pairs.n_pairs
        return np.arange(n) if self.test_mask is None else np.flatnonzero(~self.test_mask)

    @property
    def test_index(self) -> np.ndarray:
        """Indices of the held-out pairs (empty when there is no test mask)."""
        return np.zeros(0, dtype=np.int64) if self.test_mask is None else np.flatnonzero(self.test_mask)

    def train(self) -> PreferencePairs:
        """The training pairs (all pairs when there is no test mask)."""
        return self.pairs if self.test_mask is None else self.pairs.subset(self.train_index)

    def row(self, i: int) -> int:
        """The input-file row of pair ``i`` (``i`` itself when the rows are not recorded)."""
        return int(i if self.source_rows is None else self.source_rows[i])

    # -- I/O ---------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the ``.npz`` described in the module docstring, atomically; returns the path."""
        extra = {k: getattr(self, k) for k in ("test_mask", "source_rows") if getattr(self, k) is not None}
        for key in TEXT_KEYS:
            if getattr(self, key) is not None:
                extra[f"{key}_utf8"], extra[f"{key}_offsets"] = pack_texts(getattr(self, key))
        meta = dict(self.meta)
        meta["format"] = FORMAT
        if self.features is not None:
            meta["feature_model"] = self.features.to_dict()
            if self.features.mean is not None:
                extra["feature_mean"] = self.features.mean
                extra["feature_scale"] = self.features.scale
        extra["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
        return self.pairs.save(path, **extra)

    @classmethod
    def load(cls, path, duplicates: str = "error") -> "PairsData":
        """Read a pairs ``.npz`` (this format, or a plain one from ``fairl simulate``) without pickle.

        Raises
        ------
        DataError
            Naming the file and the array at fault.
        """
        pairs, extra = load_npz(path, duplicates=duplicates)
        meta = {}
        if "meta" in extra:
            raw = extra.pop("meta")
            try:
                meta = json.loads(str(raw[()]))
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}: array 'meta' is not a JSON text ({exc})") from None
            if not isinstance(meta, dict):
                raise DataError(f"{path}: array 'meta' must hold a JSON object")
            if meta.get("format") not in (None, FORMAT):
                raise DataError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        spec = None
        if "feature_model" in meta:
            spec = FeatureSpec.from_dict(meta["feature_model"], extra.pop("feature_mean", None),
                                         extra.pop("feature_scale", None), where=f"{path}: meta.feature_model")
        texts = {}
        for key in TEXT_KEYS:
            if f"{key}_utf8" in extra or f"{key}_offsets" in extra:
                if not (f"{key}_utf8" in extra and f"{key}_offsets" in extra):
                    raise DataError(f"{path}: {key} needs both {key}_utf8 and {key}_offsets")
                texts[key] = unpack_texts(extra[f"{key}_utf8"], extra[f"{key}_offsets"], f"{path}: {key}")
            elif key in extra:  # fixed-width strings (a file written by hand)
                texts[key] = extra[key]
        try:
            return cls(pairs, *(texts.get(k) for k in TEXT_KEYS), test_mask=extra.get("test_mask"),
                       source_rows=extra.get("source_rows"), features=spec, meta=meta)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
