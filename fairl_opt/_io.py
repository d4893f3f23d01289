"""Output paths checked before any work, atomic writes, UTF-8 text and JSONL read with the line at
fault, texts files, and file checksums.

Every ``fairl`` command with ``--out`` calls :func:`check_output_path` (a file) or
:func:`check_output_dir` (a folder) before it loads a model or solves anything, so a typo in the
output folder costs nothing; it then writes with :func:`atomic_write_text` or :func:`atomic_savez`,
which never leave a half-written file under the final name (a temporary file in the same folder,
then :func:`os.replace`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError


def check_output_path(path, suffix: str | None = None, what: str = "--out") -> Path:
    """The file that will be written for ``path`` (``suffix`` appended when missing, as
    ``np.savez`` does), after checking that its folder exists and is writable.

    Raises
    ------
    DataError
        Naming ``what`` and the path: the folder is missing, not a folder or not writable, or the
        path itself is a folder.
    """
    out = Path(path)
    if suffix is not None and out.suffix != suffix:
        out = out.with_name(out.name + suffix)
    if out.is_dir():
        raise DataError(f"{what} {out}: is a folder, expected a file name")
    parent = out.parent
    if not parent.exists():
        raise DataError(f"{what} {out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise DataError(f"{what} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"{what} {out}: folder {parent} is not writable")
    return out


def check_output_dir(path, what: str = "--out") -> Path:
    """``path`` as a folder that exists and is writable, or that can be created (``mkdir -p``): its
    nearest existing ancestor is a writable folder.

    Raises
    ------
    DataError
        Naming ``what`` and the path.
    """
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{what} {out}: exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise DataError(f"{what} {out}: folder is not writable")
        return out
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{what} {out}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DataError(f"{what} {out}: cannot create it, folder {ancestor} is not writable")
    return out


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _atomic(path, write) -> Path:
    """Call ``write(fh)`` on a new binary file next to ``path``, then move it onto ``path``."""
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        with open(tmp, "xb") as fh:  # mode "x": created with the usual umask, never overwrites
            write(fh)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    data = text.encode("utf-8")
    return _atomic(path, lambda fh: fh.write(data))


def atomic_savez(path, compressed: bool = False, **arrays) -> Path:
    """``np.savez`` (or ``savez_compressed``) to exactly ``path`` (no suffix added), atomically."""
    save = np.savez_compressed if compressed else np.savez
    return _atomic(path, lambda fh: save(fh, **arrays))


def decode_utf8(data: bytes, path) -> str:
    """``data`` decoded as UTF-8; DataError naming ``path``, the line and the byte offset otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}: "
            f"{exc.reason})"
        ) from None


def read_text_utf8(path, what: str = "file") -> str:
    """The text of ``path``; DataError when it does not exist or is not valid UTF-8."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder")
    return decode_utf8(path.read_bytes(), path)


def iter_jsonl(path, what: str = "file"):
    """(line number, object) for each non-blank line of a UTF-8 JSONL file; DataError naming the line
    that is not UTF-8 (with its byte offset in the file) or not JSON, or the file when it does not
    exist or is a folder. A byte-order mark at the start is skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file")
    offset = 0
    with path.open("rb") as fh:  # bytes, decoded line by line, so that an error names its own line
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                    f"{offset + exc.start}: {exc.reason})"
                ) from None
            offset += len(raw)
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def sha256_file(path) -> str:
    """The sha256 hex digest of the bytes of ``path`` (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_texts(path, what: str = "texts file") -> tuple[list[str], list[str] | None]:
    """Texts (and prompts, when every row has one) from a ``.txt`` (one per line) or a ``.jsonl``
    (field ``text`` or ``completion``, optional ``prompt``).

    Raises
    ------
    DataError
        Naming the file and line: missing, not UTF-8, not JSON, no text field, a prompt that is
        not a string or is on some rows only, or no texts at all.
    """
    path = Path(path)
    texts, prompts = [], []
    if path.suffix == ".jsonl":
        for lineno, obj in iter_jsonl(path, what):
            value = obj.get("text", obj.get("completion")) if isinstance(obj, dict) else None
            if not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: no string field 'text' or 'completion'")
            prompt = obj.get("prompt")
            if prompt is not None and not isinstance(prompt, str):
                raise DataError(f"{path}:{lineno}: field 'prompt' is not a string")
            texts.append(value)
            prompts.append((lineno, prompt))
    else:
        texts = read_text_utf8(path, what).splitlines()
    if not texts:
        raise DataError(f"{path} holds no texts")
    if not prompts:
        return texts, None
    given = [p is not None for _, p in prompts]
    if any(given) and not all(given):
        odd = next(lineno for (lineno, p), g in zip(prompts, given) if g != given[0])
        raise DataError(f"{path}:{odd}: some rows have a 'prompt' and some do not")
    return texts, ([p for _, p in prompts] if all(given) else None)
