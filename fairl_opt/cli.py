"""The ``fairl`` command: generate, pairs, fit, score, audit; simulate, solve, volume, certify, demo,
embed, detox.

JSON goes to stdout or to ``--out``. Output paths are checked before any work (the folder must exist
and be writable) and written atomically; the path a command reports is the file it wrote. Options
that do not apply to the chosen method are refused, not ignored.

Every failure is one line on stderr, ``fairl: error: <message>``, naming the argument, file, line or
pair at fault, and an exit status:

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     success
2     bad input or usage: :class:`~fairl_opt.exceptions.DataError`, an argparse error, an
      unreadable input or unwritable output path (``OSError``), invalid UTF-8
3     infeasible, proved by a verified Farkas certificate
      (:class:`~fairl_opt.exceptions.InfeasibleError`): a hard margin (the message names
      conflicting pairs) or an empty set given to ``fairl volume``
4     no certified answer (:class:`~fairl_opt.exceptions.SolverError`, including
      :class:`~fairl_opt.exceptions.NumericalRangeError`)
5     the Dask cluster (:class:`~fairl_opt.exceptions.ClusterError`): ``--scheduler`` malformed or
      not answering, a scheduler without workers, a chunk whose workers kept dying
130   interrupted (Ctrl-C); finished cache chunks are kept, so a rerun resumes
====  ==========================================================================================
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from fairl_opt._args import ArgumentParser, HelpFormatter, nonnegative_int, positive_int
from fairl_opt._io import check_output_path
from fairl_opt._progress import configure_logging
from fairl_opt._json import emit_json, run_record
from fairl_opt.estimators import METHODS
from fairl_opt.exceptions import EXIT_CODES, ClusterError, FairlError, InfeasibleError, SolverError

DESCRIPTION = """\
Fit linear rewards on preference pairs, each answer with a certificate.
Commands: generate, pairs, fit, score, audit (your own data); simulate, solve, volume, certify,
demo, embed, detox."""
EPILOG = """\
exit status:
  0    success
  2    bad input or usage (the message names the argument, file, line or pair)
  3    infeasible: a hard margin or an empty feasible set (a verified Farkas certificate)
  4    no certified answer (solver or float64 range)
  5    the Dask cluster: --scheduler unreachable or malformed, no workers
  130  interrupted; finished cache chunks are kept, rerun to resume
every error is one line on stderr: fairl: error: <message>"""


def cmd_simulate(args) -> int:
    from fairl_opt.simulate import simulate

    out = check_output_path(args.out, suffix=".npz")
    problem = simulate(n_pairs=args.n, dim=args.d, regime=args.regime, seed=args.seed, beta=args.beta)
    written = problem.save(out)
    counts = {k: int((problem.pairs.kinds == k).sum()) for k in np.unique(problem.pairs.kinds)}
    params = dict(n=args.n, d=args.d, regime=args.regime, seed=args.seed, beta=args.beta)
    print(
        json.dumps({"out": str(written), "n_pairs": problem.pairs.n_pairs, "dim": problem.pairs.dim,
                    "regime": args.regime, "seed": args.seed, "kinds": counts,
                    "run": run_record("simulate", {}, params)}),
    )
    return 0


def cmd_solve(args) -> int:
    from fairl_opt.data.fitting import certificate_summary, check_method_options, fit_reward, settings_of
    from fairl_opt.pairs import load_npz

    check_method_options(args)
    method = METHODS[args.method]
    if args.out:
        args.out = check_output_path(args.out)
    pairs, _ = load_npz(args.pairs, duplicates="allow" if args.allow_duplicates else "error")
    settings = settings_of(args)
    reward, model = fit_reward(pairs, args.method, margin=args.margin, C=args.C, reg=args.reg, norm=args.norm,
                               backend=args.backend, settings=settings, verbose=args.verbose, seed=args.seed)
    cert = model.certificate_
    payload = {
        "method": args.method,
        "margin": args.margin if method.kind == "margin" else None,
        "hyper_parameters": reward.hyper_parameters,
        "n_pairs": pairs.n_pairs,
        "dim": pairs.dim,
        "theta": model.theta_,
        "status": cert.status,
        "certificate": certificate_summary(cert),
        "solve_seconds": reward.training["fit_seconds"],
        "train_pair_accuracy": reward.training["train_pair_accuracy"],
    }
    if method.failure_aware:
        payload["rounds"] = [
            {"round": h["round"], "n_failures": h["n_failures"], "n_kept": h["n_kept"], "objective": h["objective"],
             "changed": len(h["changed"]), "witness_pair": h["witness_pair"], "note": h["note"]}
            for h in model.history_
        ]
        payload["stop_reason"] = model.result_.stop_reason
        payload["tightened"] = model.tightened_
        if model.required_margins_ is not None:
            payload["required_margin"] = model.required_margins_
            if model.prices_ is not None and settings.slack_upweight != 1:
                payload["slack_price"] = model.prices_
        else:
            payload["weights"] = model.weights_
            payload["temperatures"] = model.temperatures_
    if args.geometry:
        from fairl_opt.geometry import geometry_summary

        payload["geometry"] = geometry_summary(model.result_, samples=args.geometry_samples, seed=args.seed)
    payload["run"] = run_record("solve", {"pairs": args.pairs}, reward.hyper_parameters)
    emit_json(payload, args.out)
    return 0


def cmd_demo(args) -> int:
    from fairl_opt.demo import format_table, run_demo

    out = check_output_path(args.out) if args.out else None
    import logging

    progress = logging.getLogger("fairl_opt.demo").info if not args.quiet else None
    seeds = tuple(range(args.seeds))
    print(
        f"fairl demo: planted problems, n={args.n} pairs, d={args.d}, seeds {list(seeds)}, 70/30 prompt "
        "split; metrics on held-out prompts (mean ± sd over seeds)",
        flush=True,
    )
    start = time.perf_counter()
    rows = run_demo(seeds=seeds, n_pairs=args.n, dim=args.d, progress=progress)
    print(format_table(rows))
    print(f"\n{len(rows)} fits in {time.perf_counter() - start:.1f}s")
    if out:
        from dataclasses import asdict

        emit_json({"rows": [asdict(r) for r in rows],
                   "run": run_record("demo", {}, dict(n=args.n, d=args.d, seeds=args.seeds))}, out)
    return 0


def _add_subparser(sub, name, **kwargs):
    kwargs.setdefault("formatter_class", HelpFormatter)
    if "help" in kwargs:
        kwargs.setdefault("description", kwargs["help"])
    return sub.add_parser(name, **kwargs)


def build_parser() -> ArgumentParser:
    from fairl_opt import __version__

    parser = ArgumentParser(prog="fairl", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"fairl_opt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add_subparser(sub, "simulate", help="write a planted preference problem to an .npz")
    p.add_argument("--n", type=positive_int, default=400, help="number of pairs")
    p.add_argument("--d", type=positive_int, default=20, help="feature dimension")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    p.add_argument("--regime", choices=("isotropic", "detox"), default="detox", help="planted regime")
    p.add_argument("--beta", type=float, default=0.5, help="KL temperature of the aligned policy")
    p.add_argument("--out", required=True, help="output .npz (.npz is appended when missing)")
    p.set_defaults(func=cmd_simulate)

    from fairl_opt.data.fitting import add_method_arguments

    p = _add_subparser(sub, "solve", help="solve a reward program on pairs from an .npz; prints JSON")
    p.add_argument("pairs", help=".npz with chosen, rejected[, kinds, prompt_ids]")
    add_method_arguments(p)
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_solve)

    from fairl_opt.geometry.cli import add_certify_parser, add_volume_parser

    add_volume_parser(sub)
    add_certify_parser(sub)

    from fairl_opt.detox.cli import add_detox_parser, add_embed_parser

    add_embed_parser(sub)
    add_detox_parser(sub)

    from fairl_opt.audit.cli import add_audit_parser
    from fairl_opt.data.cli_generate import add_generate_parser
    from fairl_opt.data.cli_pairs import add_pairs_parser
    from fairl_opt.data.cli_reward import add_fit_parser, add_score_parser

    add_generate_parser(sub)
    add_pairs_parser(sub)
    add_fit_parser(sub)
    add_score_parser(sub)
    add_audit_parser(sub)

    p = _add_subparser(sub, "demo", help="standard vs failure-aware on the default planted data")
    p.add_argument("--n", type=positive_int, default=400, help="pairs per problem")
    p.add_argument("--d", type=positive_int, default=20, help="feature dimension")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds 0..N-1 per regime")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", help="also write the rows as JSON")
    p.set_defaults(func=cmd_demo)
    return parser


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _os_error_message(exc: OSError) -> str:
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    reason = exc.strerror or _one_line(exc) or type(exc).__name__
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _fail(message, code: int) -> int:
    print(f"fairl: error: {_one_line(message)}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    """Run ``fairl`` with ``argv``; returns the exit status (argparse errors raise ``SystemExit(2)``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    try:
        return _run(args)
    finally:
        configure_logging()  # back to the defaults: main() may be called again in this process


def _run(args) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("fairl: interrupted; finished cache chunks are kept, rerun to resume", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except InfeasibleError as exc:
        return _fail(exc, EXIT_CODES["infeasible"])
    except SolverError as exc:
        return _fail(exc, EXIT_CODES["could not certify"])
    except ClusterError as exc:
        return _fail(exc, EXIT_CODES["cluster"])
    except FairlError as exc:
        return _fail(str(exc) or type(exc).__name__, EXIT_CODES["bad input or usage"])
    except UnicodeDecodeError as exc:  # a reader that does not name its file (ours all do)
        return _fail(f"not valid UTF-8 at byte offset {exc.start} ({exc.reason})", EXIT_CODES["bad input or usage"])
    except BrokenPipeError:  # stdout closed early (e.g. `| head`): nothing more can be printed there
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so that the exit flush stays silent
        except OSError:  # pragma: no cover
            pass
        return _fail("output closed early (broken pipe)", EXIT_CODES["bad input or usage"])
    except OSError as exc:
        return _fail(_os_error_message(exc), EXIT_CODES["bad input or usage"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
