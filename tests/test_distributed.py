"""Δ as row blocks (issue 14): memory-mapped .npy and row-chunked Dask arrays on a two-worker
LocalCluster give the in-memory answer (1e-10 relative objective) and the same certificate, agree
with the cvxpy reference, and are never loaded whole; ``fairl fit --scheduler`` runs on the cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fairl_opt.exceptions import EXIT_CODES, DataError
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.programs.blocks import RowBlocks, StreamedRows, as_rows, to_blocks
from fairl_opt.solvers import CvxpyBackend, LBFGSSettings, WorkingSetSettings, certify, get_backend
from tests.clirun import run

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

#: Screening and cutting planes even at test sizes (in memory the default solves n ≤ 5000 whole).
SCREENED = WorkingSetSettings(full_set_below=0, batch=200)
REL = 1e-10


@pytest.fixture(scope="module")
def client():
    """A two-worker cluster (processes, one thread each), closed after the module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def planted(kind: str, n: int = 1200, d: int = 10, seed: int = 0) -> np.ndarray:
    """Δ with planted structure: separable by a margin of ~0.2 (``gaussian``), rows scaled by
    10^±4 (``badly-scaled``), pairs repeated within 1e-9 (``near-duplicate``), a margin of 1e-3
    of the row norms (``thin-margin``)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=d)
    theta /= np.linalg.norm(theta)
    x = rng.normal(size=(n, d))
    score = x @ theta
    gap = 1e-3 if kind == "thin-margin" else 0.2
    x += np.outer(np.sign(score) * gap - score * (np.abs(score) < gap), theta)
    x *= np.sign(x @ theta)[:, None]
    if kind == "badly-scaled":
        x *= 10.0 ** rng.uniform(-4, 4, size=(n, 1))
    if kind == "near-duplicate":
        x[n // 2:] = x[: n - n // 2] * (1 + 1e-9 * rng.normal(size=(n - n // 2, 1)))
    # a few pairs against the planted direction: soft margins and MaxEnt have work to do
    flip = rng.choice(n, size=n // 20, replace=False)
    x[flip] *= -1
    return x


def programs(delta):
    """The programs under test on ``delta``: (name, program, backend, settings)."""
    n = delta.shape[0]
    size = float(as_rows(delta).abs_max())
    c = 10.0 / size**2  # a scale-free price of 10 whatever the rows' size
    prices = c * np.random.default_rng(1).uniform(0.2, 5.0, size=n)
    return [
        ("maxent", MaxEntProgram(delta, reg=1e-2 * size**2), "lbfgs", LBFGSSettings(tol=1e-12)),
        ("mm-qp soft", MarginProgram(delta, C=c), "working-set", SCREENED),
        ("mm-qp prices", MarginProgram(delta, C=prices), "working-set", SCREENED),
    ]


def _solve(program, backend, settings):
    return get_backend(backend, program, settings).solve(program)


def _same_certificate(blocked, memory):
    a, b = blocked.certificate, memory.certificate
    assert a.status == b.status == "optimal"
    assert a.backend == b.backend and a.gap_tol == b.gap_tol and a.feas_tol == b.feas_tol
    assert a.row_scale == b.row_scale and a.margin_scale == b.margin_scale
    assert abs(a.primal_objective - b.primal_objective) <= REL * abs(b.primal_objective)
    assert abs(a.dual_objective - b.dual_objective) <= 1e-9 * abs(b.primal_objective)


def _memmap(tmp_path, delta, dtype):
    path = tmp_path / f"delta-{np.dtype(dtype).name}.npy"
    np.save(path, delta.astype(dtype))
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("kind", ["gaussian", "badly-scaled", "near-duplicate", "thin-margin"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_memmap_matches_memory_and_certificate(tmp_path, kind, dtype):
    base = planted(kind)
    mapped = _memmap(tmp_path, base, dtype)
    memory = np.array(mapped)  # the same float32/float64 values, in RAM
    for (name, prog_m, backend, settings), (_, prog_b, _, _) in zip(programs(memory), programs(mapped)):
        assert isinstance(prog_b.delta, StreamedRows), name
        in_memory = _solve(prog_m, backend, settings)
        blocked = _solve(prog_b, backend, settings)
        _same_certificate(blocked, in_memory)
        # the certificate of the blocked program, recomputed on the in-memory one, is the same figures
        again = certify(prog_m, blocked.theta, blocked.duals, backend="check", solver_status="", solve_seconds=0.0,
                        gap_tol=blocked.certificate.gap_tol)
        assert abs(again.primal_objective - blocked.certificate.primal_objective) <= 1e-12 * abs(again.primal_objective)


@pytest.mark.parametrize("kind", ["gaussian", "thin-margin"])
def test_hard_margin_blocked(tmp_path, kind):
    delta = planted(kind)
    delta = delta[(delta @ np.ones(delta.shape[1])) != 0]
    keep = np.ones(delta.shape[0], dtype=bool)
    rng = np.random.default_rng(0)
    theta = np.linalg.lstsq(delta, np.ones(delta.shape[0]), rcond=None)[0]
    keep &= delta @ theta > 0  # a separable subset
    delta = np.ascontiguousarray(delta[keep][rng.permutation(int(keep.sum()))])
    mapped = _memmap(tmp_path, delta, np.float64)
    in_memory = _solve(MarginProgram(delta), "working-set", SCREENED)
    blocked = _solve(MarginProgram(mapped), "working-set", SCREENED)
    _same_certificate(blocked, in_memory)
    assert blocked.certificate.max_violation <= 1e-7


def test_dask_uneven_chunks_match_memory_and_reference(client):
    delta = planted("badly-scaled", n=900, d=8, seed=3)
    chunks = ((100, 350, 17, 433), (8,))
    dask_delta = da.from_array(delta, chunks=chunks)
    for (name, prog_m, backend, settings), (_, prog_d, _, _) in zip(programs(delta), programs(dask_delta)):
        assert prog_d.delta.kind == "dask" and len(prog_d.delta.bounds) == 4, name
        in_memory = _solve(prog_m, backend, settings)
        blocked = _solve(prog_d, backend, settings)
        _same_certificate(blocked, in_memory)
        reference = CvxpyBackend().solve(prog_m)
        # an independent solver: ours is at least as good to 1e-10, and they agree to its accuracy
        assert blocked.objective <= reference.objective * (1 + REL), name
        assert abs(blocked.objective - reference.objective) <= 1e-6 * abs(reference.objective), name


def test_dask_float32_maxent_with_weights(client):
    delta = planted("near-duplicate", n=800, d=8, seed=5).astype(np.float32)
    rng = np.random.default_rng(2)
    w, t = rng.uniform(0.5, 3.0, size=800), rng.uniform(0.5, 2.0, size=800)
    prog_m = MaxEntProgram(delta, reg=0.05, weights=w, temperatures=t)
    prog_d = MaxEntProgram(da.from_array(delta, chunks=(300, 8)), reg=0.05, weights=w, temperatures=t)
    in_memory = _solve(prog_m, "lbfgs", LBFGSSettings())
    blocked = _solve(prog_d, "lbfgs", LBFGSSettings())
    _same_certificate(blocked, in_memory)
    assert np.allclose(blocked.theta, in_memory.theta, rtol=1e-8, atol=1e-12)


def test_blocked_rows_are_never_loaded_silently(tmp_path):
    mapped = _memmap(tmp_path, planted("gaussian", n=300), np.float32)
    program = MaxEntProgram(mapped, reg=1.0)
    rows = program.delta
    assert isinstance(rows, RowBlocks) and rows.passes == 1  # the validation pass, nothing else
    with pytest.raises(DataError, match="never loaded into memory silently"):
        np.asarray(rows)
    with pytest.raises(DataError, match="delta: backend 'cvxpy' needs Δ in memory"):
        CvxpyBackend().solve(program)
    assert np.array_equal(rows[[5, 2, 299]], np.array(mapped)[[5, 2, 299]])


def test_nonfinite_row_is_named_blockwise(tmp_path):
    delta = planted("gaussian", n=500)
    delta[321, 4] = np.nan
    with pytest.raises(DataError, match="pair 321"):
        MarginProgram(_memmap(tmp_path, delta, np.float64))
    with pytest.raises(DataError, match="float32 or float64"):
        to_blocks(_memmap(tmp_path, np.ones((4, 2)), np.int32))


def test_fit_reward_and_cli_on_the_cluster(client, tmp_path, capsys):
    from fairl_opt.data.fitting import fit_reward

    delta = planted("gaussian", n=700, d=6, seed=9).astype(np.float32)
    path = tmp_path / "delta.npy"
    np.save(path, delta)
    local, _ = fit_reward(np.array(delta), "maxent", reg=0.5)
    mapped, model = fit_reward(np.load(path, mmap_mode="r"), "maxent", reg=0.5)
    assert model.solution_.program.delta.kind == "memory-mapped"
    code, out, err = run(capsys, "fit", path, "--method", "maxent", "--reg", "0.5", "--out", tmp_path / "r",
                         "--scheduler", client.scheduler.address)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["status"] == "optimal" and payload["n_train"] == 700 and payload["features"] is None
    from fairl_opt.data.reward import RewardModel

    assert RewardModel.load(tmp_path / "r").training["scheduler"] is True  # solved on the cluster
    for objective in (mapped.certificate["primal_objective"], payload["certificate"]["primal_objective"]):
        assert abs(objective - local.certificate["primal_objective"]) <= REL * local.certificate["primal_objective"]
    code, out, err = run(capsys, "fit", path, "--method", "mm-qp", "--out", tmp_path / "q",
                         "--scheduler", client.scheduler.address)
    assert code == 0 and json.loads(out)["status"] == "optimal", err


def test_cli_bad_scheduler_is_exit_5(tmp_path, capsys):
    import dask

    path = tmp_path / "delta.npy"
    np.save(path, planted("gaussian", n=50, d=3))
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, _, err = run(capsys, "fit", path, "--method", "maxent", "--out", tmp_path / "r",
                           "--scheduler", "tcp://127.0.0.1:9")
    assert code == EXIT_CODES["cluster"] == 5
    assert "--scheduler" in err
    code, _, err = run(capsys, "fit", path, "--method", "mm-lp", "--out", tmp_path / "l")
    assert code == 2 and "delta" in err
