"""Solver benchmark: fast exact backends vs the cvxpy reference vs the inexact tools people use.

Run ``python -m benchmarks.solvers --quick`` (minutes) or ``--full`` (the issue's grid; long).
Every row is measured in the same run and printed with ratios to the baselines of that row;
``--out`` also writes the rows as JSON. Data: the planted detox-like simulator at each size
(soft margins, since its NT→NT pairs are not separable).

Peers in the same run (:mod:`benchmarks.peers`; ``--no-peers`` skips them): PIQP on the QP's dual
and primal, scikit-learn's ``lbfgs`` and ``newton-cholesky`` logistic regression on MaxEnt, HiGHS's
interior point on the ℓ1 LP's dual and primal — each judged by our objective (``obj`` is its
relative excess). ``--scaling`` runs only the sweeps: time against n at d = 576 and against d at
n = 3000 for each program's automatic backend, with the fitted exponent.

Targets (issue 3): P1 QP at n=3000, d=576 certified (rel. gap ≤ 1e-6) ≥ 20× faster than
cvxpy+Clarabel and no slower than LinearSVC(hinge); P2 MaxEnt certified ≤ 1e-8 within 2× plain
L-BFGS and ≥ 100× faster than the exponential cone; P3 a whole FA loop ≤ 2× one standard solve;
P5 peak memory at n=100,000, d=576 ≤ 3× the size of Δ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from fairl_opt.fa import FASettings, run_fa  # noqa: E402
from fairl_opt.programs import MarginProgram, MaxEntProgram  # noqa: E402
from fairl_opt.solvers import get_backend  # noqa: E402
from fairl_opt.solvers._kernels import warm_up  # noqa: E402
from fairl_opt.simulate import simulate  # noqa: E402

from benchmarks import peers  # noqa: E402

#: Peers whose cost grows like n² memory or worse run only up to this many pairs.
PEER_MAX_PAIRS = 3000

#: cvxpy took 14.5 s (Clarabel QP) and 113 s (HiGHS LP) at n=3000, d=576 here; both grow
#: about like n·d². A reference predicted above the budget is skipped (and the row says so).
CVXPY_QP_SECONDS_AT_3000_576 = 14.5
CVXPY_LP_SECONDS_AT_3000_576 = 113.0
CVXPY_BUDGET_SECONDS = 180.0


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def peak_memory(fn):
    """Peak bytes allocated (numpy reports to tracemalloc) while ``fn`` runs."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def predicted_cvxpy_seconds(n, d, at_3000_576):
    return at_3000_576 * (n / 3000) * (d / 576) ** 2


def symmetrised(delta):
    n = delta.shape[0]
    return np.vstack([delta, -delta]), np.r_[np.ones(n), -np.ones(n)]


def bench_qp(delta, C, with_reference, with_peers=True):
    from sklearn.svm import LinearSVC

    program = MarginProgram(delta, C=C)
    fast, t_fast = timed(get_backend("working-set", program).solve, program)
    row = {"fast_seconds": t_fast, "fast_gap": fast.certificate.relative_gap,
           "fast_status": fast.certificate.status, "objective": fast.objective}
    X, y = symmetrised(delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svc, t_svc = timed(LinearSVC(loss="hinge", fit_intercept=False, C=C / 2, dual=True).fit, X, y)
    row["linearsvc_seconds"] = t_svc
    row["linearsvc_rel_excess"] = (program.objective(svc.coef_.ravel()) - fast.objective) / abs(fast.objective)
    row["speedup_vs_linearsvc"] = t_svc / t_fast
    if with_peers and delta.shape[0] <= PEER_MAX_PAIRS:
        for form, solve in (("dual", peers.piqp_qp_dual), ("primal", peers.piqp_qp_primal)):
            peer = solve(program, fast.objective)
            row.update({f"piqp_{form}_{k}": v for k, v in peer.items()})
    if with_reference:
        reference, t_ref = timed(get_backend("cvxpy", program).solve, program)
        row["cvxpy_seconds"] = t_ref
        row["cvxpy_gap"] = reference.certificate.relative_gap
        row["objective_rel_diff"] = (fast.objective - reference.objective) / abs(reference.objective)
        row["speedup_vs_cvxpy"] = t_ref / t_fast
    return row


def bench_maxent(delta, reg, with_reference, with_peers=True):
    from sklearn.linear_model import LogisticRegression

    program = MaxEntProgram(delta, reg=reg)
    fast, t_fast = timed(get_backend("lbfgs", program).solve, program)
    row = {"fast_seconds": t_fast, "fast_gap": fast.certificate.relative_gap,
           "fast_gradient_bound": fast.certificate.gradient_bound, "objective": fast.objective}

    def fun(theta):
        s = delta @ theta
        value = np.logaddexp(0.0, -s).sum() + 0.5 * reg * theta @ theta
        grad = -delta.T @ (0.5 * (1 - np.tanh(0.5 * s))) + reg * theta
        return value, grad

    plain, t_plain = timed(minimize, fun, np.zeros(delta.shape[1]), jac=True, method="L-BFGS-B")
    row["plain_lbfgs_seconds"] = t_plain
    row["plain_lbfgs_rel_excess"] = (program.objective(plain.x) - fast.objective) / abs(fast.objective)
    row["ratio_to_plain_lbfgs"] = t_fast / t_plain
    X, y = symmetrised(delta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr, t_lr = timed(LogisticRegression(C=1.0 / (2 * reg), fit_intercept=False).fit, X, y)
    row["logreg_seconds"] = t_lr
    row["logreg_rel_excess"] = (program.objective(lr.coef_.ravel()) - fast.objective) / abs(fast.objective)
    newton, t_newton = timed(get_backend("newton", program).solve, program)
    row["newton_seconds"] = t_newton
    if with_peers:
        for solver in ("lbfgs", "newton-cholesky"):
            peer = peers.sklearn_logreg(program, fast.objective, solver)
            row.update({f"sklearn_{solver.replace('-', '_')}_{k}": v for k, v in peer.items()})
    if with_reference:
        reference, t_ref = timed(get_backend("cvxpy", program).solve, program)
        row["cvxpy_seconds"] = t_ref
        row["cvxpy_status"] = reference.certificate.solver_status
        row["speedup_vs_cvxpy"] = t_ref / t_fast
    return row


def bench_lp(delta, C, with_reference, with_peers=True):
    """The l1 LP by ``lp-ipm`` (the dense interior point, "fast"), by ``highs`` (HiGHS on the dual
    LP with cutting planes, the previous default) and, when affordable, by cvxpy + HiGHS."""
    program = MarginProgram(delta, norm="l1", C=C)
    fast, t_fast = timed(get_backend("lp-ipm", program).solve, program)
    row = {"fast_seconds": t_fast, "fast_gap": fast.certificate.relative_gap,
           "fast_status": fast.certificate.status, "objective": fast.objective}
    highs, t_highs = timed(get_backend("highs", program).solve, program)
    row["highs_seconds"] = t_highs
    row["highs_gap"] = highs.certificate.relative_gap
    row["highs_objective_rel_diff"] = (fast.objective - highs.objective) / abs(highs.objective)
    row["speedup_vs_highs"] = t_highs / t_fast
    if with_peers and delta.shape[0] <= PEER_MAX_PAIRS:
        for form in ("dual", "primal"):
            peer = peers.highs_ipm_lp(program, fast.objective, form)
            row.update({f"highs_ipm_{form}_{k}": v for k, v in peer.items()})
    if with_reference:
        reference, t_ref = timed(get_backend("cvxpy", program).solve, program)
        row["cvxpy_seconds"] = t_ref
        row["objective_rel_diff"] = (fast.objective - reference.objective) / abs(reference.objective)
        row["speedup_vs_cvxpy"] = t_ref / t_fast
    return row


def bench_fa(delta, groups):
    """The whole FA loop (all rounds, out-of-fold mining) against one standard solve."""
    rows = {}
    for name, program in (("mm-qp", MarginProgram(delta, C=1.0)), ("maxent", MaxEntProgram(delta, reg=1.0))):
        _, t_one = timed(get_backend("auto", program).solve, program)
        for label, settings in (("train", FASettings(oof_folds=0, max_rounds=5)),
                                ("oof5", FASettings(oof_folds=5, max_rounds=5))):
            result, t_fa = timed(run_fa, program, "auto", settings, groups=groups)
            rows[f"{name}/{label}"] = {
                "standard_seconds": t_one, "fa_seconds": t_fa, "ratio": t_fa / t_one,
                "rounds": len(result.history) - 1,
                "solves": len(result.history) * (1 + (settings.oof_folds)),
            }
    return rows


SCALING_N = (1000, 3000, 10000, 30000)
SCALING_D = (64, 128, 256, 576, 1024)


def bench_scaling(ns=SCALING_N, ds=SCALING_D, fixed_d=576, fixed_n=3000):
    """Time of each fast backend (auto) against n at d = ``fixed_d`` and against d at n = ``fixed_n``,
    with the fitted exponent of each sweep (:func:`benchmarks.peers.fit_exponent`)."""
    programs = {"mm-qp": lambda delta: MarginProgram(delta, C=1.0), "maxent": lambda delta: MaxEntProgram(delta, reg=1.0),
                "mm-lp": lambda delta: MarginProgram(delta, norm="l1", C=1.0)}
    sweeps = {"n": [(n, fixed_d) for n in ns], "d": [(fixed_n, d) for d in ds]}
    rows = {}
    for axis, grid in sweeps.items():
        for n, d in grid:
            delta = np.ascontiguousarray(simulate(n_pairs=n, dim=d, regime="detox", seed=0).pairs.delta)
            for name, make in programs.items():
                program = make(delta)
                solution, seconds = timed(get_backend("auto", program).solve, program)
                rows.setdefault((name, axis), []).append(
                    {"n": n, "d": d, "seconds": seconds, "backend": solution.certificate.backend,
                     "gap": solution.certificate.relative_gap, "status": str(solution.certificate.status)})
                print(f"  scaling {name:<7} n={n:<6} d={d:<5} {seconds:.3f}s ({solution.certificate.backend}, "
                      f"gap {solution.certificate.relative_gap:.1e})")
    out = []
    for (name, axis), points in rows.items():
        sizes = [p[axis] for p in points]
        exponent = peers.fit_exponent(sizes, [p["seconds"] for p in points])
        out.append({"program": name, "axis": axis, "points": points, "exponent": exponent})
        print(f"scaling {name} vs {axis}: time ∝ {axis}^{exponent:.2f}")
    return out


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small grid (default)")
    size.add_argument("--full", action="store_true", help="the issue's grid, plus n=100,000, d=576")
    parser.add_argument("--out", help="write the rows as JSON")
    parser.add_argument("--scaling", action="store_true",
                        help="only the scaling sweeps (time vs n at d=576, vs d at n=3000, fitted exponents)")
    parser.add_argument("--no-peers", action="store_true", help="skip PIQP, scikit-learn and HiGHS IPM")
    args = parser.parse_args(argv)
    if args.scaling:
        warm_up()
        print(f"machine: {machine()}; threads: OMP={os.environ['OMP_NUM_THREADS']}")
        result = {"machine": machine(), "scaling": bench_scaling()}
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(result, handle, indent=2, default=float)
        return result
    if args.full:
        grid = [(n, d) for n in (1000, 3000, 10000) for d in (64, 384, 576, 1024)]
    else:
        grid = [(1000, 64), (3000, 576)]
    warm_up()
    print(f"machine: {machine()}; threads: OMP={os.environ['OMP_NUM_THREADS']}")
    results = {"machine": machine(), "qp": [], "maxent": [], "lp": [], "fa": [], "memory": []}
    for n, d in grid:
        problem = simulate(n_pairs=n, dim=d, regime="detox", seed=0)
        delta = np.ascontiguousarray(problem.pairs.delta)
        with_ref = predicted_cvxpy_seconds(n, d, CVXPY_QP_SECONDS_AT_3000_576) <= CVXPY_BUDGET_SECONDS
        qp = {"n": n, "d": d, **bench_qp(delta, 1.0, with_ref, not args.no_peers)}
        results["qp"].append(qp)
        print(_line("mm-qp soft C=1", qp, "cvxpy", "linearsvc", "piqp_dual", "piqp_primal"))
        me = {"n": n, "d": d, **bench_maxent(delta, 1.0, n * d <= 3000 * 576, not args.no_peers)}
        results["maxent"].append(me)
        print(_line("maxent λ=1", me, "cvxpy", "plain_lbfgs", "sklearn_lbfgs", "sklearn_newton_cholesky"))
        with_lp_ref = predicted_cvxpy_seconds(n, d, CVXPY_LP_SECONDS_AT_3000_576) <= CVXPY_BUDGET_SECONDS
        lp = {"n": n, "d": d, **bench_lp(delta, 1.0, with_lp_ref, not args.no_peers)}
        results["lp"].append(lp)
        print(_line("mm-lp l1 C=1", lp, "highs", "cvxpy", "highs_ipm_dual", "highs_ipm_primal")
              + f" | vs highs {lp['highs_objective_rel_diff']:+.1e} rel. objective, highs gap {lp['highs_gap']:.1e}")
        if (n, d) == (3000, 576) or (not args.full and (n, d) == grid[-1]):
            fa = bench_fa(delta, problem.pairs.prompt_ids)
            results["fa"].append({"n": n, "d": d, **fa})
            for key, value in fa.items():
                print(f"  FA {key:<13} n={n} d={d}: loop {value['fa_seconds']:.2f}s vs one solve "
                      f"{value['standard_seconds']:.2f}s = {value['ratio']:.1f}x ({value['rounds']} rounds)")
    if args.full:
        n, d = 100_000, 576
        problem = simulate(n_pairs=n, dim=d, regime="detox", seed=0)
        delta = np.ascontiguousarray(problem.pairs.delta)
        del problem
        for name, program in (("mm-qp", MarginProgram(delta, C=1.0)), ("maxent", MaxEntProgram(delta, reg=1.0))):
            solution, seconds = timed(get_backend("auto", program).solve, program)
            peak = peak_memory(lambda: get_backend("auto", program).solve(program))
            row = {"method": name, "n": n, "d": d, "seconds": seconds, "gap": solution.certificate.relative_gap,
                   "peak_bytes": peak, "delta_bytes": delta.nbytes, "peak_over_delta": peak / delta.nbytes}
            results["memory"].append(row)
            print(f"{name} n={n} d={d}: {seconds:.2f}s, gap {row['gap']:.1e}, peak {peak / 2**20:.0f} MiB "
                  f"= {row['peak_over_delta']:.2f}x Δ ({delta.nbytes / 2**20:.0f} MiB)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2, default=float)


def _line(label, row, *baselines):
    parts = [f"{label:<16} n={row['n']:<6} d={row['d']:<5} fast {row['fast_seconds']:.3f}s gap {row['fast_gap']:.1e}"]
    for base in baselines:
        key = f"{base}_seconds"
        if key in row:
            ratio = row[key] / row["fast_seconds"]
            excess = row.get(f"{base}_rel_excess")
            parts.append(f"{base} {row[key]:.3f}s ({ratio:.1f}x" + ("" if excess is None else f", obj {excess:+.0e}")
                         + ")")
        elif f"{base}_skipped" in row:
            parts.append(f"{base} skipped ({row[f'{base}_skipped']})")
        elif base == "cvxpy":
            parts.append("cvxpy skipped (predicted > budget)")
    return " | ".join(parts)


if __name__ == "__main__":
    main()
