"""Input checks shared by the metrics: each raises a DataError naming the argument (and the first
bad index for non-finite values)."""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError

_NUMERIC_KINDS = "biuf"


def _describe(value: float) -> str:
    if np.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def _first_nonfinite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad.ravel())), arr.shape)
        where = ", ".join(str(int(i)) for i in idx)
        raise DataError(f"{name}[{where}] is {_describe(float(arr[idx]))}")


def _as_numeric(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged lists, objects numpy cannot convert
        raise DataError(f"{name} must be an array of real numbers: {exc}") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{name} must contain real numbers, got dtype {arr.dtype}"
        )
    return arr.astype(np.float64, copy=False)


def _as_vector(x, name: str) -> np.ndarray:
    """Return ``x`` as a non-empty, finite, 1-D float64 array."""
    arr = _as_numeric(x, name)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name} must be non-empty")
    _first_nonfinite(arr, name)
    return arr


def _check_same_length(arr: np.ndarray, name: str, n: int, ref: str) -> None:
    if arr.shape[0] != n:
        raise DataError(
            f"{name} has length {arr.shape[0]} but {ref} has length {n}"
        )


def _as_labels(labels, n: int, ref: str) -> np.ndarray:
    """Return ``labels`` as a 1-D bool array of length ``n``."""
    arr = _as_numeric(labels, "labels")
    if arr.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {arr.shape}")
    _check_same_length(arr, "labels", n, ref)
    bad = (arr != 0) & (arr != 1)  # nan compares unequal to both
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"labels[{i}] is {float(arr[i])!r}; expected 0/1 or False/True"
        )
    return arr == 1


def _prompt_index(prompt_ids, n: int, ref: str) -> np.ndarray:
    """Map ``prompt_ids`` to integer group codes ``0..k-1``."""
    ids = np.asarray(prompt_ids)
    if ids.ndim != 1:
        raise DataError(f"prompt_ids must be 1-D, got shape {ids.shape}")
    _check_same_length(ids, "prompt_ids", n, ref)
    if ids.dtype.kind in "fc":
        _first_nonfinite(ids, "prompt_ids")
    try:
        _, inverse = np.unique(ids, return_inverse=True)
    except TypeError as exc:
        raise DataError(
            f"prompt_ids must be mutually comparable values: {exc}"
        ) from exc
    return inverse.reshape(-1)
