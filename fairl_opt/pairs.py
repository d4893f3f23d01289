"""Preference pairs over frozen embeddings: validated arrays, kinds, prompt ids, splits, npz I/O.

A pair i says completion ``chosen[i]`` is preferred to ``rejected[i]`` for the same prompt. Each pair
gives one row of the difference matrix ``delta[i] = chosen[i] - rejected[i]``; a linear reward θ
explains the pair when ``delta[i] @ theta > 0``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairl_opt._io import atomic_savez
from fairl_opt.exceptions import DataError

#: Pair kinds from a ground-truth labeller (T = toxic, NT = non-toxic), "rejected→chosen" reading as
#: "base → aligned": T→NT pairs are the informative ones, NT→T pairs are regressions.
#: Pair kinds, read base (rejected) → aligned (chosen): the one home of the labels.
KINDS = ("T->NT", "NT->NT", "T->T", "NT->T")
#: The informative kind: a toxic base completion, a non-toxic aligned one.
INFORMATIVE = "T->NT"
_KIND_ALIASES = {"T→NT": "T->NT", "NT→NT": "NT->NT", "T→T": "T->T", "NT→T": "NT->T"}

NPZ_KEYS = ("chosen", "rejected", "kinds", "prompt_ids")


#: dtype kinds accepted as features: bool, signed and unsigned integers, real floats.
_REAL_KINDS = "biuf"
_KIND_NAMES = {"c": "complex", "O": "object", "U": "strings", "S": "bytes", "M": "datetimes",
               "m": "timedeltas", "V": "structured/void"}


def _check_real_dtype(name: str, dtype) -> None:
    if dtype.kind not in _REAL_KINDS:
        what = _KIND_NAMES.get(dtype.kind, "non-numeric")
        raise DataError(f"{name} must be a numeric array of real numbers, got {what} (dtype {dtype})")


def _as_float_matrix(name: str, value, dtype) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested lists
        raise DataError(f"{name} must be a numeric array: {exc}") from None
    _check_real_dtype(name, raw.dtype)  # complex would lose its imaginary part, strings would parse
    try:
        # A copy: freezing the caller's own array (or sharing memory with it, so that a later write
        # could bypass validation and stale the cached delta) would be a side effect.
        arr = np.array(raw, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array: {exc}") from None
    if arr.ndim != 2:
        raise DataError(f"{name} must be 2-D (pairs x features), got shape {arr.shape}")
    return arr


def _as_prompt_ids(value, n: int) -> np.ndarray:
    """``value`` as int64 prompt ids >= 0, one per pair; DataError naming the entry at fault."""
    try:
        ids = np.asarray(value)
    except (TypeError, ValueError):
        raise DataError("prompt_ids must be integers") from None
    if ids.ndim != 1 or ids.shape[0] != n:
        raise DataError(f"prompt_ids must be 1-D with one id per pair ({n}), got shape {ids.shape}")
    if ids.dtype.kind not in "iuf":
        what = "bool" if ids.dtype.kind == "b" else _KIND_NAMES.get(ids.dtype.kind, "non-numeric")
        raise DataError(f"prompt_ids must be integers, got {what} (dtype {ids.dtype})")
    if ids.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(ids) | (ids != np.round(ids)))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"prompt_ids[{i}] = {ids.tolist()[i]!r} is not an integer")
    if ids.dtype.kind == "u":  # uint64 2**64 - 1 would wrap to -1
        too_big = np.flatnonzero(ids > np.uint64(np.iinfo(np.int64).max))
    elif ids.dtype.kind == "f":  # 2.0**63 is the first float above the int64 range
        too_big = np.flatnonzero(np.abs(ids) >= 2.0**63)
    else:
        too_big = np.empty(0, dtype=np.int64)
    if too_big.size:
        i = int(too_big[0])
        raise DataError(f"prompt_ids[{i}] = {ids.tolist()[i]!r} (pair {i}) does not fit a 64-bit integer")
    negative = np.flatnonzero(ids < 0)
    if negative.size:
        i = int(negative[0])
        raise DataError(f"prompt_ids[{i}] = {ids.tolist()[i]!r} (pair {i}) is negative; ids must be >= 0")
    return ids.astype(np.int64)


def _first_nonfinite_row(arr: np.ndarray) -> int | None:
    bad = ~np.isfinite(arr).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def pair_kinds(rejected_toxic, chosen_toxic) -> np.ndarray:
    """The kind of each pair from its two toxicity labels: ``f"{rejected}->{chosen}"`` with each side
    ``T`` (toxic) or ``NT``, e.g. ``T->NT`` for a toxic base and a non-toxic aligned completion."""
    r = np.where(np.asarray(rejected_toxic, dtype=bool), "T", "NT")
    c = np.where(np.asarray(chosen_toxic, dtype=bool), "T", "NT")
    return np.char.add(np.char.add(r, "->"), c)


def normalise_kinds(kinds, n: int) -> np.ndarray | None:
    """Map kind labels (ASCII ``T->NT`` or arrow ``T→NT``) to a fixed-width string array.

    Raises
    ------
    DataError
        If the length differs from ``n`` or a label is not one of :data:`KINDS` (names the pair).
    """
    if kinds is None:
        return None
    arr = np.asarray(kinds)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"kinds must be 1-D with one label per pair ({n}), got shape {arr.shape}")
    out = np.empty(n, dtype="<U6")
    for i, raw in enumerate(arr.tolist()):  # Python objects: messages show 'x', not np.str_('x')
        k = _KIND_ALIASES.get(str(raw), str(raw))
        if k not in KINDS:
            raise DataError(f"kinds[{i}] = {raw!r} (pair {i}) is not one of {', '.join(KINDS)}")
        out[i] = k
    return out


@dataclass(frozen=True, eq=False)
class PreferencePairs:
    """Validated preference pairs ``chosen[i] ≻ rejected[i]``.

    Parameters
    ----------
    chosen, rejected : array of shape (n, d)
        Features of the preferred and the dispreferred completion of each pair.
    kinds : array of str of shape (n,), optional
        One of :data:`KINDS` per pair.
    prompt_ids : array of int of shape (n,), optional
        The prompt each pair belongs to; splits keep a prompt's pairs together.
    duplicates : {"error", "allow"}
        Identical pairs (same chosen and rejected rows) are an error by default; they weight a
        constraint twice in soft programs and add nothing to hard ones.
    dtype : numpy dtype
        Storage type (float64 by default; float32 halves memory).

    Raises
    ------
    DataError
        On empty data, wrong shapes, NaN/inf, a zero difference row or a duplicate pair; the
        message names the pair index.

    Examples
    --------
    >>> import numpy as np
    >>> pairs = PreferencePairs(np.eye(3), np.zeros((3, 3)))
    >>> pairs.delta.shape, pairs.n_pairs, pairs.dim
    ((3, 3), 3, 3)
    """

    chosen: np.ndarray
    rejected: np.ndarray
    kinds: np.ndarray | None = None
    prompt_ids: np.ndarray | None = None
    duplicates: str = "error"
    dtype: object = np.float64

    def __post_init__(self):
        try:
            storage = np.dtype(self.dtype)
        except TypeError:
            raise DataError(f"dtype must be a float type such as float64 or float32, got {self.dtype!r}") from None
        if storage.kind != "f":
            raise DataError(f"dtype must be a float type such as float64 or float32, got {storage}")
        chosen = _as_float_matrix("chosen", self.chosen, self.dtype)
        rejected = _as_float_matrix("rejected", self.rejected, self.dtype)
        if chosen.shape[0] == 0:
            raise DataError("no pairs: chosen has 0 rows")
        if chosen.shape[1] == 0:
            raise DataError("features have dimension 0")
        if chosen.shape != rejected.shape:
            if chosen.shape[0] != rejected.shape[0]:
                raise DataError(
                    f"chosen has {chosen.shape[0]} pairs but rejected has {rejected.shape[0]}"
                )
            raise DataError(
                f"feature dimension mismatch: chosen has d={chosen.shape[1]}, "
                f"rejected has d={rejected.shape[1]}"
            )
        for name, arr in (("chosen", chosen), ("rejected", rejected)):
            row = _first_nonfinite_row(arr)
            if row is not None:
                col = int(np.flatnonzero(~np.isfinite(arr[row]))[0])
                raise DataError(
                    f"pair {row}: {name}[{row}, {col}] is {arr[row, col]} (NaN/inf not allowed)"
                )
        n = chosen.shape[0]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            delta = chosen - rejected
        if not np.isfinite(delta).all():
            row = _first_nonfinite_row(delta)
            raise DataError(f"pair {row}: chosen - rejected overflows (values too large)")
        zero = np.flatnonzero(~delta.any(axis=1))
        if zero.size:
            raise DataError(
                f"pair {int(zero[0])}: chosen equals rejected (difference row is 0, a tie carries "
                f"no preference); {zero.size} such pair(s) in all"
            )
        if self.duplicates not in ("error", "allow"):
            raise DataError(f"duplicates must be 'error' or 'allow', got {self.duplicates!r}")
        if self.duplicates == "error":
            dup = find_duplicate_rows(np.hstack([chosen, rejected]))
            if dup is not None:
                raise DataError(
                    f"pair {dup[1]} duplicates pair {dup[0]} (same chosen and rejected); "
                    "drop it or pass duplicates='allow'"
                )
        kinds = normalise_kinds(self.kinds, n)
        prompt_ids = None if self.prompt_ids is None else _as_prompt_ids(self.prompt_ids, n)
        for arr in (chosen, rejected, delta):
            arr.setflags(write=False)
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "rejected", rejected)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "prompt_ids", prompt_ids)
        object.__setattr__(self, "_delta", delta)

    # -- views ---------------------------------------------------------------------------------
    @property
    def delta(self) -> np.ndarray:
        """Difference rows ``chosen - rejected`` (n, d), read-only, computed once."""
        return self._delta

    @property
    def n_pairs(self) -> int:
        return self.chosen.shape[0]

    @property
    def dim(self) -> int:
        return self.chosen.shape[1]

    def __len__(self) -> int:
        return self.n_pairs

    def __repr__(self) -> str:
        extra = []
        if self.kinds is not None:
            counts = {k: int((self.kinds == k).sum()) for k in KINDS}
            extra.append("kinds=" + ", ".join(f"{k}:{c}" for k, c in counts.items() if c))
        if self.prompt_ids is not None:
            extra.append(f"prompts={np.unique(self.prompt_ids).size}")
        tail = (", " + "; ".join(extra)) if extra else ""
        return f"PreferencePairs(n={self.n_pairs}, d={self.dim}{tail})"

    def subset(self, index) -> "PreferencePairs":
        """The pairs at ``index`` (int array or boolean mask), in that order.

        Raises
        ------
        DataError
            If ``index`` selects no pair.
        """
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            raise DataError("subset needs at least one pair (the index is empty)")
        return PreferencePairs(
            self.chosen[idx],
            self.rejected[idx],
            None if self.kinds is None else self.kinds[idx],
            None if self.prompt_ids is None else self.prompt_ids[idx],
            duplicates="allow",
            dtype=self.chosen.dtype,
        )

    def contradictions(self) -> list[tuple[int, int]]:
        """Pairs (i, j) that state opposite preferences over the same two completions.

        Such pairs make every hard-margin program infeasible; soft programs accept them.
        """
        forward = np.hstack([self.chosen, self.rejected])
        backward = np.hstack([self.rejected, self.chosen])
        seen = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(forward + 0.0))}
        out = []
        for j, row in enumerate(np.ascontiguousarray(backward + 0.0)):
            i = seen.get(row.tobytes())
            if i is not None and i < j:
                out.append((i, j))
        return out

    # -- splits --------------------------------------------------------------------------------
    def _groups(self) -> np.ndarray:
        return self.prompt_ids if self.prompt_ids is not None else np.arange(self.n_pairs)

    def train_test_split(self, test_fraction: float = 0.2, seed: int = 0):
        """Split by prompt (:func:`group_split`): every pair of a prompt lands on the same side.

        Returns
        -------
        train_index, test_index : int arrays
        """
        return group_split(self._groups(), test_fraction, seed)

    def kfold(self, k: int = 5, seed: int = 0):
        """k folds by prompt (:func:`group_folds`): a list of ``(train_index, test_index)``."""
        return group_folds(self._groups(), k, seed)

    # -- I/O -----------------------------------------------------------------------------------
    def save(self, path, **extra) -> Path:
        """Write an ``.npz`` with keys chosen, rejected and (when present) kinds, prompt_ids; returns
        the path written (``.npz`` appended when missing, as ``np.savez`` does).

        ``extra`` arrays (e.g. ``theta_true``) are stored alongside; they must be numeric or
        fixed-width strings so that loading never needs pickle. The file is written atomically (a
        temporary file in the same folder, then renamed), so it is never left half-written.
        """
        arrays = {"chosen": self.chosen, "rejected": self.rejected}
        if self.kinds is not None:
            arrays["kinds"] = self.kinds
        if self.prompt_ids is not None:
            arrays["prompt_ids"] = self.prompt_ids
        for key, value in extra.items():
            if key in NPZ_KEYS:
                raise DataError(f"extra array name {key!r} clashes with a pairs key")
            value = np.asarray(value)
            if value.dtype == object:
                raise DataError(f"extra array {key!r} has dtype object (would need pickle)")
            arrays[key] = value
        out = Path(path)
        if not out.name.endswith(".npz"):
            out = out.with_name(out.name + ".npz")
        return atomic_savez(out, compressed=True, **arrays)

    @classmethod
    def load(cls, path, duplicates: str = "error", dtype=np.float64) -> "PreferencePairs":
        """Read pairs written by :meth:`save` (``allow_pickle=False``)."""
        pairs, _ = load_npz(path, duplicates=duplicates, dtype=dtype)
        return pairs


def load_npz(path, duplicates: str = "error", dtype=np.float64):
    """Load pairs and any extra arrays from an ``.npz`` file without pickle.

    Returns
    -------
    pairs : PreferencePairs
    extra : dict of str -> ndarray
        Every other key in the file (e.g. ``theta_true`` written by the simulator).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):  # else np.load reports any non-npz file as "pickled data"
        raise DataError(f"{path}: not a .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:
        raise DataError(f"{path}: cannot read without pickle ({exc})") from None
    except Exception as exc:  # zipfile/OSError: not an npz at all
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    for key in ("chosen", "rejected"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (found {sorted(arrays)})")
    try:
        pairs = PreferencePairs(
            arrays.pop("chosen"),
            arrays.pop("rejected"),
            arrays.pop("kinds", None),
            arrays.pop("prompt_ids", None),
            duplicates=duplicates,
            dtype=dtype,
        )
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    return pairs, arrays


def find_duplicate_rows(matrix: np.ndarray) -> tuple[int, int] | None:
    """The first (earlier, later) indices of two identical rows, or None."""
    seen: dict[bytes, int] = {}
    # "+ 0.0" turns -0.0 into 0.0 so that equal values have equal bytes.
    for j, row in enumerate(np.ascontiguousarray(matrix + 0.0)):
        key = row.tobytes()
        i = seen.get(key)
        if i is not None:
            return i, j
        seen[key] = j
    return None


# -- prompt-grouped splits: the one home of "keep a prompt's pairs together" -------------------------
def group_split(groups, test_fraction: float = 0.2, seed: int = 0):
    """A train/test split of the rows that keeps each group (prompt) on one side.

    ``round(test_fraction · #groups)`` groups (at least 1, at most all but one), drawn by
    ``default_rng(seed).permutation`` of the sorted unique groups, form the test side.

    Returns
    -------
    train_index, test_index : int arrays
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if unique.size < 2:
        raise DataError("need at least 2 prompts to split by prompt")
    perm = np.random.default_rng(seed).permutation(unique)
    n_test = min(max(1, int(round(test_fraction * unique.size))), unique.size - 1)
    test_mask = np.isin(groups, perm[:n_test])
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def group_folds(groups, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds over the rows keeping each group (prompt) in one fold: ``[(train, test), ...]``.

    The sorted unique groups are permuted by ``default_rng(seed)`` and cut into k near-equal chunks
    (``np.array_split``); every row is tested exactly once.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise DataError(f"k must be an integer >= 2, got {k!r}")
    groups = np.asarray(groups)
    unique = np.unique(groups)
    if unique.size < k:
        raise DataError(f"k={k} folds need at least {k} prompts, have {unique.size}")
    perm = np.random.default_rng(seed).permutation(unique)
    fold_of_group = {g: f for f, chunk in enumerate(np.array_split(perm, k)) for g in chunk.tolist()}
    fold = np.fromiter((fold_of_group[g] for g in groups.tolist()), dtype=np.int64, count=groups.size)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


class PromptFolds:
    """A scikit-learn cross-validation splitter over :func:`group_folds`: ``cv=PromptFolds(k, seed)``
    with ``groups=prompt_ids`` keeps each prompt's pairs in one fold (each pair its own group when
    ``groups`` is None), the same folds the FA loop mines failures on."""

    def __init__(self, n_splits: int = 5, seed: int = 0):
        self.n_splits = n_splits
        self.seed = seed

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y=None, groups=None):
        n = len(X)
        yield from group_folds(np.arange(n) if groups is None else groups, self.n_splits, self.seed)

    def __repr__(self) -> str:
        return f"PromptFolds(n_splits={self.n_splits}, seed={self.seed})"
