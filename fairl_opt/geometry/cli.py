"""``fairl volume C.npz [--relative-to C0.npz] [--samples N] [--seed S]``.

Each file holds ``A`` (m × d) and ``b`` (m), read with ``allow_pickle=False``; the set is
F = {θ : ‖θ‖₂ ≤ 1, Aθ ≥ b}. Prints JSON with ``fraction`` (or ``ratio`` = vol(C)/vol(C0) with
``--relative-to``), ``stderr``, ``ci_low``, ``ci_high``, ``effective_samples``. Problems (an unreadable
file, a missing key, a bad row, an empty set with its certificate) raise
:class:`~fairl_opt.exceptions.DataError`, which the ``fairl`` entry point prints as one line.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from fairl_opt.exceptions import DataError
from fairl_opt.geometry.feasible_set import FeasibleSet
from fairl_opt.geometry.volume import METHODS, volume_fraction, volume_ratio


def load_constraints(path) -> FeasibleSet:
    """The set stored in an ``.npz`` with arrays ``A`` (m × d) and ``b`` (m)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("A", "b") if k not in data.files]
            if missing:
                found = ", ".join(data.files) or "none"
                raise DataError(f"{path}: missing array(s) {', '.join(missing)} (found: {found})")
            A, b = data["A"], data["b"]
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz without pickles ({exc})") from exc
    try:
        return FeasibleSet(A, b)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


from fairl_opt._json import jsonable as _jsonable  # noqa: E402


def cmd_volume(args) -> int:
    """Run ``fairl volume``: print (or write to ``--out``, checked first) the estimate as JSON; returns 0."""
    from fairl_opt._io import atomic_write_text, check_output_path

    out = check_output_path(args.out) if getattr(args, "out", None) else None
    fset = load_constraints(args.sets)
    options = dict(samples=args.samples, seed=args.seed, method=args.method)
    if args.relative_to:
        reference = load_constraints(args.relative_to)
        estimate = volume_ratio(fset, reference, **options)
    else:
        estimate = volume_fraction(fset, **options)
    payload = {"set": str(args.sets), "dim": fset.dim, "rows": fset.n_rows}
    if args.relative_to:
        payload["relative_to"] = str(args.relative_to)
    payload.update(estimate.to_dict())
    text = json.dumps(_jsonable(payload), indent=2)
    if out:
        atomic_write_text(out, text + "\n")
    else:
        print(text)
    return 0


def add_volume_parser(subparsers):
    """Add the ``volume`` sub-command to an ``argparse`` sub-parser collection; returns its parser."""
    from fairl_opt._args import HelpFormatter, nonnegative_int, positive_int

    summary = "volume fraction of F = {‖θ‖ <= 1, Aθ >= b} (A, b from an .npz), or a ratio; prints JSON"
    p = subparsers.add_parser("volume", help=summary, description=summary, formatter_class=HelpFormatter)
    p.add_argument("sets", metavar="C.npz", help=".npz with A (m x d) and b (m)")
    p.add_argument("--relative-to", metavar="C0.npz",
                   help="report vol(C)/vol(C0) instead of a fraction of the ball")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="hit-and-run samples per phase (default 16000), or Gaussian draws for cones "
                        "(default 1e6)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="auto: Gaussian for cones (b = 0) when it sees the set, else coordinate hit-and-run")
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_volume)
    return p
