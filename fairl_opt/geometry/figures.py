"""Pictures of F_std and F_FA with the FA cuts (d = 2 and d = 3), written to PNG.

``python -m fairl_opt.geometry.figures [--out docs/figures]`` regenerates the figures of the README
and docs: a small planted problem, a hard-margin FA run (cvxpy reference backend), and the sets
F(m) = {‖θ‖ ≤ 1, Δθ ≥ ρ·m} of :mod:`fairl_opt.geometry.feasible_set` for every round. Needs
matplotlib (Agg backend, no display).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fairl_opt.geometry.ambiguity import reward_intervals
from fairl_opt.geometry.feasible_set import FeasibleSet
from fairl_opt.geometry.volume import nested_volume_ratio, sample_points



def _save(fig, path, dpi: int) -> Path:
    """Lay out, write ``fig`` to ``path`` (parents created), close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

def planted_fa_run(dim: int, seed: int = 0, n_pairs: int = 10):
    """A separable toy problem in ``dim`` dimensions and its hard-margin FA run.

    Difference rows point within ~70° of a planted direction with lengths in [0.6, 2], so the
    hard margin is feasible and the near-tie rule (30 % quantile) finds failures to tighten.
    Returns (program, FAResult).
    """
    from fairl_opt.fa import FASettings, run_fa
    from fairl_opt.programs import MarginProgram

    rng = np.random.default_rng(seed)
    planted = np.zeros(dim)
    planted[0] = 1.0
    rows = []
    while len(rows) < n_pairs:
        u = rng.normal(size=dim)
        u /= np.linalg.norm(u)
        if u @ planted > np.cos(1.2):
            rows.append(u * rng.uniform(0.6, 2.0))
    program = MarginProgram(np.array(rows))
    result = run_fa(program, "cvxpy", FASettings(near_tie_quantile=0.3, oof_folds=0, max_rounds=3))
    return program, result


def _line_in_disk(a, b):
    """End points of {θ : aᵀθ = b} ∩ unit disk, or None."""
    norm = np.linalg.norm(a)
    u, c = a / norm, b / norm
    if abs(c) >= 1:
        return None
    foot = c * u
    along = np.array([-u[1], u[0]]) * np.sqrt(1 - c * c)
    return np.vstack([foot - along, foot + along])


def draw_2d(path, seed: int = 0, samples: int = 20_000):
    """F_std, F_FA, the FA cuts, Chebyshev balls and the two solutions for a d = 2 problem; returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    program, result = planted_fa_run(2, seed)
    sets = FeasibleSet.from_fa_result(result)
    standard, fa = sets[0], sets[-1]
    scale = standard.b[0] / program.margins[0]
    ratio = nested_volume_ratio(sets, samples=samples, seed=seed)

    grid = np.linspace(-1.02, 1.02, 701)
    gx, gy = np.meshgrid(grid, grid)
    points = np.c_[gx.ravel(), gy.ravel()]
    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.3", lw=1.0))
    for fset, color, label in ((standard, "#9ecae1", "F_std"), (fa, "#fd8d3c", "F_FA")):
        inside = fset.contains(points).reshape(gx.shape).astype(float)
        ax.contourf(gx, gy, inside, levels=[0.5, 1.5], colors=[color], alpha=0.75)
        ax.plot([], [], color=color, lw=8, label=label)
    tightened = np.flatnonzero(fa.b > standard.b)
    for i in range(standard.n_rows):
        seg = _line_in_disk(standard.A[i], standard.b[i])
        if seg is not None:
            ax.plot(seg[:, 0], seg[:, 1], color="0.55", lw=0.8,
                    label="Δ_i θ = ρ m_i" if i == 0 else None)
    for k, i in enumerate(tightened):
        seg = _line_in_disk(fa.A[i], fa.b[i])
        if seg is not None:
            ax.plot(seg[:, 0], seg[:, 1], color="#d62728", lw=1.4, ls="--",
                    label="FA cut Δ_j θ = ρ m_j^FA" if k == 0 else None)
    for fset, color in ((standard, "#08519c"), (fa, "#a63603")):
        ball = fset.chebyshev_ball()
        ax.add_patch(Circle(ball.centre, ball.radius, fill=False, color=color, lw=1.0, ls=":"))
    theta_std = scale * result.base_solution.theta
    theta_fa = scale * result.theta
    ax.plot(*theta_std, "x", color="#08519c", ms=9, mew=2, label="ρ·θ̂_std (outside F_FA)")
    ax.plot(*theta_fa, "o", color="#a63603", ms=7, label="ρ·θ̂_FA")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_title(
        f"d = 2, n = {program.n_pairs} pairs, {len(tightened)} tightened: vol(F_FA)/vol(F_std) = "
        f"{ratio.estimate:.3f} [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}]\n"
        f"Chebyshev radius {standard.chebyshev_radius():.3f} → {fa.chebyshev_radius():.3f} "
        f"(dotted circles), budget 2",
        fontsize=9,
    )
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    return _save(fig, path, dpi=120)


def draw_3d(path, seed: int = 0, n_points: int = 3000):
    """Hit-and-run samples of F_std and F_FA for a d = 3 problem, with the unit sphere; returns path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    program, result = planted_fa_run(3, seed, n_pairs=12)
    sets = FeasibleSet.from_fa_result(result)
    standard, fa = sets[0], sets[-1]
    ratio = nested_volume_ratio(sets, samples=8000, seed=seed)
    heldout = np.random.default_rng(seed + 1).normal(size=(20, 3))
    widths = [reward_intervals(s, heldout).mean_width for s in (standard, fa)]
    inside_std = sample_points(standard, n_points, seed=seed)
    only_std = inside_std[~fa.contains(inside_std)]
    inside_fa = sample_points(fa, n_points // 2, seed=seed + 1)
    fig = plt.figure(figsize=(11, 5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    u, v = np.mgrid[0:2 * np.pi:40j, 0:np.pi:20j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    ax.scatter(*only_std.T, s=2, color="#3182bd", alpha=0.35, label="F_std \\ F_FA")
    ax.scatter(*inside_fa.T, s=2, color="#e6550d", alpha=0.6, label="F_FA")
    ax.view_init(elev=20, azim=-60)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_zlabel("θ₃")
    ax.set_title("in the unit ball", fontsize=9)
    ax.legend(loc="upper left", fontsize=8, markerscale=4)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.scatter(only_std[:, 1], only_std[:, 2], s=2, color="#3182bd", alpha=0.35)
    ax2.scatter(inside_fa[:, 1], inside_fa[:, 2], s=2, color="#e6550d", alpha=0.6)
    for fset, color in ((standard, "#08519c"), (fa, "#a63603")):
        ball = fset.chebyshev_ball()
        ax2.add_patch(plt.Circle(ball.centre[1:], ball.radius, fill=False, color=color, lw=1.0, ls=":"))
    ax2.set_aspect("equal")
    ax2.set_xlabel("θ₂")
    ax2.set_ylabel("θ₃")
    ax2.set_title("projected along θ₁ (the planted direction); dotted: Chebyshev balls", fontsize=9)
    fig.suptitle(
        f"d = 3, n = {program.n_pairs} pairs: vol(F_FA)/vol(F_std) = {ratio.estimate:.3f} "
        f"[{ratio.ci_low:.3f}, {ratio.ci_high:.3f}]; Chebyshev radius {standard.chebyshev_radius():.3f} → "
        f"{fa.chebyshev_radius():.3f}; mean reward-interval width {widths[0]:.3f} → {widths[1]:.3f}",
        fontsize=9,
    )
    return _save(fig, path, dpi=110)


def main(argv=None) -> int:
    """Draw the 2-d and 3-d figures into ``--out``; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (draw_2d(Path(args.out) / "feasible_sets_2d.png", args.seed),
                 draw_3d(Path(args.out) / "feasible_sets_3d.png", args.seed)):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
