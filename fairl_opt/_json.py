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
