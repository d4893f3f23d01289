"""Output paths checked before any work, atomic writes, and UTF-8 text read with the line at fault.

Every ``fairl`` command with ``--out`` calls :func:`check_output_path` (a file) or
:func:`check_output_dir` (a folder) before it loads a model or solves anything, so a typo in the
output folder costs nothing; it then writes with :func:`atomic_write_text` or :func:`atomic_savez`,
which never leave a half-written file under the final name (a temporary file in the same folder,
then :func:`os.replace`).
"""

from __future__ import annotations

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
