"""``fairl audit PAIRS --reward DIR --out REPORT_DIR``: audit a saved reward on a pairs file and print
one JSON object (files written, headline numbers, warnings, run record)."""

from __future__ import annotations

import argparse

from fairl_opt._args import HelpFormatter, nonnegative_int, positive_int

HELP = "audit a saved reward on a pairs file: report.md, audit.json, pairs.csv, figures"


def _min_count(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text!r}")
    return value


def _fdr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def cmd_audit(args) -> int:
    from fairl_opt._io import check_output_dir
    from fairl_opt._json import emit_json, run_record
    from fairl_opt.audit.core import AuditOptions, audit, headline
    from fairl_opt.audit.inputs import load_inputs

    out = check_output_dir(args.out)
    options = AuditOptions(top=args.top, min_count=args.min_count, max_ngram=args.max_ngram, fdr=args.fdr,
                           separability_limit=args.separability_limit)
    inputs = load_inputs(args.pairs, args.reward, duplicates="allow")
    parameters = {**options.to_dict(), "out": str(out), "quiet": bool(args.quiet)}
    run = run_record("audit", {"pairs": args.pairs, "reward": args.reward}, parameters)
    result = audit(inputs, out, options, run=run)
    files = result["files"]
    written = [str(out / files[k]) for k in ("report", "audit", "pairs_csv", "phrases_csv") if k in files]
    written += [str(out / name) for name in files["figures"].values()]
    emit_json({"out": str(out), "files": written, "headline": headline(result),
               "warnings": [w["message"] for w in result["warnings"]],
               "warning_codes": [w["code"] for w in result["warnings"]], "run": run})
    return 0


def add_audit_parser(sub) -> None:
    """Register ``fairl audit`` on the ``fairl`` sub-parsers."""
    from fairl_opt.audit.limits import SEPARABILITY_LIMIT

    p = sub.add_parser("audit", help=HELP, description=HELP + ". Failures follow the FA loop's rule (the reward's "
                       "own settings for an FA reward, else the FASettings defaults).", formatter_class=HelpFormatter)
    p.add_argument("pairs", metavar="PAIRS", help="pairs .npz (fairl pairs; a plain fairl simulate file works, without the phrase "
                                 "section)")
    p.add_argument("--reward", required=True, metavar="DIR", help="reward folder written by fairl fit --out")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder (created when missing)")
    p.add_argument("--top", type=positive_int, default=10, metavar="N",
                   help="failures, completions and phrases (each way) listed in the report")
    p.add_argument("--min-count", type=_min_count, default=5, metavar="N",
                   help="a word or phrase is tested when at least this many completions have it and as many lack it")
    p.add_argument("--max-ngram", type=positive_int, default=2, metavar="N", help="longest phrase tested, in words")
    p.add_argument("--fdr", type=_fdr, default=0.05, metavar="Q", help="q-value (Benjamini-Hochberg) a phrase must reach to be listed")
    p.add_argument("--separability-limit", type=nonnegative_int, default=SEPARABILITY_LIMIT, metavar="N",
                   help="largest n_train*d on which the hard-margin separability solve runs (0 = only the reward "
                        "itself as a witness)")
    p.add_argument("--quiet", action="store_true", help="only warnings on stderr")
    p.set_defaults(func=cmd_audit)
