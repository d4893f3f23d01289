"""The failure-aware loop on a blocked Δ (memory-mapped .npy, row-chunked Dask array): the same
rounds, failures, edits and certified θ as on the same values in memory, with out-of-fold fits on
row-subset views (:mod:`fairl_opt.programs.subset_rows`) that never gather the folds' rows."""

from __future__ import annotations

import numpy as np
import pytest

from fairl_opt.estimators import FailureAwareReward, MaxEntReward, MaxMarginReward
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import StreamedRows, as_rows
from fairl_opt.programs.subset_rows import SubsetRows, subset_rows
from tests.test_distributed import planted

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _memmap(tmp_path, delta, dtype=np.float64):
    path = tmp_path / f"delta-{np.dtype(dtype).name}.npy"
    np.save(path, delta.astype(dtype))
    return np.load(path, mmap_mode="r")


def _blocked_kinds(tmp_path, delta, dask=False):
    """(name, blocked Δ) pairs holding exactly ``delta``'s values (with ``dask``: a Dask array too,
    on the module's cluster)."""
    out = [("memmap", StreamedRows(_memmap(tmp_path, delta), block_rows=97))]
    if dask:
        out.append(("dask", da.from_array(delta, chunks=((100, 350, 17, delta.shape[0] - 467), (delta.shape[1],)))))
    return out


# -- the view ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("pick", ["every-third", "one-block-empty", "single"])
def test_subset_view_matches_the_cut_rows(tmp_path, pick):
    delta = planted("badly-scaled", n=600, d=7, seed=2)
    rows = {"every-third": np.arange(0, 600, 3), "one-block-empty": np.r_[0:90, 200:600],
            "single": np.array([417])}[pick]
    parent = StreamedRows(_memmap(tmp_path, delta), block_rows=97).validate()
    view = subset_rows(parent, rows)
    cut = delta[rows]
    rng = np.random.default_rng(0)
    x, y, c = rng.normal(size=7), rng.normal(size=rows.size), rng.uniform(size=rows.size)
    scale = np.abs(cut).max()
    assert view.shape == cut.shape and len(view.bounds) == len(parent.bounds)
    assert np.allclose(view @ x, cut @ x, rtol=1e-13, atol=1e-13 * scale * np.abs(x).sum())
    assert np.allclose(view.T @ y, cut.T @ y, rtol=1e-12, atol=1e-12 * scale * np.abs(y).sum())
    assert np.allclose(view.row_sq_norms(), np.einsum("ij,ij->i", cut, cut), rtol=1e-14)
    assert np.allclose(view.weighted_gram(c), (cut.T * c) @ cut, rtol=1e-12, atol=1e-12 * scale**2 * c.sum())
    assert np.array_equal(view.row_abs_max(), np.abs(cut).max(axis=1))
    take = rng.permutation(rows.size)[: max(1, rows.size // 4)]
    assert np.array_equal(view[take], cut[take])
    # a scaled view of the subset is the subset of the scaled parent, exactly (powers of two)
    assert np.array_equal(view.scaled(3)[take], np.ldexp(cut[take], -3))
    # one pass over the view is one pass over the parent's storage
    before = parent.passes
    view @ x
    assert parent.passes == before + 1


def test_subset_of_a_dask_delta_runs_on_the_workers(client):
    delta = planted("gaussian", n=500, d=6, seed=4)
    parent = as_rows(MaxEntProgram(da.from_array(delta, chunks=((120, 80, 300), (6,))), reg=1.0).delta)
    rows = np.r_[5:100, 130:180, 420:500]
    view = subset_rows(parent, rows)
    x = np.arange(6.0)
    assert np.allclose(view @ x, delta[rows] @ x, rtol=1e-13)
    assert np.array_equal(view[np.array([3, 0, 100])], delta[rows][[3, 0, 100]])


@pytest.mark.parametrize("rows, message", [(np.array([3, 1]), "increasing"), (np.array([1, 1]), "increasing"),
                                           (np.array([0, 600]), "outside"), (np.array([], dtype=int), "at least")])
def test_bad_subsets_are_refused(tmp_path, rows, message):
    parent = StreamedRows(_memmap(tmp_path, planted("gaussian", n=600, d=4)), block_rows=97).validate()
    with pytest.raises(DataError, match=message):
        subset_rows(parent, rows)


def test_restrict_of_a_blocked_program_is_a_view(tmp_path):
    delta = planted("gaussian", n=400, d=5)
    program = MarginProgram(_memmap(tmp_path, delta), C=0.5)
    part = program.restrict(np.arange(0, 400, 2))
    assert isinstance(part.delta, SubsetRows)
    in_memory = MarginProgram(delta, C=0.5).restrict(np.arange(0, 400, 2))
    theta = np.linspace(-1, 1, 5)
    assert part.objective(theta) == pytest.approx(in_memory.objective(theta), rel=1e-13)


# -- the loop ---------------------------------------------------------------------------------------

def _same_loop(blocked, memory):
    assert [len(h.failures) for h in blocked.history] == [len(h.failures) for h in memory.history]
    for b, m in zip(blocked.history, memory.history):
        assert b.failures == m.failures and b.changed == m.changed
        assert b.certificate.optimal and m.certificate.optimal
    assert np.array_equal(blocked.tightened, memory.tightened)
    assert blocked.stop_reason == memory.stop_reason
    assert abs(blocked.solution.objective - memory.solution.objective) <= 1e-9 * abs(memory.solution.objective)
    assert np.linalg.norm(blocked.theta - memory.theta) <= 1e-6 * np.linalg.norm(memory.theta)


@pytest.mark.parametrize("folds", [0, 5])
@pytest.mark.parametrize("program", ["mm-qp", "maxent"])
def test_fa_on_blocked_delta_matches_memory(tmp_path, client, program, folds):
    delta = planted("badly-scaled", n=900, d=8, seed=3)
    size = float(np.abs(delta).max())
    settings = FASettings(oof_folds=folds, max_rounds=3, slack_upweight=2.0 if program == "mm-qp" else 1.0)

    def make(d):
        if program == "mm-qp":
            return MarginProgram(d, C=10.0 / size**2)
        return MaxEntProgram(d, reg=1e-2 * size**2)

    memory = run_fa(make(delta), "auto", settings)
    assert len(memory.history) > 1  # the loop has rounds to compare
    # (Dask for two of the four: each pass is a round of tasks, and maxent's folds make many)
    dask = (program, folds) in (("mm-qp", 5), ("maxent", 0))
    for name, blocked_delta in _blocked_kinds(tmp_path, delta, dask):
        blocked = run_fa(make(blocked_delta), "auto", settings)
        assert not isinstance(blocked.solution.program.delta, np.ndarray), name
        _same_loop(blocked, memory)


def test_fa_estimator_on_a_memmap(tmp_path):
    delta = planted("thin-margin", n=600, d=6, seed=5)
    mapped = _memmap(tmp_path, delta, np.float32)
    settings = FASettings(oof_folds=3, max_rounds=2)
    for base in (MaxMarginReward(margin="soft", C=1.0), MaxEntReward(reg=1.0)):
        on_disk = FailureAwareReward(base, settings).fit(mapped)
        in_memory = FailureAwareReward(base, settings).fit(np.array(mapped))
        assert on_disk.certificate_.optimal
        assert [(h["n_failures"], h["changed"]) for h in on_disk.history_] == \
            [(h["n_failures"], h["changed"]) for h in in_memory.history_]
        assert np.allclose(on_disk.theta_, in_memory.theta_, rtol=1e-6, atol=1e-8 * np.abs(in_memory.theta_).max())


def test_posterior_rule_on_a_blocked_delta_is_refused(tmp_path):
    program = MaxEntProgram(_memmap(tmp_path, planted("gaussian", n=300, d=4)), reg=1.0)
    with pytest.raises(DataError, match="posterior"):
        run_fa(program, "auto", FASettings(failure_rule="posterior", oof_folds=3))
