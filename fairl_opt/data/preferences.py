"""Preference files in: JSONL, JSON, CSV, Parquet or a ``datasets`` folder, read through the Hugging
Face ``datasets`` library, as (prompt, chosen, rejected) texts with their source rows.

Files are read with ``datasets.load_dataset`` (``json``, ``csv``, ``parquet``) or ``load_from_disk``
(a ``save_to_disk`` folder; for a ``DatasetDict`` the ``split`` is picked), kept in memory with a
temporary cache (nothing lands in the user's ``datasets`` cache) and with datasets' own progress bars
and logs off. Nothing is fetched: a path that does not exist is an error. CSV cells are read as
strings as written (no ``NA``/``None`` guessing), so an empty cell is an empty text.

Layouts (``layout="auto"`` picks from the first row that has a ``chosen`` value):

* **standard** — ``prompt``, ``chosen``, ``rejected`` strings (TRL's preference format). The texts
  are used as they are; ``prompt + completion`` is their plain concatenation.
* **conversational** — ``chosen``/``rejected`` are lists of ``{"role", "content"}`` messages (TRL's
  conversational format). The prompt is the ``prompt`` field (a message list, or a string read as one
  user message) and, when a side starts with those prompt messages (as UltraFeedback's full
  conversations do), they are cut off it; without a ``prompt`` field it is the longest shared message
  prefix of the two sides (TRL's implicit prompt). The **prompt text** is each prompt message as
  ``"{role}: {content}\\n\\n"`` followed by ``"assistant: "``, so ``prompt + completion`` reads as the
  dialogue; the **completion text** is the content of the message(s) after the prompt, joined by
  ``"\\n\\n"``, all of which must have the role ``assistant``.
* **hh** — Anthropic-HH: no prompt field, ``chosen``/``rejected`` strings holding the whole dialogue
  (``auto`` picks it only when the first ``chosen`` holds ``"\\n\\nAssistant:"``; ``--layout hh`` always).
  As TRL's ``extract_prompt``, the prompt is the longest common prefix of the two; it is then cut back
  to the end of the last ``"\\n\\nAssistant:"`` it contains (so two replies that start alike, "Sure, I"
  and "Sure, no", keep " Sure, ..." in the completions); without that marker the prefix is kept, less
  a trailing space (TRL's rule). The completions are the rest of each string (usually starting with a
  space), so ``prompt + completion`` is the original text. Newlines inside texts are kept.

Rows are numbered from 0 in file order (a ``DatasetDict``: within the split); for JSON lines files,
messages also give the 1-based line (blank lines are skipped, and counted). A row is **bad** when a
field is missing (``missing_field``), not a string (``not_a_string``) or not a list of messages
(``bad_messages``), a text (prompt or completion) is empty or whitespace (``empty_text``), the two
completions are identical (``identical_sides``), or it repeats an earlier row's prompt, chosen and
rejected (``duplicate_row``). Bad rows are an error naming the first few with their reason, unless
``skip_bad`` drops them (counted by reason, one warning).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fairl_opt._io import decode_utf8
from fairl_opt.exceptions import DataError

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "standard", "conversational", "hh")
#: Bad-row reasons (the keys of ``bad_rows`` in outputs) and what each means.
BAD_REASONS = {
    "missing_field": "a field is missing or null",
    "not_a_string": "a field is not a string",
    "bad_messages": "not a list of {role, content} messages, or a reply not by the assistant",
    "empty_text": "the prompt or a completion is empty or whitespace",
    "identical_sides": "chosen and rejected are the same text",
    "duplicate_row": "the same prompt, chosen and rejected as an earlier row",
    "identical_features": "chosen and rejected embed identically (e.g. equal in the first max_length tokens)",
    "duplicate_features": "chosen and rejected embed exactly as an earlier pair's",
}
HH_MARKER = "\n\nAssistant:"
SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SHOWN = 5  #: bad rows named in an error message before "... and N more"


class BadRow(NamedTuple):
    """A bad row: its 0-based number, the reason (a key of :data:`BAD_REASONS`) and the detail."""

    row: int
    reason: str
    detail: str


@dataclass(frozen=True, eq=False)
class PreferenceTexts:
    """The usable rows of a preference file as texts.

    ``prompts``, ``chosen``, ``rejected`` (lists of str, one per usable row, see the module docstring);
    ``rows`` (int array: the 0-based row of each in the file or split); ``layout`` (``standard``,
    ``conversational`` or ``hh``); ``fields`` (the columns used for ``prompt``, None when the prompt is
    the sides' shared prefix, ``chosen`` and ``rejected``); ``bad`` (the :class:`BadRow` s dropped by
    ``skip_bad``); ``n_read`` (rows read); ``source`` (the path); ``lines`` (the 1-based line of every
    row read, for JSON lines files; else None).
    """

    prompts: list
    chosen: list
    rejected: list
    rows: np.ndarray
    layout: str
    fields: dict
    bad: list = field(default_factory=list)
    n_read: int = 0
    source: str = ""
    lines: tuple | None = None

    def __len__(self) -> int:
        return len(self.chosen)

    def bad_counts(self) -> dict:
        """``{reason: count}`` of :attr:`bad`."""
        return dict(Counter(b.reason for b in self.bad))


def where(row: int, lines=None) -> str:
    """``row N``, with ``(line M)`` when the lines of the rows are known."""
    return f"row {row}" if lines is None else f"row {row} (line {lines[row]})"


def bad_rows_error(source: str, bad, n_read: int, lines=None, note: str = "") -> DataError:
    """One DataError naming the first :data:`SHOWN` bad rows with their reasons and the total."""
    counts = ", ".join(f"{v} {k}" for k, v in Counter(b.reason for b in bad).items())
    shown = "; ".join(f"{where(b.row, lines)}: {b.detail}" for b in bad[:SHOWN])
    more = f"; ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    return DataError(f"{source}: {len(bad)} bad row(s) of {n_read} ({counts}){note}; --skip-bad "
                     f"(skip_bad=True) drops them: {shown}{more}")


def warn_skipped(source: str, bad, n_read: int, lines=None) -> None:
    counts = ", ".join(f"{v} {k}" for k, v in Counter(b.reason for b in bad).items())
    logger.warning("%s: skipped %d bad row(s) of %d (%s); first: %s: %s", source, len(bad), n_read, counts,
                   where(bad[0].row, lines), bad[0].detail)


# -- reading through datasets -------------------------------------------------------------------
@contextmanager
def _quiet_datasets():
    """``datasets`` with its progress bars and logs off, restored afterwards."""
    import datasets
    from datasets.utils import logging as ds_logging

    bars = not datasets.are_progress_bars_disabled()
    level = ds_logging.get_verbosity()
    datasets.disable_progress_bars()
    ds_logging.set_verbosity(logging.CRITICAL)  # its loaders log "Failed to load ..." at ERROR
    try:
        yield datasets
    finally:
        if bars:
            datasets.enable_progress_bars()
        ds_logging.set_verbosity(level)


def _diagnose_json(path: Path, text: str) -> None:
    """DataError naming the line of the first JSON fault in ``text`` (nothing when none is found)."""
    body = text.lstrip("\ufeff")
    try:
        whole = json.loads(body)
    except json.JSONDecodeError as exc:
        if body.lstrip().startswith("["):
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    else:
        if isinstance(whole, list):
            bad = next((i for i, x in enumerate(whole) if not isinstance(x, dict)), None)
            if bad is not None:
                raise DataError(f"{path}: item {bad} of the JSON list is not an object (one row per object)")
            return
        if not isinstance(whole, dict):
            raise DataError(f"{path}: holds a JSON {type(whole).__name__}, expected objects (one per row)")
    for lineno, line in enumerate(body.split("\n"), 1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object (one row per line), got {_kind(obj)}")


def _csv_header(path: Path) -> list[str]:
    reader = csv.reader(io.StringIO(decode_utf8(path.read_bytes(), path), newline=""))
    header, first = next(reader, None), next(reader, None)
    if not header or first is None:
        raise DataError(f"{path}: holds no rows (a CSV file needs a header row and data rows)")
    if len(set(header)) != len(header):
        raise DataError(f"{path}: CSV header repeats a column name: {header}")
    return header


@contextmanager
def _opened(path: Path, split: str):
    """``(dataset, lines)``: the rows of ``path`` (an in-memory ``datasets.Dataset``) and, for JSON
    lines, the line of each row."""
    if not path.exists():
        raise DataError(f"preference file {path} does not exist")
    kind = "disk" if path.is_dir() else SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r} (expected .jsonl, .json, .csv, .parquet "
                        "or a datasets save_to_disk folder)")
    if kind != "disk" and split != "train":
        raise DataError(f"{path}: a file holds one split, train: --split {split!r} does not apply")
    lines, text = None, None
    with tempfile.TemporaryDirectory(prefix="fairl-datasets-") as tmp, _quiet_datasets() as datasets:
        source, kwargs = path, {}
        if kind == "json":
            text = decode_utf8(path.read_bytes(), path)
            if not text.lstrip("\ufeff \t\r\n").startswith("["):
                lines = [i for i, line in enumerate(text.split("\n"), 1) if line.strip()]  # "\n" only
                if len(lines) != text.count("\n") + (not text.endswith("\n")):  # blank lines: datasets'
                    source = Path(tmp) / "rows.jsonl"  # mixed-type fallback reads a copy without them
                    source.write_text("\n".join(text.split("\n")[i - 1] for i in lines), encoding="utf-8")
        elif kind == "csv":
            kwargs = dict(na_filter=False, features=datasets.Features(
                {name: datasets.Value("string") for name in _csv_header(path)}))
        if source == path and any(c in str(path) for c in "*?[]{}"):  # data_files are glob patterns
            source = Path(tmp) / f"data{path.suffix.lower()}"
            shutil.copyfile(path, source)
        try:
            if kind == "disk":
                loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
            else:
                loaded = datasets.load_dataset(kind, data_files={"train": str(source.absolute())}, cache_dir=tmp,
                                               keep_in_memory=True, **kwargs)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - the datasets/pyarrow/pandas boundary: never a traceback
            if kind == "json":
                _diagnose_json(path, text)
            cause = exc.__cause__ or exc
            what = {"disk": "datasets save_to_disk folder", "json": "JSON file", "csv": "CSV file",
                    "parquet": "Parquet file"}[kind]
            detail = " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
            raise DataError(f"{path}: not a readable {what} ({detail})") from None
        if isinstance(loaded, datasets.DatasetDict):  # a file: {"train": ...}
            if split not in loaded:
                raise DataError(f"{path}: no split {split!r} (splits: {', '.join(loaded)}); pass --split")
            loaded = loaded[split]
        elif split != "train":
            raise DataError(f"{path}: holds one dataset, not a DatasetDict: --split {split!r} does not apply")
        if lines is not None and len(lines) != loaded.num_rows:
            lines = None
        yield loaded, (None if lines is None else tuple(lines))


# -- rows to texts ------------------------------------------------------------------------------
class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _kind(value) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _string(value, name: str) -> str:
    if value is None:
        raise _Bad("missing_field", f"field {name!r} is missing")
    if not isinstance(value, str):
        raise _Bad("not_a_string", f"field {name!r} is {_kind(value)}, expected a string")
    return value


def _messages(value, name: str) -> list[tuple[str, str]]:
    if value is None:
        raise _Bad("missing_field", f"field {name!r} is missing")
    if not isinstance(value, list):
        raise _Bad("bad_messages", f"field {name!r} is {_kind(value)}, expected a list of messages")
    out = []
    for k, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _Bad("bad_messages", f"{name}[{k}] is not a message with string 'role' and 'content'")
        out.append((m["role"], m["content"]))
    return out


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(prompt, chosen completion, rejected completion)`` of two HH dialogues (module docstring)."""
    n, hi = 0, min(len(chosen), len(rejected))  # the longest common prefix, by bisection (C-speed
    while n < hi:  # slice comparisons, not a Python loop over the characters of long dialogues)
        mid = (n + hi + 1) // 2
        n, hi = (mid, hi) if chosen[:mid] == rejected[:mid] else (n, mid - 1)
    marker = chosen.rfind(HH_MARKER, 0, n)
    if marker >= 0:
        n = marker + len(HH_MARKER)
    elif 0 < n < min(len(chosen), len(rejected)) and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def render_prompt(messages) -> str:
    """The prompt text of conversational ``(role, content)`` messages (module docstring)."""
    return "".join(f"{role}: {content}\n\n" for role, content in messages) + "assistant: "


def _completion(messages, name: str) -> str:
    for k, (role, _) in enumerate(messages):
        if role != "assistant":
            raise _Bad("bad_messages", f"{name}: message {k} after the prompt has role {role!r}, expected "
                                       "'assistant'")
    return "\n\n".join(content for _, content in messages)


def _conversational(prompt, chosen, rejected, fields) -> tuple[str, str, str]:
    c = _messages(chosen, fields["chosen"])
    r = _messages(rejected, fields["rejected"])
    if fields["prompt"] is not None:
        p = _string(prompt, fields["prompt"]) if not isinstance(prompt, list) else None
        p = [("user", p)] if p is not None else _messages(prompt, fields["prompt"])
        c = c[len(p):] if c[:len(p)] == p else c
        r = r[len(p):] if r[:len(p)] == p else r
    else:
        n = 0
        while n < min(len(c), len(r)) and c[n] == r[n]:
            n += 1
        p, c, r = c[:n], c[n:], r[n:]
    if not p:
        raise _Bad("empty_text", "the prompt is empty (no prompt messages)" if fields["prompt"] else
                   "chosen and rejected share no prompt messages")
    return render_prompt(p), _completion(c, fields["chosen"]), _completion(r, fields["rejected"])


def _texts(layout: str, prompt, chosen, rejected, fields) -> tuple[str, str, str]:
    if layout == "conversational":
        p, c, r = _conversational(prompt, chosen, rejected, fields)
    else:
        c, r = _string(chosen, fields["chosen"]), _string(rejected, fields["rejected"])
        if layout == "standard":
            p = _string(prompt, fields["prompt"])
        else:
            if c == r:
                raise _Bad("identical_sides", "chosen and rejected are the same text")
            p, c, r = split_hh(c, r)
    if c == r:
        raise _Bad("identical_sides", "chosen and rejected are the same text")
    for name, text in (("prompt", p), ("chosen", c), ("rejected", r)):
        if not text.strip():
            what = (f"the prompt (the shared prefix of {fields['chosen']!r} and {fields['rejected']!r})"
                    if name == "prompt" and fields["prompt"] is None else f"the {name} text")
            raise _Bad("empty_text", f"{what} is empty")
    return p, c, r


def _detect(values, path, fields, lines) -> str:
    """The layout of the first row with a ``chosen`` value: strings without a prompt column are
    ``hh`` only when they hold the HH marker (else a standard file whose prompt column has another
    name would be split at whatever its two completions happen to share)."""
    column = fields["chosen"]
    for i, value in enumerate(values):
        if isinstance(value, str):
            if fields["prompt"]:
                return "standard"
            if HH_MARKER in value:
                return "hh"
            raise DataError(f"{path}: no prompt column and {where(i, lines)} is not an HH dialogue (no "
                            f"{HH_MARKER!r}); pass --prompt-field, or --layout hh to take the shared prefix "
                            "of chosen and rejected as the prompt")
        if isinstance(value, list):
            return "conversational"
        if value is not None:
            raise DataError(f"{path}: {where(i, lines)}: field {column!r} is {_kind(value)}, expected a string or a "
                            "list of messages")
    raise DataError(f"{path}: column {column!r} has no value in any row")


def _fields(columns, layout, prompt_field, chosen_field, rejected_field, path) -> dict:
    found = ", ".join(columns)
    names = {"chosen": chosen_field or "chosen", "rejected": rejected_field or "rejected"}
    for key, name in names.items():
        if name not in columns:
            raise DataError(f"{path}: no column {name!r} for {key} (columns: {found}); pass --{key}-field")
    if names["chosen"] == names["rejected"]:
        raise DataError(f"{path}: chosen and rejected name the same column {names['chosen']!r}")
    if prompt_field is not None:
        if layout == "hh":
            raise DataError("--prompt-field does not apply to --layout hh (the prompt is the shared prefix)")
        if prompt_field not in columns:
            raise DataError(f"{path}: no column {prompt_field!r} for the prompt (columns: {found})")
        if prompt_field in names.values():
            raise DataError(f"{path}: the prompt column {prompt_field!r} is also a completion column")
    prompt = prompt_field or ("prompt" if "prompt" in columns and layout != "hh" else None)
    if layout == "standard" and prompt is None:
        raise DataError(f"{path}: layout standard needs a prompt column (columns: {found}); pass "
                        "--prompt-field, or --layout hh for dialogues that share their prefix")
    return {"prompt": prompt, **names}


def read_preferences(path, *, layout: str = "auto", prompt_field: str | None = None,
                     chosen_field: str | None = None, rejected_field: str | None = None,
                     split: str = "train", skip_bad: bool = False) -> PreferenceTexts:
    """The (prompt, chosen, rejected) texts of a preference file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        ``.jsonl``, ``.json``, ``.csv``, ``.parquet`` or a ``save_to_disk`` folder.
    layout : {"auto", "standard", "conversational", "hh"}
    prompt_field, chosen_field, rejected_field : str, optional
        Column names (default ``prompt``, ``chosen``, ``rejected``).
    split : str
        The split of a ``DatasetDict`` folder (a file holds only ``train``).
    skip_bad : bool
        Drop bad rows (counted in :attr:`PreferenceTexts.bad`, one warning) instead of failing.

    Raises
    ------
    DataError
        Naming the file (and line, row, field) at fault: missing or unreadable, an unknown column
        (listing those found), bad rows without ``skip_bad``, or no usable row.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    with _opened(path, split) as (ds, lines):
        if ds.num_rows == 0:
            raise DataError(f"{path}: holds no rows")
        fields = _fields(ds.column_names, layout, prompt_field, chosen_field, rejected_field, path)
        cols = ds.select_columns([f for f in dict.fromkeys(fields.values()) if f is not None])[:]
    n = len(cols[fields["chosen"]])
    if layout == "auto":
        layout = _detect(cols[fields["chosen"]], path, fields, lines)
    prompts = cols[fields["prompt"]] if fields["prompt"] else [None] * n
    out, rows, bad, seen = ([], [], []), [], [], {}
    for i, (p, c, r) in enumerate(zip(prompts, cols[fields["chosen"]], cols[fields["rejected"]])):
        try:
            texts = _texts(layout, p, c, r, fields)
            if texts in seen:
                raise _Bad("duplicate_row", f"repeats {where(seen[texts], lines)} (same prompt, chosen and "
                                            "rejected)")
        except _Bad as exc:
            bad.append(BadRow(i, exc.reason, exc.detail))
            continue
        seen[texts] = i
        rows.append(i)
        for side, text in zip(out, texts):
            side.append(text)
    if bad and not skip_bad:
        raise bad_rows_error(str(path), bad, n, lines)
    if not rows:
        raise DataError(f"{path}: no usable row: all {n} rows are bad (first: {where(bad[0].row, lines)}: "
                        f"{bad[0].detail})")
    if bad:
        warn_skipped(str(path), bad, n, lines)
    return PreferenceTexts(*out, rows=np.asarray(rows, dtype=np.int64), layout=layout, fields=fields, bad=bad,
                           n_read=n, source=str(path), lines=lines)
