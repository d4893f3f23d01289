"""Certify the failure-aware (FA) theory claims of ``proofs/`` on a user's own preference data.

The sets are those of :class:`~fairl_opt.geometry.feasible_set.FeasibleSet`: for margins m and one scale
ρ > 0, ``{φ : ‖φ‖₂ ≤ 1, Δφ ≥ ρ·m}``, with ρ = 1/R and R = budget · min{‖θ‖₂ : Δθ ≥ m_FA} (budget 2
by default), shared by F_std (round 0) and F_FA (after the FA loop, m_FA ≥ m_std). What this module
reports (and ``proofs/`` states) is in the data's own units θ = φ/ρ = R·φ, i.e. the sets

    F(m; R) = {θ ∈ R^d : ‖θ‖₂ ≤ R,  Δθ ≥ m}  =  R · {‖φ‖ ≤ 1, Δφ ≥ m/R}:

points, radii and the witness ball are multiplied by R on the way out (:func:`_unit_ball_rows` is that
boundary), and the exact checks of :mod:`fairl_opt.geometry.exact` run on the data as given. Volume
ratios, containment and strictness do not depend on the units.

Soft margins: the hard constraints Δθ ≥ m are often infeasible (then every F is empty), so for
``margin="soft"`` the margins are relaxed by the standard solution's slacks ξ_std = max(0, m_std − Δθ_std):
F_std = F(m_std − ξ_std; R), F_FA = F(m_FA − ξ_std; R) — the rewards that do at least as well as the
standard solution on every pair. (Hard margins: ξ_std = 0, the same definition.) The same ξ_std on both
sides keeps m_FA − ξ_std ≥ m_std − ξ_std, so T1–T5 apply unchanged.

What :func:`certify_claims` returns (JSON-ready):

* ``strict_inclusion``: F_FA ⊊ F_std (T2 of ``proofs/``), with a ``witness`` θ ∈ F_std \\ F_FA. The
  witness is the centre of a ball of radius ``witness_radius`` > 0 that lies in F_std and strictly
  below a tightened constraint; the ball is re-checked in exact rational arithmetic
  (``certified: "exact"``), so the removed part has volume at least ``(radius/R)^d`` of the R-ball.
* ``max_tightening``: the largest t with {Δθ ≥ m_std + t·1_S} non-empty (the LP of T3,
  :func:`fairl_opt.solvers.max_admissible_tightening`) for the tightened pairs S, with a Farkas
  certificate of emptiness just beyond it.
* ``volume_ratio``: vol(F_FA)/vol(F_std) with its error bar (:func:`fairl_opt.geometry.volume_ratio`).
* ``failed_assumption``: when the claim does not hold on these data, one sentence naming the
  assumption that fails (no failure was tightened; F_std is empty; every tightened constraint is
  already implied by F_std, with an exact dual certificate; F_std is flat).

Numerical work (the SOCPs of :mod:`fairl_opt.geometry.conic`) only proposes points and multipliers;
every claim marked exact is decided by :class:`fractions.Fraction` arithmetic on the float data.
"""

from __future__ import annotations

import numpy as np

from fairl_opt.exceptions import DataError, InfeasibleError, SolverError
from fairl_opt.geometry import conic
from fairl_opt.geometry.exact import (
    exact_ball_in_cut,
    exact_dual_bound_at_least,
    farkas_on_unit_rows,
    verified_conflict,
)
from fairl_opt.geometry.feasible_set import FeasibleSet, smallest_norm

__all__ = ["CONVENTION", "certify_claims", "certify_sets"]

CONVENTION = (
    "F(m; R) = {theta : ||theta||_2 <= R, Delta theta >= m}; F_std = F(m_std; R), F_FA = F(m_FA; R), "
    "R = budget * min{||theta||_2 : Delta theta >= m_FA}; soft margins: m relaxed by the "
    "standard solution's slacks, m - max(0, m_std - Delta theta_std)"
)
#: A witness ball is accepted only when exact arithmetic confirms it; these shrink factors are tried
#: on the solver's radius in turn (the solver is accurate to ~1e-9 relative).
_SHRINK = (0.999, 0.9, 0.5, 0.1)
#: Tightened pairs tried for a witness ball (ordered by how far the standard solution falls short).
WITNESS_CANDIDATES = 10
#: Pairs scanned for a cut when no witness ball was found (each is one SOCP).
MAX_IMPLIED_SCAN = 2000
#: Solver accuracy on unit-scaled problems: a depth below this is treated as 0.
DEPTH_TOL = 1e-8


# -- the boundary: raw rows and a norm budget R <-> FeasibleSet's unit ball -------------------------
def _unit_ball_rows(delta, margins, radius_bound):
    """(U, c, ‖Δ_i‖): F(m; R) = R·{‖φ‖ ≤ 1, Uφ ≥ c} with U_i = Δ_i/‖Δ_i‖, c_i = m_i/(‖Δ_i‖R)."""
    norms = np.linalg.norm(delta, axis=1)
    if np.any(norms == 0):
        raise DataError(f"row {int(np.flatnonzero(norms == 0)[0])} of delta is zero")
    return delta / norms[:, None], np.asarray(margins, dtype=np.float64) / (norms * radius_bound), norms


def _chebyshev(delta, margins, R, upper_rows=(), upper_bounds=()):
    """The largest ball in F(m; R) ∩ {Δ_jθ ≤ u_j, j ∈ upper_rows}: (centre θ, signed radius), in θ units.

    Negative radius: the set is empty (the constraints must be relaxed by |r| to meet); zero (up to
    :data:`DEPTH_TOL`·R): it is flat.
    """
    U, c, norms = _unit_ball_rows(delta, margins, R)
    up = np.asarray(upper_rows, dtype=np.int64)
    upper = None
    if up.size:
        upper = (U[up], np.asarray(upper_bounds, dtype=np.float64) / (norms[up] * R))
    _, (centre, radius) = conic.chebyshev(U, c, upper=upper, signed=True)
    return R * centre, R * radius


def _minimise_linear(delta, margins, R, direction):
    """min{gᵀθ : θ ∈ F(m; R)}: (value, minimiser θ, multipliers y ≥ 0 of the raw rows Δθ ≥ m).

    The multipliers give the weak-duality bound ``mᵀy − R‖g − Δᵀy‖`` (checked exactly with
    :func:`~fairl_opt.geometry.exact.exact_dual_bound_at_least`).
    """
    U, c, norms = _unit_ball_rows(delta, margins, R)
    g = np.asarray(direction, dtype=np.float64)
    status, payload = conic.support(U, c, -g)
    if status != "solved":
        raise SolverError(f"support SOCP ended with status {status}: F(m; R) is empty", status=status)
    theta = R * payload[0]
    return float(g @ theta), theta, payload[1] / norms


def _tightening_certificate(delta, m_std, tightened, t_star):
    """A Farkas certificate that {Δθ ≥ m_std + t·1_S} is empty just beyond t = t*, or None."""
    n = delta.shape[0]
    beyond = m_std + (t_star + max(1e-6, 1e-6 * abs(t_star))) * np.isin(np.arange(n), tightened)
    found = farkas_on_unit_rows(delta, beyond)
    if found is None:
        return None
    pairs, y, radius = found
    return {"pairs": list(pairs), "multipliers": y.tolist(), "empty_within_radius": radius}


# -- the claims on given margins --------------------------------------------------------------------
def certify_sets(delta, m_std, m_fa, *, radius_bound=None, budget=2.0, theta_std=None):
    """The strict-inclusion claim for F_std = F(m_std; R) and F_FA = F(m_FA; R), certified.

    Parameters
    ----------
    delta : (n, d) array
    m_std, m_fa : (n,) arrays
        Standard and FA margins (m_fa ≥ m_std is checked exactly: T1's hypothesis).
    radius_bound : float, optional
        R. Default ``budget · min{‖θ‖ : Δθ ≥ m_FA}`` (or of m_std when F_FA is empty).
    theta_std : (d,) array, optional
        The standard solution; orders the candidate pairs by how far it falls short of m_FA.

    Returns
    -------
    dict
        ``strict_inclusion``, ``witness``, ``witness_pair``, ``witness_radius``, ``certified``,
        ``removed_volume_log10_lower_bound``, ``radius_bound``, ``tightened``, ``chebyshev_radius``,
        ``max_tightening`` (+ certificate), ``failed_assumption`` and ``implied_certificate``.
    """
    from fairl_opt.solvers import max_admissible_tightening

    delta = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    m_std = np.asarray(m_std, dtype=np.float64)
    m_fa = np.asarray(m_fa, dtype=np.float64)
    n, d = delta.shape
    if m_std.shape != (n,) or m_fa.shape != (n,):
        raise DataError(f"m_std and m_fa must have one entry per pair ({n}), got {m_std.shape}, {m_fa.shape}")
    lowered = np.flatnonzero(m_fa < m_std)
    if lowered.size:
        raise DataError(f"m_fa[{int(lowered[0])}] < m_std[{int(lowered[0])}]: the FA margins must not loosen any pair")
    tightened = np.flatnonzero(m_fa > m_std)
    out = {
        "strict_inclusion": False,
        "witness": None,
        "witness_pair": None,
        "witness_radius": None,
        "certified": None,
        "removed_volume_log10_lower_bound": None,
        "radius_bound": None,
        "tightened": tightened.tolist(),
        "chebyshev_radius": None,
        "max_tightening": None,
        "max_tightening_certificate": None,
        "failed_assumption": None,
        "implied_certificate": None,
    }
    conflict = verified_conflict(delta, m_std)
    if conflict is not None:
        pairs, _, radius = conflict
        out["failed_assumption"] = (
            f"F_std is empty: the hard constraints Δθ >= m_std have no solution with ‖θ‖ < {radius:.3g} (pairs "
            f"{pairs[:10]} conflict: a non-negative combination of their rows is ~0 while their margins are "
            "positive; checked exactly), so there is no set to be strictly inside"
        )
        return out
    if tightened.size == 0:
        out["failed_assumption"] = "no pair was tightened (m_FA = m_std), so F_FA = F_std"
        return out

    t_star = max_admissible_tightening(delta, m_std, tightened)
    out["max_tightening"] = t_star
    if np.isfinite(t_star):
        out["max_tightening_certificate"] = _tightening_certificate(delta, m_std, tightened, t_star)

    fa_empty = verified_conflict(delta, m_fa) is not None
    if radius_bound is None:
        norm = smallest_norm(delta, m_std if fa_empty else m_fa)
        if norm <= 0:
            raise DataError("θ = 0 meets every margin (none is positive): pass radius_bound explicitly")
        radius_bound = float(budget) * norm
    R = float(radius_bound)
    out["radius_bound"] = R
    centre_std, radius_std = _chebyshev(delta, m_std, R)
    radius_fa = None if fa_empty else _chebyshev(delta, m_fa, R)[1]
    out["chebyshev_radius"] = {"standard": radius_std, "fa": radius_fa}
    if radius_std < -DEPTH_TOL * R:
        out["failed_assumption"] = (
            f"F_std is empty within the norm budget R = {R:.6g} (no θ with ‖θ‖ <= R meets the standard margins)"
        )
        return out

    # candidate cut rows: where the standard solution falls furthest short of the FA margins
    order = tightened
    if theta_std is not None:
        shortfall = m_fa[tightened] - delta[tightened] @ np.asarray(theta_std, dtype=np.float64)
        order = tightened[np.argsort(-shortfall, kind="stable")]
    best = None
    for j in order[:WITNESS_CANDIDATES].tolist():
        centre, radius = _chebyshev(delta, m_std, R, [j], [m_fa[j]])
        if radius <= DEPTH_TOL * R:
            continue
        for shrink in _SHRINK:
            r = radius * shrink
            if exact_ball_in_cut(delta, m_std, m_fa, R, centre, r, [j]):
                if best is None or r > best[2]:
                    best = (j, centre, r)
                break
    if best is not None:
        j, centre, r = best
        out.update(
            strict_inclusion=True, witness=centre.tolist(), witness_pair=int(j), witness_radius=float(r),
            certified="exact", removed_volume_log10_lower_bound=float(d * np.log10(r / R)),
        )
        return out

    # no ball: is any tightened constraint cut at all (T2's criterion min_{F_std} Δ_jθ < m_FA_j)?
    implied_exact = True
    scanned = 0
    for j in tightened[:MAX_IMPLIED_SCAN].tolist():
        scanned += 1
        value, theta, y = _minimise_linear(delta, m_std, R, delta[j])
        if value < m_fa[j] - 1e-9 * max(1.0, abs(m_fa[j])):
            out.update(strict_inclusion=True, witness=theta.tolist(), witness_pair=int(j), witness_radius=0.0,
                       certified="numerical")
            if radius_std <= DEPTH_TOL * R:
                out["failed_assumption"] = (
                    f"F_std is not full-dimensional (Chebyshev radius {radius_std:.3g} ~ 0), so the part that the "
                    "FA constraints remove has zero volume although the inclusion is strict"
                )
            return out
        support = np.flatnonzero(y > 0)
        implied_exact &= exact_dual_bound_at_least(delta, m_std, R, delta[j], y[support], support, m_fa[j])
    out["implied_certificate"] = {"exact": bool(implied_exact and scanned == tightened.size), "pairs_checked": scanned}
    out["failed_assumption"] = (
        "every tightened constraint is already implied by F_std within the norm budget "
        f"(min over F_std of Δ_jθ >= m_FA_j for all {tightened.size} tightened pair(s)"
        + (", proved by exact dual certificates)" if out["implied_certificate"]["exact"] else ")")
        + ", so the FA constraints cut nothing: F_FA = F_std"
    )
    return out


def _volume_ratio(delta, m_std, m_fa, R, samples, seed):
    """vol(F_FA)/vol(F_std) as a JSON-ready dict, or (None, the reason) when the estimate fails."""
    from fairl_opt.geometry.volume import volume_ratio

    try:
        standard = FeasibleSet(delta, m_std / R, duplicates="merge")
        fa = FeasibleSet(delta, m_fa / R, duplicates="merge")
        estimate = volume_ratio(fa, standard, samples=samples, seed=seed)
    except Exception as exc:  # noqa: BLE001 - any failure of the estimate is reported, not fatal
        return None, f"volume estimate failed ({type(exc).__name__}: {exc})"
    return estimate.to_dict(), None


def certify_claims(pairs, method="fa-mm-qp", margin="hard", C=1.0, samples=None, seed=0, *, budget=2.0,
                   volume=True, settings=None) -> dict:
    """Run the FA loop on ``pairs`` and certify T2 (strict inclusion) and T3 (admissible tightening).

    Parameters
    ----------
    pairs : PreferencePairs
    method : {"fa-mm-qp", "fa-mm-lp"}
        The max-margin program (ℓ2 QP or ℓ1 LP) the FA loop tightens.
    margin : {"hard", "soft"}
    C : float
        Soft-margin penalty.
    samples, seed : int
        Passed to the volume estimate (:func:`fairl_opt.geometry.volume_ratio`); ``seed`` is also the
        FA loop's fold seed when ``settings`` is not given.
    budget : float
        R = budget · min{‖θ‖ : Δθ ≥ m_FA}.
    volume : bool
        Estimate the volume ratio (the slow part); False reports it as null.
    settings : fairl_opt.fa.FASettings, optional
        The FA loop's settings, passed unchanged to :func:`fairl_opt.fa.run_fa` (default
        ``FASettings(seed=seed)``).

    Returns
    -------
    dict
        JSON-ready (see the module docstring).

    Examples
    --------
    >>> from fairl_opt.simulate import simulate
    >>> out = certify_claims(simulate(n_pairs=30, dim=40, seed=0).pairs, volume=False)
    >>> out["strict_inclusion"], out["certified"]
    (True, 'exact')
    """
    from fairl_opt.estimators import check_pairs
    from fairl_opt.fa import FASettings, run_fa
    from fairl_opt.programs import MarginProgram

    pairs = check_pairs(pairs)
    if method not in ("fa-mm-qp", "fa-mm-lp"):
        raise DataError(f"method must be 'fa-mm-qp' or 'fa-mm-lp' (the claims are about margin sets), got {method!r}")
    if margin not in ("hard", "soft"):
        raise DataError(f"margin must be 'hard' or 'soft', got {margin!r}")
    if settings is None:
        settings = FASettings(seed=seed)
    elif not isinstance(settings, FASettings):
        raise DataError(f"settings must be a FASettings, got {type(settings).__name__}")
    program = MarginProgram(pairs.delta, 1.0, "l2" if method == "fa-mm-qp" else "l1",
                            None if margin == "hard" else C)
    out = {"method": method, "margin": margin, "n_pairs": pairs.n_pairs, "dim": pairs.dim, "convention": CONVENTION,
           "budget": float(budget)}
    try:
        result = run_fa(program, "auto", settings, groups=pairs.prompt_ids)
    except InfeasibleError as exc:
        if verified_conflict(pairs.delta, program.margins) is None:
            raise SolverError(
                f"the backend reported the hard margin infeasible (pairs {exc.rows[:10]}), but no "
                "Farkas certificate survives an exact check on unit-scaled rows: the data are badly scaled "
                "(rescale the embeddings), not provably infeasible"
            ) from exc
        out.update(strict_inclusion=False, witness=None, max_tightening=None, volume_ratio=None,
                   volume_ratio_reason="no FA run: the standard hard-margin program is infeasible",
                   failed_assumption=(
                       f"F_std is empty: the hard-margin constraints are infeasible (pairs "
                       f"{exc.rows[:10]} conflict); with --margin soft the FA loop runs, but "
                       "the set of rewards meeting every margin is still empty"))
        return out
    rounds = result.round_margins()
    m_std, m_fa = rounds[0], rounds[-1]
    theta_std = result.base_solution.theta
    if margin == "soft":
        # the soft program's sets: margins relaxed by the standard solution's slacks (module docstring)
        slack = np.maximum(0.0, m_std - pairs.delta @ theta_std)
        m_std, m_fa = m_std - slack, m_fa - slack
        out["standard_slack"] = {"pairs_with_slack": int(np.count_nonzero(slack)), "max": float(slack.max())}
    claims = certify_sets(pairs.delta, m_std, m_fa, budget=budget, theta_std=theta_std)
    out.update(rounds=len(result.history) - 1, stop_reason=result.stop_reason,
               n_tightened=len(claims["tightened"]))
    if not claims["tightened"] and claims["failed_assumption"].startswith("no pair"):
        claims["failed_assumption"] = (
            f"the FA loop tightened no pair (stop reason: {result.stop_reason}), so F_FA = F_std: strict "
            "inclusion needs at least one failure constraint that cuts F_std"
        )
    out.update(claims)
    out["volume_ratio"] = None
    out["volume_ratio_reason"] = None
    if not volume:
        out["volume_ratio_reason"] = "not requested"
    elif claims["radius_bound"] is None:
        out["volume_ratio_reason"] = "no sets to compare (see failed_assumption)"
    elif claims["chebyshev_radius"]["fa"] is None:
        out["volume_ratio"] = {"ratio": 0.0, "stderr": 0.0, "ci_low": 0.0, "ci_high": 0.0, "method": "exact-empty"}
        out["volume_ratio_reason"] = "F_FA is empty (the soft-margin FA loop tightened beyond the admissible step)"
    elif not claims["strict_inclusion"]:
        out["volume_ratio"] = {"ratio": 1.0, "stderr": 0.0, "ci_low": 1.0, "ci_high": 1.0, "method": "exact-equal"}
        out["volume_ratio_reason"] = "F_FA = F_std (see failed_assumption)"
    else:
        out["volume_ratio"], out["volume_ratio_reason"] = _volume_ratio(
            pairs.delta, m_std, m_fa, claims["radius_bound"], samples, seed)
    return out
