"""A fitted reward saved as a folder, without pickle, and loaded back verified.

``fairl fit`` writes, and :meth:`RewardModel.load` reads:

* ``reward.json`` — ``format``, ``fairl_version``, ``created``, ``method``, ``kind``,
  ``failure_aware``, ``hyper_parameters``, ``status``, ``certificate``, ``training`` (input file and
  its sha256, pair counts, accuracies, fit seconds), ``features`` (the
  :class:`~fairl_opt.data.features.FeatureSpec`: model, fingerprint, pooling, max length,
  prompt-in-text; null for features that did not come from a text model), ``fa`` (stop reason and
  every round: failures, edits, objective, certificate, and the near-tie threshold τ the loop
  resolved at round 0; null for a standard method), ``geometry``
  (null unless fitted with ``--geometry``) and ``files``: the sha256, shape and dtype of each array;
* ``theta.npy`` — θ in standardised feature units; ``feature_mean.npy``/``feature_scale.npy`` — the
  standardisation; for FA methods the final per-training-pair requirements
  (``required_margins.npy`` and ``prices.npy``, or ``weights.npy`` and ``temperatures.npy``).

Every array is checked against its record when loaded, so a damaged or edited folder is refused.
The reward of a completion y is ``θᵀ (φ(y) − mean) / scale``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fairl_opt._io import _atomic, atomic_write_text, check_output_dir
from fairl_opt._json import jsonable
from fairl_opt.data.features import FeatureSpec
from fairl_opt.exceptions import DataError

FORMAT = "fairl-reward/1"
MANIFEST = "reward.json"
#: FA arrays saved beside θ when the estimator has them (attribute -> file).
FA_ARRAYS = {"required_margins_": "required_margins.npy", "prices_": "prices.npy",
             "weights_": "weights.npy", "temperatures_": "temperatures.npy"}


def package_version() -> str:
    from fairl_opt import __version__

    return __version__


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def fa_record(estimator) -> dict | None:
    """The FA history of a fitted :class:`~fairl_opt.estimators.FailureAwareReward` as JSON-ready
    data (every round with its failure indices), or None for a standard estimator."""
    result = getattr(estimator, "result_", None)
    if result is None:
        return None
    rounds = []
    for h in result.history:
        record = h.to_dict()
        record["failures"] = [int(i) for i in h.failures]
        record["changed"] = [int(i) for i in record["changed"]]
        rounds.append(record)
    return {"stop_reason": result.stop_reason, "threshold": result.threshold, "tightened": [int(i) for i in np.asarray(result.tightened).reshape(-1)],
            "rounds": rounds}


@dataclass(frozen=True, eq=False)
class RewardModel:
    """A linear reward over frozen features, with its provenance and certificate.

    Build one with :meth:`from_estimator`, write it with :meth:`save`, read it with :meth:`load`;
    :meth:`score_texts` embeds and scores new completions with the recorded feature recipe.
    """

    theta: np.ndarray
    method: str
    hyper_parameters: dict
    certificate: dict
    status: str
    training: dict = field(default_factory=dict)
    features: FeatureSpec | None = None
    fa: dict | None = None
    geometry: dict | None = None
    arrays: dict = field(default_factory=dict)
    version: str = ""
    created: str = ""

    def __post_init__(self):
        theta = np.asarray(self.theta, dtype=np.float64).reshape(-1)
        if theta.size == 0 or not np.isfinite(theta).all():
            raise DataError("theta must be a non-empty finite vector")
        if self.features is not None and self.features.dim not in (None, theta.size):
            raise DataError(f"theta has d={theta.size} but the standardisation has d={self.features.dim}")
        theta.setflags(write=False)
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "version", self.version or package_version())

    @property
    def dim(self) -> int:
        return int(self.theta.size)

    @property
    def kind(self) -> str:
        from fairl_opt.estimators import get_method

        return get_method(self.method).kind

    @property
    def failure_aware(self) -> bool:
        return self.fa is not None

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_estimator(cls, estimator, method: str, hyper_parameters: dict, *, features=None,
                       training=None, geometry=None) -> "RewardModel":
        """The reward a fitted estimator of :data:`fairl_opt.estimators.METHODS` found."""
        cert = estimator.certificate_
        arrays = {}
        for attr, name in FA_ARRAYS.items():
            value = getattr(estimator, attr, None)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=np.float64)
        return cls(theta=estimator.theta_, method=method, hyper_parameters=dict(hyper_parameters),
                   certificate=cert.to_dict(), status=str(cert.status.value), training=dict(training or {}),
                   features=features, fa=fa_record(estimator), geometry=geometry, arrays=arrays,
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    # -- scoring -----------------------------------------------------------------------------
    def score_features(self, features) -> np.ndarray:
        """``features @ θ`` for features already in the reward's (standardised) units."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(f"features have shape {x.shape}, this reward reads (n, {self.dim})")
        return x @ self.theta

    def score_raw(self, raw) -> np.ndarray:
        """Rewards of raw (unstandardised) feature rows."""
        spec = self.features
        return self.score_features(spec.standardise(raw) if spec is not None else raw)

    def score_texts(self, completions, prompts=None, *, cache_dir=None, batch_size: int = 32,
                    workers: int = 1, progress=True, scheduler=None) -> np.ndarray:
        """Rewards of ``completions`` (with ``prompts`` when the features include the prompt);
        ``scheduler`` (a ``distributed.Client`` or an address) embeds them on a Dask cluster.

        Raises
        ------
        DataError
            When the reward has no feature model (it was fitted on hand-made features) or the
            installed feature model's fingerprint differs from the recorded one.
        """
        if self.features is None:
            raise DataError("this reward was fitted on features that did not come from a text model; "
                            "it can score feature rows (score_features), not texts")
        return self.score_features(self.features.embed(completions, prompts, cache_dir=cache_dir,
                                                       batch_size=batch_size, workers=workers,
                                                       progress=progress, scheduler=scheduler))

    # -- I/O ---------------------------------------------------------------------------------
    def manifest(self) -> dict:
        from fairl_opt.estimators import get_method

        return {
            "format": FORMAT, "fairl_version": self.version, "created": self.created,
            "method": self.method, "kind": get_method(self.method).kind, "failure_aware": self.fa is not None,
            "hyper_parameters": self.hyper_parameters, "status": self.status, "certificate": self.certificate,
            "training": self.training, "dim": self.dim,
            "features": None if self.features is None else self.features.to_dict(),
            "fa": self.fa, "geometry": self.geometry,
        }

    def _array_files(self) -> dict:
        files = {"theta.npy": self.theta}
        if self.features is not None and self.features.mean is not None:
            files["feature_mean.npy"] = self.features.mean
            files["feature_scale.npy"] = self.features.scale
        files.update(self.arrays)
        return files

    def save(self, folder) -> Path:
        """Write the folder (created when missing); the arrays first, ``reward.json`` last, each
        atomically. Returns the folder."""
        out = check_output_dir(folder)
        out.mkdir(parents=True, exist_ok=True)
        records = {}
        for name, arr in self._array_files().items():
            data = _npy_bytes(np.asarray(arr))
            _atomic(out / name, lambda fh, data=data: fh.write(data))
            records[name] = {"sha256": hashlib.sha256(data).hexdigest(), "shape": list(np.shape(arr)),
                             "dtype": str(np.asarray(arr).dtype)}
        manifest = self.manifest()
        manifest["files"] = records
        atomic_write_text(out / MANIFEST, json.dumps(jsonable(manifest), indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, folder) -> "RewardModel":
        """Read a folder :meth:`save` wrote, verifying every array against ``reward.json``.

        Raises
        ------
        DataError
            Naming the folder and the file at fault: missing, not JSON, another format, an array
            whose checksum, shape or dtype differs from its record, or inconsistent contents.
        """
        from fairl_opt._io import read_text_utf8

        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"reward folder {folder} does not exist (write one with `fairl fit --out`)")
        text = read_text_utf8(folder / MANIFEST, "reward manifest")
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{folder / MANIFEST}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else None
            raise DataError(f"{folder / MANIFEST}: format {got!r} is not {FORMAT!r}")
        records = manifest.get("files")
        if not isinstance(records, dict) or "theta.npy" not in records:
            raise DataError(f"{folder / MANIFEST}: no 'files' record for theta.npy")
        arrays = {name: _read_verified(folder, name, record) for name, record in records.items()}
        features = None
        if manifest.get("features") is not None:
            features = FeatureSpec.from_dict(manifest["features"], arrays.pop("feature_mean.npy", None),
                                             arrays.pop("feature_scale.npy", None),
                                             where=f"{folder / MANIFEST}: features")
        theta = arrays.pop("theta.npy")
        for key in ("method", "status"):
            if not isinstance(manifest.get(key), str):
                raise DataError(f"{folder / MANIFEST}: field {key!r} missing or not a string")
        from fairl_opt.estimators import METHODS

        if manifest["method"] not in METHODS:
            raise DataError(f"{folder / MANIFEST}: unknown method {manifest['method']!r}")
        try:
            return cls(theta=theta, method=manifest["method"], hyper_parameters=manifest.get("hyper_parameters") or {},
                       certificate=manifest.get("certificate") or {}, status=manifest["status"],
                       training=manifest.get("training") or {}, features=features, fa=manifest.get("fa"),
                       geometry=manifest.get("geometry"), arrays=arrays,
                       version=manifest.get("fairl_version", ""), created=manifest.get("created", ""))
        except DataError as exc:
            raise DataError(f"{folder}: {exc}") from None


def _read_verified(folder: Path, name: str, record) -> np.ndarray:
    path = folder / name
    if "/" in name or "\\" in name or name.startswith("."):
        raise DataError(f"{folder / MANIFEST}: file name {name!r} is not a plain file name")
    if not isinstance(record, dict):
        raise DataError(f"{folder / MANIFEST}: record of {name} is not an object")
    if not path.is_file():
        raise DataError(f"{path}: listed in {MANIFEST} but missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise DataError(f"{path}: checksum differs from {MANIFEST} (damaged or edited)")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a .npy array readable without pickle ({exc})") from None
    if list(arr.shape) != record.get("shape") or str(arr.dtype) != record.get("dtype"):
        raise DataError(f"{path}: shape/dtype {arr.shape}/{arr.dtype} differ from {MANIFEST}")
    return arr
