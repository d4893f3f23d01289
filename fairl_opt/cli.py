"""The ``fairl`` command: simulate, solve, volume, certify, demo, embed, detox.

Errors exit with status 2 (3 for an infeasible hard margin) and one line on stderr naming the problem
(and the pair where there is one); JSON goes to stdout or ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fairl_opt._json import jsonable
from fairl_opt.exceptions import DataError, FairlError, InfeasibleError

METHOD_CHOICES = ("mm-qp", "mm-lp", "maxent", "fa-mm-qp", "fa-mm-lp", "fa-maxent")


def _emit(payload: dict, out: str | None) -> None:
    text = json.dumps(jsonable(payload), indent=2)
    if out:
        Path(out).write_text(text + "\n")
    else:
        print(text)


def cmd_simulate(args) -> int:
    from fairl_opt.simulate import simulate

    problem = simulate(n_pairs=args.n, dim=args.d, regime=args.regime, seed=args.seed, beta=args.beta)
    problem.save(args.out)
    counts = {k: int((problem.pairs.kinds == k).sum()) for k in np.unique(problem.pairs.kinds)}
    print(
        json.dumps({"out": str(args.out), "n_pairs": problem.pairs.n_pairs, "dim": problem.pairs.dim,
                    "regime": args.regime, "seed": args.seed, "kinds": counts}),
    )
    return 0


def cmd_solve(args) -> int:
    from fairl_opt.estimators import make_estimator
    from fairl_opt.pairs import load_npz

    pairs, _ = load_npz(args.pairs, duplicates="allow" if args.allow_duplicates else "error")
    fa_options = {}
    if args.method.startswith("fa-"):
        fa_options = dict(
            max_rounds=args.max_rounds,
            oof_folds=args.oof_folds,
            near_tie_quantile=args.near_tie_quantile,
            margin_step=args.margin_step,
            upweight=args.upweight,
            sharpen=args.sharpen,
            slack_upweight=args.slack_upweight,
            dual_path=args.dual_path,
            seed=args.seed,
            verbose=args.verbose,
        )
    model = make_estimator(
        args.method, margin=args.margin, C=args.C, reg=args.reg, norm=args.norm, backend=args.backend,
        **fa_options,
    )
    start = time.perf_counter()
    model.fit(pairs)
    seconds = time.perf_counter() - start
    cert = model.certificate_
    payload = {
        "method": args.method,
        "margin": args.margin if "mm" in args.method else None,
        "n_pairs": pairs.n_pairs,
        "dim": pairs.dim,
        "theta": model.theta_,
        "status": cert.status,
        "certificate": {
            "primal_objective": cert.primal_objective,
            "dual_objective": cert.dual_objective,
            "gap": cert.gap,
            "relative_gap": cert.relative_gap,
            "max_violation": cert.max_violation,
            "solver_status": cert.solver_status,
            "backend": cert.backend,
            "gradient_bound": cert.gradient_bound,
        },
        "solve_seconds": seconds,
        "train_pair_accuracy": model.score(pairs),
    }
    if args.method.startswith("fa-"):
        payload["rounds"] = [
            {"round": h["round"], "n_failures": h["n_failures"], "objective": h["objective"],
             "changed": len(h["changed"]), "witness_pair": h["witness_pair"], "note": h["note"]}
            for h in model.history_
        ]
        payload["stop_reason"] = model.result_.stop_reason
        payload["tightened"] = model.tightened_
        if model.required_margins_ is not None:
            payload["required_margin"] = model.required_margins_
            if model.prices_ is not None and args.slack_upweight != 1:
                payload["slack_price"] = model.prices_
        else:
            payload["weights"] = model.weights_
            payload["temperatures"] = model.temperatures_
    if args.geometry:
        if not (args.method.startswith("fa-mm")):
            raise DataError("--geometry needs a failure-aware max-margin method (fa-mm-qp or fa-mm-lp)")
        from fairl_opt.geometry import geometry_summary

        result = model.result_
        payload["geometry"] = geometry_summary(
            result.base_solution.program.with_margins(np.ones(pairs.n_pairs)), result,
            samples=args.geometry_samples, seed=args.seed,
        )
    _emit(payload, args.out)
    return 0


def cmd_demo(args) -> int:
    from fairl_opt.demo import format_table, run_demo

    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
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
    if args.out:
        from dataclasses import asdict

        _emit({"rows": [asdict(r) for r in rows]}, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a planted preference problem to an .npz")
    p.add_argument("--n", type=int, default=400, help="number of pairs")
    p.add_argument("--d", type=int, default=20, help="feature dimension")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--regime", choices=("isotropic", "detox"), default="detox")
    p.add_argument("--beta", type=float, default=0.5, help="KL temperature of the aligned policy")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("solve", help="solve a reward program on pairs from an .npz; prints JSON")
    p.add_argument("pairs", help=".npz with chosen, rejected[, kinds, prompt_ids]")
    p.add_argument("--method", choices=METHOD_CHOICES, default="mm-qp")
    p.add_argument("--margin", choices=("hard", "soft"), default="hard")
    p.add_argument("--C", type=float, default=1.0, help="soft-margin slack penalty")
    p.add_argument("--reg", type=float, default=1.0, help="MaxEnt L2 regularisation λ > 0")
    p.add_argument("--norm", choices=("l1", "linf"), default=None, help="mm-lp objective norm (default l1)")
    p.add_argument("--backend", default="auto", help="auto, cvxpy or newton")
    p.add_argument("--max-rounds", type=int, default=5)
    p.add_argument("--oof-folds", type=int, default=5, help="out-of-fold mining folds (0 = off)")
    p.add_argument("--near-tie-quantile", type=float, default=0.1)
    p.add_argument("--margin-step", type=float, default=0.5, help="FA margin tightening δ")
    p.add_argument("--upweight", type=float, default=2.0, help="FA MaxEnt weight factor")
    p.add_argument("--sharpen", type=float, default=1.0, help="FA MaxEnt temperature factor (<= 1)")
    p.add_argument("--slack-upweight", type=float, default=1.0,
                   help="FA soft-margin factor (>= 1) on a failure's slack price C (1 = off)")
    p.add_argument("--dual-path", action="store_true", help="fit a correction on failures over θ_b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-duplicates", action="store_true")
    p.add_argument("--verbose", action="store_true", help="progress per FA round on stderr")
    p.add_argument("--geometry", action="store_true",
                   help="add volume ratio, Chebyshev radii and interval widths of F_std and F_FA (fa-mm-*)")
    p.add_argument("--geometry-samples", type=int, default=2000,
                   help="hit-and-run samples per phase for --geometry (cost grows with d and rounds)")
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_solve)

    from fairl_opt.certify import add_certify_parser
    from fairl_opt.geometry.cli import add_volume_parser

    add_volume_parser(sub)
    add_certify_parser(sub)

    from fairl_opt.detox.cli import add_detox_parser, add_embed_parser

    add_embed_parser(sub)
    add_detox_parser(sub)

    p = sub.add_parser("demo", help="standard vs failure-aware on the default planted data")
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--d", type=int, default=20)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", help="also write the rows as JSON")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InfeasibleError as exc:
        print(f"fairl: error: {exc}", file=sys.stderr)
        return 3
    except FairlError as exc:
        print(f"fairl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
