"""An in-memory float32 Δ: its products go by float64 row blocks (never a whole-array float64
copy), equal the float64 products of the same values to float64 rounding, and the programs on it
are the float64 programs of those values: the same optimum and certificate as on the upcast copy,
and the cvxpy reference's objective."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import InMemoryRows, as_rows
from fairl_opt.solvers import CvxpyBackend, LBFGSSettings, WorkingSetSettings, get_backend
from tests.test_distributed import planted

SCREENED = WorkingSetSettings(full_set_below=0, batch=200)


def _exact(delta32, x):
    """Δx of the float32 values in extended precision: the rounding-free reference."""
    return delta32.astype(np.longdouble) @ np.asarray(x, dtype=np.longdouble)


@pytest.mark.parametrize("kind", ["gaussian", "badly-scaled", "near-duplicate"])
def test_float32_products_are_float64_accurate(kind):
    delta32 = planted(kind, n=3000, d=12, seed=2).astype(np.float32)
    rows = as_rows(delta32)
    assert isinstance(rows, InMemoryRows) and rows._streamed is not None  # the blocked path, not numpy's cast
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=3000)
    size = np.abs(delta32).astype(np.float64) @ np.abs(x)  # |Δ||x|: the scale of each product
    assert np.all(np.abs(rows @ x - _exact(delta32, x)) <= 1e-13 * size)
    exact_t = delta32.T.astype(np.longdouble) @ y.astype(np.longdouble)
    size_t = np.abs(delta32).T.astype(np.float64) @ np.abs(y)
    assert np.all(np.abs(rows.T @ y - exact_t) <= 1e-12 * size_t)
    assert (rows @ x).dtype == np.float64 and (rows.T @ y).dtype == np.float64
    c = rng.uniform(0.1, 2.0, size=3000)
    up = delta32.astype(np.float64)
    np.testing.assert_allclose(rows.weighted_gram(c), (up.T * c) @ up, rtol=1e-12,
                               atol=1e-12 * float(np.abs((up.T * c) @ up).max()))
    np.testing.assert_allclose(rows.abs_matvec(np.abs(x)), size, rtol=1e-13)


def test_float32_products_never_copy_delta_whole():
    n, d = 100000, 64  # 24 MiB of float32, 49 MiB as float64 (blocks: 8 MiB)
    delta32 = np.random.default_rng(1).normal(size=(n, d)).astype(np.float32)
    rows = as_rows(delta32)
    x, y = np.ones(d), np.ones(n)
    tracemalloc.start()
    try:
        rows @ x
        rows.T @ y
        rows.weighted_gram(y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * n * d * 8, f"peak {peak / 2**20:.1f} MiB: a whole-array float64 copy of delta"


@pytest.mark.parametrize("kind", ["gaussian", "badly-scaled", "near-duplicate", "thin-margin"])
def test_float32_programs_are_the_float64_programs_of_their_values(kind):
    delta32 = planted(kind, n=1500, d=10, seed=4).astype(np.float32)
    up = delta32.astype(np.float64)
    size = float(np.abs(up).max())
    c = 10.0 / size**2
    cases = [(lambda D: MaxEntProgram(D, reg=1e-2 * size**2), "lbfgs", LBFGSSettings(tol=1e-12)),
             (lambda D: MarginProgram(D, C=c), "working-set", SCREENED)]
    for make, backend, settings in cases:
        p32, p64 = make(delta32), make(up)
        s32 = get_backend(backend, p32, settings).solve(p32)
        s64 = get_backend(backend, p64, settings).solve(p64)
        assert s32.certificate.status == s64.certificate.status == "optimal", (kind, backend)
        assert abs(s32.objective - s64.objective) <= 1e-10 * abs(s64.objective), (kind, backend)
        # the certificate of the float32 program is the float64 program's figures at the same θ
        assert abs(p64.objective(s32.theta) - s32.certificate.primal_objective) <= 1e-12 * abs(s32.objective)
        if backend == "working-set":
            reference = CvxpyBackend().solve(p64)
            assert s32.objective <= reference.objective * (1 + 1e-10), kind
            assert abs(s32.objective - reference.objective) <= 1e-6 * abs(reference.objective), kind
