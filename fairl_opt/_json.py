"""JSON output shared by every CLI command."""

from __future__ import annotations

import numpy as np


def jsonable(obj):
    """Plain Python values for ``json.dumps``: arrays to lists, numpy scalars to Python ones, and
    inf/nan as strings (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def run_record(command: str, inputs: dict | None = None, parameters: dict | None = None) -> dict:
    """What every JSON output records about the run that wrote it: the command, the package
    version, the input paths and every parameter (defaults included)."""
    from fairl_opt import __version__

    return {"command": command, "fairl_version": __version__,
            "inputs": {k: (None if v is None else str(v)) for k, v in (inputs or {}).items()},
            "parameters": dict(parameters or {})}


def emit_json(payload: dict, out=None) -> None:
    """``payload`` as indented JSON on stdout, or written atomically to ``out`` (checked before)."""
    import json

    from fairl_opt._io import atomic_write_text

    text = json.dumps(jsonable(payload), indent=2)
    if out:
        atomic_write_text(out, text + "\n")
    else:
        print(text)
