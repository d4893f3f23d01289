"""Embedding and sampling on a Dask cluster (issue 14): ``distributed.LocalCluster`` with two
workers of one thread each, a tiny random Llama built offline.

Every result is compared bit for bit with the local-process path of the same chunking; model loads
are counted on the workers (:func:`fairl_opt.cluster.worker_loads`); the driver writes the cache, so
an interrupt on the driver side and a damaged chunk are simulated there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
distributed = pytest.importorskip("distributed")

import fairl_opt.jobs as jobs  # noqa: E402
import fairl_opt.lm as lm  # noqa: E402
from fairl_opt import cluster  # noqa: E402
from fairl_opt.exceptions import ClusterError, DataError  # noqa: E402
from tests.clirun import run  # noqa: E402
from tests.tiny_models import build_llama  # noqa: E402

pytestmark = pytest.mark.llm

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "a", "red", "blue", "big", "small", "ran", "away", "home"]


def texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct texts of 2..9 of the tiny tokenizer's words (distinct lengths: padding matters)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(2, 10)))) + f" w{i % 40}" for i in range(n)]


@pytest.fixture(scope="module")
def dask_client():
    import warnings

    with warnings.catch_warnings():  # its HTTP server moves off a port another cluster holds: harmless
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                         processes=True)
    with local, distributed.Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return str(build_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama"))


def emb_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("emb-*.npy"))


def scheduler_tasks(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def test_cluster_embedding_equals_the_local_path_bit_for_bit(llama, dask_client, tmp_path):
    data = texts(23)
    local = lm.embed_texts(data, model=llama, cache_dir=tmp_path / "local", chunk_size=5, batch_size=3,
                           progress=False)
    spread = lm.embed_texts(data, model=llama, cache_dir=tmp_path / "dask", chunk_size=5, batch_size=3,
                            progress=False, scheduler=dask_client)
    assert spread.dtype == np.float32 and spread.shape == local.shape == (23, 32)
    np.testing.assert_array_equal(spread, local)
    # the same chunk files, byte for byte: same keys, same arrays, same records
    names = [p.name for p in emb_files(tmp_path / "local")]
    assert names == [p.name for p in emb_files(tmp_path / "dask")] and len(names) == 5
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()
    # two local processes: the same again (the one runner's other executor)
    two = lm.embed_texts(data, model=llama, cache_dir=tmp_path / "two", chunk_size=5, batch_size=3,
                         progress=False, workers=2)
    np.testing.assert_array_equal(two, local)


def test_each_worker_loads_the_model_once(tmp_path, dask_client):
    own = build_llama(tmp_path / "own-llama", seed=7)  # a model no other test loads: its own memo key

    def loads():
        per_worker = dask_client.run(cluster.worker_loads)
        return {w: sum(n for key, n in d.items() if str(own) in key) for w, d in per_worker.items()}

    assert set(loads().values()) == {0}
    first = lm.embed_texts(texts(40, seed=1), model=str(own), cache_dir=tmp_path / "a", chunk_size=4,
                           progress=False, scheduler=dask_client)
    second = lm.embed_texts(texts(40, seed=2), model=str(own), cache_dir=tmp_path / "b", chunk_size=4,
                            progress=False, scheduler=dask_client)
    counts = loads()
    assert len(counts) == 2 and sum(counts.values()) >= 1
    assert max(counts.values()) == 1, counts  # 20 chunks over two runs, at most one load per worker
    assert first.shape == second.shape == (40, 32) and not np.array_equal(first, second)


def test_a_model_that_differs_on_a_worker_is_refused(llama):
    spec = lm.resolve_model(llama)
    with pytest.raises(DataError, match="install the same model files on every worker"):
        lm._load_for_chunks(lm._ModelOnWorker(spec, "dir:0000000000000000:None", False))


def test_interrupt_then_resume_with_a_damaged_chunk(llama, dask_client, tmp_path, monkeypatch, capsys):
    data = texts(30, seed=3)
    reference = lm.embed_texts(data, model=llama, cache_dir=tmp_path / "ref", chunk_size=5, progress=False)
    cache = tmp_path / "cache"
    real_save = jobs.save_npy
    saved = []

    def interrupted(path, arr):
        if len(saved) == 2:
            raise KeyboardInterrupt  # Ctrl-C on the driver while chunks are in flight
        saved.append(path)
        real_save(path, arr)

    monkeypatch.setattr(jobs, "save_npy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lm.embed_texts(data, model=llama, cache_dir=cache, chunk_size=5, progress=False, scheduler=dask_client)
    monkeypatch.setattr(jobs, "save_npy", real_save)
    assert sorted(saved) == emb_files(cache) and len(saved) == 2
    deadline = time.monotonic() + 30  # the chunks still queued were cancelled: the scheduler empties
    while scheduler_tasks(dask_client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scheduler_tasks(dask_client) == 0

    damaged, kept = saved
    raw = bytearray(damaged.read_bytes())
    raw[-4:] = b"\x00\x00\xc0\x7f"  # the last float becomes NaN: the sha256 no longer matches
    damaged.write_bytes(bytes(raw))
    kept_stat = kept.stat()
    capsys.readouterr()
    resumed = lm.embed_texts(data, model=llama, cache_dir=cache, chunk_size=5, progress=True,
                             scheduler=dask_client)
    err = capsys.readouterr().err
    np.testing.assert_array_equal(resumed, reference)
    assert f"cache: chunk {damaged} failed verification" in err and "recomputing" in err
    assert "resuming, 5 texts cached" in err  # the intact chunk only
    assert "30/30 texts, 25 computed" in err and "(5 cached)" in err
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (kept_stat.st_ino, kept_stat.st_mtime_ns)
    assert len(emb_files(cache)) == 6


def test_cluster_sampling_equals_the_local_path(llama, dask_client, tmp_path):
    prompts = texts(7, seed=4)
    local = lm.generate_completions(prompts, 2, model=llama, cache_dir=tmp_path / "l", chunk_prompts=3,
                                    seed=5, progress=False)
    spread = lm.generate_completions(prompts, 2, model=llama, cache_dir=tmp_path / "d", chunk_prompts=3,
                                     seed=5, progress=False, scheduler=dask_client.scheduler.address)
    assert spread == local and len(spread) == 7 and all(len(r) == 2 for r in spread)


def test_workers_and_a_scheduler_exclude_each_other(llama, dask_client, tmp_path):
    with pytest.raises(DataError, match="choose one"):
        lm.embed_texts(["a cat"], model=llama, cache_dir=tmp_path, workers=2, scheduler=dask_client)


# -- the command line ------------------------------------------------------------------------------
def test_fairl_embed_with_a_scheduler(llama, dask_client, tmp_path, capsys):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts(300, seed=5)) + "\n", encoding="utf-8")
    address = dask_client.scheduler.address
    code, out, err = run(capsys, "embed", src, "--out", tmp_path / "dask.npz", "--model", llama,
                         "--scheduler", address, "--train-rows", 200)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 300 and summary["run"]["parameters"]["scheduler"] == address
    assert "300/300 texts, 300 computed" in err
    code, _, err = run(capsys, "embed", src, "--out", tmp_path / "local.npz", "--model", llama,
                       "--train-rows", 200, "--quiet")
    assert code == 0, err
    with np.load(tmp_path / "dask.npz") as a, np.load(tmp_path / "local.npz") as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert len(emb_files(tmp_path / "dask.npz.cache")) == 2  # 300 texts in chunks of 256


def test_fairl_pairs_with_a_scheduler(llama, dask_client, tmp_path, capsys):
    rng = np.random.default_rng(6)
    rows = [{"prompt": f"w{p} w{p + 1}", "chosen": " ".join(rng.choice(WORDS, 4)) + f" w{k}",
             "rejected": " ".join(rng.choice(WORDS, 3)) + f" w{10 + p}"} for p in range(8) for k in range(3)]
    src = tmp_path / "prefs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = run(capsys, "pairs", src, "--out", tmp_path / "dask.npz", "--model", llama,
                         "--scheduler", dask_client.scheduler.address, "--quiet")
    assert code == 0, err
    assert json.loads(out)["n_pairs"] == 24
    code, _, err = run(capsys, "pairs", src, "--out", tmp_path / "local.npz", "--model", llama, "--quiet")
    assert code == 0, err
    with np.load(tmp_path / "dask.npz") as a, np.load(tmp_path / "local.npz") as b:
        assert "chosen" in a.files and a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "foo://nowhere"])
def test_a_bad_scheduler_is_exit_5_naming_it(llama, tmp_path, capsys, address):
    import dask

    src = tmp_path / "texts.txt"
    src.write_text("the cat\n", encoding="utf-8")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, out, err = run(capsys, "embed", src, "--out", tmp_path / "f.npz", "--model", llama,
                             "--scheduler", address)
    assert code == 5 and out == ""
    assert err.startswith(f"fairl: error: --scheduler {address}: cannot connect to a Dask scheduler")
    assert err.count("\n") == 1 and not (tmp_path / "f.npz").exists()
    assert not emb_files(tmp_path / "f.npz.cache")


def test_scheduler_with_workers_is_a_usage_error(llama, tmp_path, capsys):
    src = tmp_path / "prefs.jsonl"
    src.write_text(json.dumps({"prompt": "a", "chosen": "the cat", "rejected": "dog"}) + "\n", encoding="utf-8")
    code, _, err = run(capsys, "pairs", src, "--out", tmp_path / "p.npz", "--model", llama,
                       "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "--workers 2 and --scheduler tcp://127.0.0.1:1: choose one" in err


def test_connect_errors_name_the_option(tmp_path):
    with pytest.raises(ClusterError, match="--scheduler: expected a scheduler address"):
        cluster.connect("  ")
    with pytest.raises(ClusterError, match="no such scheduler file"):
        cluster.connect(str(tmp_path / "scheduler.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")
    with pytest.raises(ClusterError, match="not a scheduler file"):
        cluster.connect(str(bad), option="--cluster")


def test_connect_reads_a_scheduler_file(dask_client, tmp_path):
    info = tmp_path / "scheduler.json"
    info.write_text(json.dumps({"address": dask_client.scheduler.address}), encoding="utf-8")
    with cluster.client_for(str(info)) as client:
        assert client.scheduler.address == dask_client.scheduler.address
        assert cluster.worker_threads(client) == 2
    assert client.status == "closed"  # client_for closes the client it opened
    with cluster.client_for(dask_client) as same:
        assert same is dask_client
    assert dask_client.status == "running"  # and leaves a given one open


def test_fairl_score_with_a_scheduler(llama, dask_client, tmp_path, capsys):
    rng = np.random.default_rng(7)
    rows = [{"prompt": f"w{p}", "chosen": " ".join(rng.choice(WORDS, 4)) + " w1",
             "rejected": " ".join(rng.choice(WORDS, 3)) + " w9"} for p in range(30)]
    src = tmp_path / "prefs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert run(capsys, "pairs", src, "--out", tmp_path / "pairs.npz", "--model", llama, "--quiet")[0] == 0
    code, _, err = run(capsys, "fit", tmp_path / "pairs.npz", "--method", "maxent", "--out", tmp_path / "reward")
    assert code == 0, err
    scored = tmp_path / "texts.txt"
    scored.write_text("\n".join(texts(40, seed=8)) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "score", tmp_path / "reward", scored, "--scheduler", dask_client.scheduler.address,
                         "--cache-dir", tmp_path / "dask-cache", "--out", tmp_path / "dask.jsonl", "--quiet")
    assert code == 0, err
    meta = json.loads((tmp_path / "dask.jsonl.meta.json").read_text())
    assert meta["run"]["parameters"]["scheduler"] == dask_client.scheduler.address
    code, out, err = run(capsys, "score", tmp_path / "reward", scored, "--quiet")
    assert code == 0, err
    local = [json.loads(line) for line in out.splitlines()]
    remote = [json.loads(line) for line in (tmp_path / "dask.jsonl").read_text().splitlines()]
    assert len(local) == 40 and [r["text"] for r in remote] == [r["text"] for r in local]
    assert [r["reward"] for r in remote] == [r["reward"] for r in local]  # bit for bit
    assert len({r["reward"] for r in local}) > 1
    code, _, err = run(capsys, "score", tmp_path / "reward", scored, "--scheduler", dask_client.scheduler.address,
                       "--workers", 2)
    assert code == 2 and "--scheduler" in err and "--workers 2" in err


def test_fairl_detox_generate_with_a_scheduler(dask_client, tmp_path, capsys):
    pytest.importorskip("profanity_check")
    from fairl_opt.detox.dataset import sha256_file

    own = build_llama(tmp_path / "own-llama", seed=11)  # its own memo key: the workers' loads of it are countable
    base = ["detox", "generate", "--n-prompts", "6", "--K", "2", "--max-new-tokens", "4", "--splits", "2",
            "--model", own, "--quiet"]
    code, out, err = run(capsys, *base, "--out", tmp_path / "dask", "--scheduler", dask_client.scheduler.address)
    assert code == 0, err
    loads = dask_client.run(cluster.worker_loads)
    assert sum(n for d in loads.values() for key, n in d.items() if str(own) in key) >= 1  # sampled on the workers
    assert json.loads(out)["run"]["parameters"]["scheduler"] == dask_client.scheduler.address
    code, _, err = run(capsys, *base, "--out", tmp_path / "local")
    assert code == 0, err
    for name in ("completions.jsonl", "arrays.npz"):
        assert sha256_file(tmp_path / "dask" / name) == sha256_file(tmp_path / "local" / name), name
    code, _, err = run(capsys, *base, "--out", tmp_path / "both", "--scheduler", dask_client.scheduler.address,
                       "--workers", 2)
    assert code == 2 and "--scheduler" in err
    # a further policy (the same model, 2 samples per prompt) added on the cluster and locally
    add = ["detox", "add-policy", "--name", "again", "--model", own, "--samples", "2", "--quiet"]
    code, out, err = run(capsys, *add, "--data", tmp_path / "dask", "--scheduler", dask_client.scheduler.address)
    assert code == 0, err
    assert json.loads(out)["run"]["parameters"]["scheduler"] == dask_client.scheduler.address
    assert run(capsys, *add, "--data", tmp_path / "local")[0] == 0
    policy = Path("policies") / "again"
    for name in ("completions.jsonl", "arrays.npz"):
        assert sha256_file(tmp_path / "dask" / policy / name) == sha256_file(tmp_path / "local" / policy / name), name
