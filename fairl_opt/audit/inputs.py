"""Load a pairs file and a saved reward for an audit and check that the reward can read the pairs:
the same dimension, the same feature model, truncation and prompt use, and one set of units.

Two standardisations are not an error: the pairs file stores its own ``(mean, scale)`` beside the
standardised features, so its raw features are recovered exactly and re-standardised with the
reward's (the audit says so). A different feature model (fingerprint), max length or prompt use is
an error: those features are not the ones the reward reads.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings
from fairl_opt.pairs import PreferencePairs

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class AuditInputs:
    """What an audit reads.

    Attributes
    ----------
    data : PairsData
        The pairs, their features in the reward's units (re-standardised when needed).
    reward : RewardModel
    pairs_path, reward_dir : Path or None
        Where they came from (None when built in Python).
    features : dict
        ``pairs`` and ``reward`` (their FeatureSpec fields or None), ``checked`` (both recorded a
        recipe and it matched), ``restandardised`` (the pairs were mapped to the reward's units).
    same_file : bool or None
        Whether the pairs file is byte for byte the one the reward was fitted on (its sha256 against
        the reward's ``training.input_sha256``); None when either is unknown.
    notes : list of str
        What the check could not establish (e.g. one side records no feature model).
    """

    data: PairsData
    reward: RewardModel
    pairs_path: Path | None = None
    reward_dir: Path | None = None
    features: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    same_file: bool | None = None


def _raw(x: np.ndarray, spec) -> np.ndarray:
    """Raw features from features standardised by ``spec`` (unchanged without a standardisation)."""
    if spec is None or spec.mean is None:
        return x
    return x * spec.scale + spec.mean


def _standardise(raw: np.ndarray, spec) -> np.ndarray:
    if spec is None or spec.mean is None:
        return raw
    return (raw - spec.mean) / spec.scale


def _same_standardisation(a, b) -> bool:
    if (a.mean is None) != (b.mean is None):
        return False
    return a.mean is None or (np.array_equal(a.mean, b.mean) and np.array_equal(a.scale, b.scale))


def check_inputs(data: PairsData, reward: RewardModel, pairs_name="the pairs",
                 reward_name="the reward") -> AuditInputs:
    """:class:`AuditInputs` for ``data`` and ``reward`` after checking that they fit together.

    Raises
    ------
    DataError
        Naming both inputs: the dimensions differ, or the pairs were embedded with another feature
        model (fingerprint), max length or prompt use than the reward reads.
    """
    if not isinstance(data, PairsData):
        raise DataError(f"{pairs_name}: expected a PairsData, got {type(data).__name__}")
    if not isinstance(reward, RewardModel):
        raise DataError(f"{reward_name}: expected a RewardModel, got {type(reward).__name__}")
    if data.pairs.dim != reward.dim:
        raise DataError(f"{pairs_name} has features of dimension d={data.pairs.dim} but {reward_name} reads "
                        f"d={reward.dim}: they come from different feature models")
    p, r = data.features, reward.features
    notes = []
    info = {"pairs": None if p is None else p.to_dict(), "reward": None if r is None else r.to_dict(),
            "checked": False, "restandardised": False}
    if p is not None and r is not None:
        for name, a, b in (("fingerprint", p.fingerprint, r.fingerprint), ("max_length", p.max_length, r.max_length),
                           ("with_prompt", p.with_prompt, r.with_prompt)):
            if a != b:
                raise DataError(
                    f"{pairs_name} were embedded differently from what {reward_name} reads: feature model "
                    f"{name} {a!r} (model {p.model!r}) versus {b!r} (model {r.model!r}); re-embed the pairs "
                    "with the reward's feature model (fairl pairs --model ...) or audit a reward fitted on them")
        info["checked"] = True
        if not _same_standardisation(p, r):
            raw = [_raw(x, p) for x in (data.pairs.chosen, data.pairs.rejected)]
            chosen, rejected = (_standardise(x, r) for x in raw)
            pairs = PreferencePairs(chosen, rejected, data.pairs.kinds, data.pairs.prompt_ids, duplicates="allow")
            data = PairsData(pairs, data.prompt_text, data.chosen_text, data.rejected_text, data.test_mask,
                             data.source_rows, r, data.meta)
            info["restandardised"] = True
            notes.append("the pairs file and the reward were standardised differently; the pairs' raw "
                         "features were recovered from the file's mean/scale and re-standardised with the "
                         "reward's")
            log.info("re-standardised the pairs with the reward's feature mean/scale")
    elif p is None and r is None:
        notes.append("neither input records a feature model (hand-made or simulated features): the audit "
                     "assumes the features are the ones the reward was fitted on")
    else:
        missing = pairs_name if p is None else reward_name
        notes.append(f"{missing} records no feature model, so the audit cannot check that the pairs were "
                     "embedded as the reward reads them; the features are used as they are")
    return AuditInputs(data, reward, None, None, info, notes)


def load_inputs(pairs_path, reward_dir, duplicates: str = "allow") -> AuditInputs:
    """Read ``pairs_path`` (:meth:`PairsData.load`) and ``reward_dir`` (:meth:`RewardModel.load`) and
    :func:`check_inputs` them. Errors are DataErrors naming the file or folder."""
    reward_dir = Path(reward_dir)
    if not reward_dir.is_dir():
        raise DataError(f"--reward {reward_dir}: no such folder (write one with `fairl fit --out`)")
    data = PairsData.load(pairs_path, duplicates=duplicates)
    reward = RewardModel.load(reward_dir)
    inputs = check_inputs(data, reward, f"pairs file {pairs_path}", f"reward {reward_dir}")
    recorded = reward.training.get("input_sha256") if isinstance(reward.training, dict) else None
    same = None
    if isinstance(recorded, str):
        digest = hashlib.sha256()
        with open(pairs_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        same = digest.hexdigest() == recorded
    return AuditInputs(inputs.data, inputs.reward, Path(pairs_path), reward_dir, inputs.features, inputs.notes, same)


def fa_settings(reward: RewardModel, where: str = "the reward") -> tuple[FASettings, str]:
    """The failure rule's settings and where they come from: the reward's own FA settings (read from
    its hyper-parameters, flat or under ``fa``/``settings``/``fa_settings``) for an FA reward, else
    the :class:`FASettings` defaults."""
    if not reward.failure_aware:
        return FASettings(), "the FASettings defaults (the reward is not failure-aware)"
    hp = reward.hyper_parameters if isinstance(reward.hyper_parameters, dict) else {}
    source = hp
    for key in ("fa", "settings", "fa_settings"):
        if isinstance(hp.get(key), dict):
            source = hp[key]
            break
    known = {k: source[k] for k in FASettings.names() if k in source}
    try:
        settings = FASettings(**known)
    except (DataError, TypeError) as exc:
        raise DataError(f"{where}: hyper_parameters hold FA settings that do not validate ({exc})") from None
    if not known:
        return settings, ("the FASettings defaults (the FA reward's hyper-parameters record no failure-rule "
                          "settings)")
    return settings, "the reward's own FA settings"
