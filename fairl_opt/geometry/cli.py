"""The geometry's two sub-commands of ``fairl``: ``volume`` and ``certify``.

``fairl volume C.npz [--relative-to C0.npz] [--samples N] [--seed S]``: each file holds ``A`` (m × d)
and ``b`` (m), read with ``allow_pickle=False``; the set is F = {θ : ‖θ‖₂ ≤ 1, Aθ ≥ b}. Prints JSON
with ``fraction`` (or ``ratio`` = vol(C)/vol(C0) with ``--relative-to``), ``stderr``, ``ci_low``,
``ci_high``, ``effective_samples``. Problems with the input (an unreadable file, a missing key, a bad
row, a flat set) raise :class:`~fairl_opt.exceptions.DataError` (exit status 2); an empty set raises
:class:`~fairl_opt.exceptions.InfeasibleError` with its certificate (exit status 3, like an infeasible
hard margin). The ``fairl`` entry point prints either as one line.

``fairl certify PAIRS.npz [--method fa-mm-qp|fa-mm-lp] [--margin hard|soft] ...``: runs the FA loop and
prints the JSON of :func:`fairl_opt.geometry.claims.certify_claims`; the FA options are generated from
:class:`fairl_opt.fa.FASettings`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fairl_opt._json import emit_json as _emit
from fairl_opt._json import run_record
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


def cmd_volume(args) -> int:
    """Run ``fairl volume``: print (or write to ``--out``, checked first) the estimate as JSON; returns 0."""
    from fairl_opt._io import check_output_path

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
    payload["run"] = run_record("volume", {"sets": args.sets, "relative_to": args.relative_to}, options)
    _emit(payload, out)
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


#: ``fairl certify`` options whose argparse default is None, with the defaults they get once checked.
CERTIFY_DEFAULTS = dict(C=1.0)


def _certify_settings() -> tuple[str, ...]:
    """The FA settings ``fairl certify`` offers: those of margin programs, except the fold seed (``--seed``
    seeds the folds and the volume estimate together) and the dual path (the claims are about the
    full program's margin sets)."""
    from fairl_opt.fa import FASettings

    return tuple(n for n in FASettings.names("margin") if n not in ("seed", "dual_path", "correction_penalty"))


def add_certify_parser(subparsers):
    """Add ``certify`` to an argparse sub-parser collection; returns the parser."""
    from fairl_opt._args import HelpFormatter, add_settings_arguments, nonnegative_int, positive_float, positive_int
    from fairl_opt.fa import FASettings

    p = subparsers.add_parser(
        "certify", help="run the FA loop and certify F_FA ⊊ F_std on these pairs; prints JSON",
        description="Run the failure-aware loop and certify the theory claims (proofs/T2, T3) on PAIRS.npz.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("pairs", help=".npz with chosen, rejected[, kinds, prompt_ids]")
    p.add_argument("--method", choices=("fa-mm-qp", "fa-mm-lp"), default="fa-mm-qp", help="FA program")
    p.add_argument("--margin", choices=("hard", "soft"), default="hard", help="hard or soft margins")
    p.add_argument("--C", type=float, default=None,
                   help=f"soft-margin slack penalty (--margin soft; default: {CERTIFY_DEFAULTS['C']})")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="volume-estimate samples per phase (default: the estimator's own)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the folds and the volume estimate")
    p.add_argument("--budget", type=positive_float, default=2.0, help="R = budget * min{||θ|| : Δθ >= m_FA}")
    p.add_argument("--no-volume", action="store_true", help="skip the Monte Carlo volume ratio")
    add_settings_arguments(p, FASettings, names=_certify_settings())
    p.add_argument("--allow-duplicates", action="store_true", help="accept identical pairs")
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_certify)
    return p


def cmd_certify(args) -> int:
    """Run ``fairl certify``: print (or write to ``--out``) the JSON of
    :func:`~fairl_opt.geometry.claims.certify_claims`; returns 0.

    Refuses (DataError) options that do not apply: ``--C`` without ``--margin soft``, both near-tie
    options, ``--samples`` with ``--no-volume``; checks ``--out`` before any work.
    """
    from fairl_opt._args import fill_defaults, given, settings_from_args
    from fairl_opt._io import check_output_path
    from fairl_opt.fa import FASettings
    from fairl_opt.geometry.claims import certify_claims
    from fairl_opt.pairs import load_npz

    if given(args, "C") and args.margin != "soft":
        raise DataError("--C applies to --margin soft only (a hard margin has no slack penalty)")
    if given(args, "near_tie_quantile") and given(args, "near_tie_threshold"):
        raise DataError("--near-tie-quantile and --near-tie-threshold exclude each other; pass one")
    if given(args, "samples") and args.no_volume:
        raise DataError("--samples applies to the volume ratio only, not with --no-volume")
    fill_defaults(args, CERTIFY_DEFAULTS)
    settings = settings_from_args(FASettings, args, _certify_settings()).replace(seed=args.seed)
    out = check_output_path(args.out) if args.out else None
    pairs, _ = load_npz(args.pairs, duplicates="allow" if args.allow_duplicates else "error")
    payload = certify_claims(pairs, args.method, args.margin, args.C, args.samples, args.seed,
                             budget=args.budget, volume=not args.no_volume, settings=settings)
    params = dict(method=args.method, margin=args.margin, C=args.C, samples=args.samples, seed=args.seed,
                  budget=args.budget, volume=not args.no_volume, fa_settings=settings.to_dict())
    _emit({"pairs": str(args.pairs), **payload, "run": run_record("certify", {"pairs": args.pairs}, params)}, out)
    return 0
