"""Chunk caches that cannot lie: every cached chunk of ``embed_texts`` / ``generate_completions`` is
verified against its checksum record before use; a damaged one is recomputed and named on stderr.

Each test embeds (or samples) once with the tiny random Llama of ``tests/test_lm.py``, damages one
chunk in one way, reruns, and compares with a fresh computation in an empty cache.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import fairl_opt.jobs as jobs  # noqa: E402
import fairl_opt.lm as lm  # noqa: E402
from fairl_opt.exceptions import DataError  # noqa: E402
from fairl_opt.lm import SamplingConfig  # noqa: E402
from fairl_opt.models import resolve_model  # noqa: E402
from tests.test_lm import PROMPTS, TEXTS, _build_llama, _build_bert  # noqa: E402

pytestmark = pytest.mark.llm

CHUNK = 4  # 10 texts -> chunks of 4, 4, 2


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return _build_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def fresh(llama_dir, tmp_path_factory):
    """The embedding of TEXTS computed in an empty cache."""
    return lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=tmp_path_factory.mktemp("fresh"),
                          chunk_size=CHUNK, progress=False)


def _embed(llama_dir, cache, **kw):
    return lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=CHUNK,
                          **{"progress": False, **kw})


def _chunk_of_rows(cache, first_row_values):
    """The cached .npy whose first row equals ``first_row_values`` (i.e. the chunk holding that text)."""
    hits = [p for p in sorted(cache.glob("emb-*.npy")) if np.array_equal(np.load(p)[0], first_row_values)]
    assert len(hits) == 1
    return hits[0]


def _flip_byte(path, offset_from_end=5):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def _write_npy_raw(path, arr):
    """Replace the chunk file only (its record is left as it was), as a stray write would."""
    with open(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def _resign(path, arr):
    """Replace chunk and record consistently (a lie that only the meaning checks can catch)."""
    jobs.save_npy(path, arr)


DAMAGES = {
    "flipped byte": lambda p, a: _flip_byte(p),
    "NaN": lambda p, a: _write_npy_raw(p, np.where(np.arange(a.shape[0])[:, None] == 1, np.nan, a).astype(np.float32)),
    "NaN, re-signed": lambda p, a: _resign(p, np.where(np.arange(a.shape[0])[:, None] == 1, np.nan, a).astype(np.float32)),
    "wrong shape": lambda p, a: _write_npy_raw(p, np.zeros((10, 24), dtype=np.float32)),
    "wrong shape, re-signed": lambda p, a: _resign(p, np.zeros((10, 24), dtype=np.float32)),
    "fewer rows, re-signed": lambda p, a: _resign(p, a[:-1]),
    "wrong width, re-signed": lambda p, a: _resign(p, np.zeros((a.shape[0], 24), dtype=np.float32)),
    "float64, re-signed": lambda p, a: _resign(p, a.astype(np.float64)),
    "truncated": lambda p, a: p.write_bytes(p.read_bytes()[:100]),
    "not an npy": lambda p, a: p.write_bytes(b"garbage"),
    "record deleted": lambda p, a: jobs.record_path(p).unlink(),
    "record damaged": lambda p, a: jobs.record_path(p).write_text('{"format": "fairl chunk v1", "file'),
    "record of another chunk": lambda p, a: jobs.record_path(p).write_text(
        json.dumps({"format": jobs.CHUNK_RECORD, "file": "emb-0000.npy", "sha256": "0" * 64})),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_embedding_chunk_is_recomputed_and_named(llama_dir, fresh, tmp_path, capsys, monkeypatch, damage):
    cache = tmp_path / "cache"
    first = _embed(llama_dir, cache)
    np.testing.assert_array_equal(first, fresh)
    victim = _chunk_of_rows(cache, fresh[CHUNK])  # the chunk of texts 4..7
    DAMAGES[damage](victim, np.load(victim))

    real, calls = lm.mean_pooled, []

    def counting(model, tok, texts, **kw):
        calls.append(list(texts))
        return real(model, tok, texts, **kw)

    monkeypatch.setattr(lm, "mean_pooled", counting)
    capsys.readouterr()
    again = _embed(llama_dir, cache)
    err = capsys.readouterr().err
    np.testing.assert_array_equal(again, fresh)
    assert calls == [TEXTS[CHUNK:2 * CHUNK]]  # only the damaged chunk was recomputed
    lines = [line.removeprefix("fairl: ") for line in err.splitlines() if line.removeprefix("fairl: ").startswith("cache: chunk")]
    assert len(lines) == 1, err
    assert re.fullmatch(rf"cache: chunk {re.escape(str(victim))} failed verification \(.+\); recomputing",
                        lines[0]), lines[0]
    # repaired: a third run computes nothing and says nothing
    calls.clear()
    np.testing.assert_array_equal(_embed(llama_dir, cache), fresh)
    assert calls == [] and "cache:" not in capsys.readouterr().err


def test_reasons_say_what_is_wrong(llama_dir, fresh, tmp_path, capsys):
    cache = tmp_path / "cache"
    _embed(llama_dir, cache)
    a, b, c = (_chunk_of_rows(cache, fresh[i]) for i in (0, CHUNK, 2 * CHUNK))
    _write_npy_raw(a, np.zeros((10, 24), dtype=np.float32))
    _resign(b, np.where(np.arange(4)[:, None] == 2, np.nan, np.load(b)).astype(np.float32))
    _flip_byte(c)
    capsys.readouterr()
    np.testing.assert_array_equal(_embed(llama_dir, cache), fresh)
    err = capsys.readouterr().err
    assert f"chunk {a} failed verification (holds <f4 (10, 24), its record says <f4 (4, 32))" in err
    assert f"chunk {b} failed verification (non-finite values in row 2)" in err
    assert f"chunk {c} failed verification (sha256 of the array bytes does not match its record)" in err


def test_width_check_without_config_uses_the_other_chunks(tmp_path, capsys):
    """A directory without a declared hidden size (as for GGUF): a re-signed chunk of another width is
    caught because it disagrees with the freshly computed chunks."""
    model = _build_llama(tmp_path / "m")
    cache = tmp_path / "cache"
    ref = lm.embed_texts(TEXTS, model=str(model), cache_dir=tmp_path / "ref", chunk_size=CHUNK, progress=False)
    lm.embed_texts(TEXTS[:8], model=str(model), cache_dir=cache, chunk_size=CHUNK, progress=False)
    victim = _chunk_of_rows(cache, ref[0])
    _resign(victim, np.ones((CHUNK, 24), dtype=np.float32))
    import unittest.mock as mock

    with mock.patch.object(lm, "_expected_width", return_value=None):
        capsys.readouterr()
        got = lm.embed_texts(TEXTS, model=str(model), cache_dir=cache, chunk_size=CHUNK, progress=False)
    np.testing.assert_array_equal(got, ref)
    err = capsys.readouterr().err
    assert f"chunk {victim} failed verification (width 24, " in err


def test_resumed_progress_rate_counts_only_new_texts(llama_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    lm.embed_texts(TEXTS[:8], model=str(llama_dir), cache_dir=cache, chunk_size=CHUNK, progress=False)
    capsys.readouterr()
    lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=CHUNK, progress=True)
    err = capsys.readouterr().err
    assert "resuming, 8 texts cached" in err
    last = [line for line in err.splitlines() if line.startswith("embed [tiny-llama]: 10/10")][-1]
    rate = float(re.search(r"2 computed at ([0-9.]+) texts/s \(8 cached\)", last).group(1))
    assert rate > 0
    # all cached: no rate of 0.00 texts/s, it says so
    lm.embed_texts(TEXTS, model=str(llama_dir), cache_dir=cache, chunk_size=CHUNK, progress=True)
    err = capsys.readouterr().err
    assert "0.00 texts/s" not in err and "10/10 texts, all cached" in err


def test_progress_rate_unit():
    """Without a terminal the bar does not draw; the summary counts only what this run computed."""
    import io

    out = io.StringIO()
    bar = jobs.Progress("x", 100, "texts", stream=out, resumed=60)
    assert bar.bar.disable  # stderr is not a terminal under pytest
    assert bar.bar.n == 60  # the cached units are the bar's initial count
    bar.start -= 10.0  # 10 s elapsed
    bar.update(80)
    assert out.getvalue() == ""
    bar.update(80, force=True)
    assert out.getvalue().startswith("x: 80/100 texts, 20 computed at 2.00 texts/s (60 cached), 10.0 s")
    out = io.StringIO()
    jobs.Progress("y", 5, "texts", stream=out, resumed=5).update(5, force=True)
    assert out.getvalue() == "y: 5/5 texts, all cached\n"


def test_chunk_files_and_records(llama_dir, fresh, tmp_path):
    cache = tmp_path / "cache"
    _embed(llama_dir, cache)
    files = sorted(cache.glob("emb-*.npy"))
    assert len(files) == 3 and not list(cache.glob("*.tmp*"))
    for f in files:
        record = json.loads(jobs.record_path(f).read_text())
        arr = np.load(f, allow_pickle=False)
        assert record["format"] == jobs.CHUNK_RECORD and record["file"] == f.name
        assert record["shape"] == list(arr.shape) and record["dtype"] == "<f4"
        import hashlib

        assert record["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()


def test_encoder_width_comes_from_config(tmp_path, capsys):
    bert = _build_bert(tmp_path / "bert")
    cache = tmp_path / "cache"
    spec = resolve_model(str(bert))
    assert lm._expected_width(spec) == 24
    ref = lm.embed_texts(TEXTS[:3], model=str(bert), cache_dir=cache, progress=False)
    (victim,) = cache.glob("emb-*.npy")
    _resign(victim, np.ones((3, 32), dtype=np.float32))  # right rows, wrong width, signed
    capsys.readouterr()
    np.testing.assert_array_equal(lm.embed_texts(TEXTS[:3], model=str(bert), cache_dir=cache, progress=False), ref)
    assert f"chunk {victim} failed verification (shape (3, 32), expected (3, 24))" in capsys.readouterr().err


def test_cache_dir_that_is_a_file(llama_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="file.*not a directory"):
        lm.embed_texts(["a"], model=str(llama_dir), cache_dir=f, progress=False)
    with pytest.raises(DataError, match="chunk_size"):
        lm.embed_texts(["a"], model=str(llama_dir), cache_dir=tmp_path, chunk_size=0, progress=False)


# -- generation chunks -----------------------------------------------------------------------------
CFG = SamplingConfig(max_new_tokens=4)


@pytest.fixture(scope="module")
def fresh_samples(llama_dir, tmp_path_factory):
    return lm.generate_completions(PROMPTS, 2, model=str(llama_dir), cache_dir=tmp_path_factory.mktemp("g"),
                                   seed=3, config=CFG, chunk_prompts=2, progress=False)


def _gen(llama_dir, cache):
    return lm.generate_completions(PROMPTS, 2, model=str(llama_dir), cache_dir=cache, seed=3, config=CFG,
                                   chunk_prompts=2, progress=False)


GEN_DAMAGES = {
    "not JSON": lambda p, rows: p.write_text('[["a", "b"], ["c"'),
    "one sample missing": lambda p, rows: p.write_text(json.dumps([rows[0], rows[1][:1]])),
    "one sample missing, re-signed": lambda p, rows: jobs.save_json(p, [rows[0], rows[1][:1]]),
    "one prompt missing, re-signed": lambda p, rows: jobs.save_json(p, rows[:1]),
    "a number, re-signed": lambda p, rows: jobs.save_json(p, [rows[0], [rows[1][0], 7]]),
    "text changed": lambda p, rows: p.write_text(json.dumps([rows[0], [rows[1][0], rows[1][1] + "x"]])),
    "record deleted": lambda p, rows: jobs.record_path(p).unlink(),
    "not UTF-8": lambda p, rows: p.write_bytes(b'[["\xff"]]'),
}


@pytest.mark.parametrize("damage", list(GEN_DAMAGES))
def test_damaged_generation_chunk_is_recomputed_and_named(llama_dir, fresh_samples, tmp_path, capsys, monkeypatch,
                                                          damage):
    cache = tmp_path / "gen"
    assert _gen(llama_dir, cache) == fresh_samples
    victim = [f for f in sorted(cache.glob("gen-*.json")) if json.loads(f.read_text()) == fresh_samples[2:4]]
    assert len(victim) == 1
    victim = victim[0]
    GEN_DAMAGES[damage](victim, fresh_samples[2:4])

    real, calls = lm.sample_completions, []

    def counting(model, tok, prompts, n_samples, seed, config):
        calls.append(list(prompts))
        return real(model, tok, prompts, n_samples, seed, config)

    monkeypatch.setattr(lm, "sample_completions", counting)
    capsys.readouterr()
    assert _gen(llama_dir, cache) == fresh_samples
    err = capsys.readouterr().err
    assert calls == [PROMPTS[2:4]]
    lines = [line.removeprefix("fairl: ") for line in err.splitlines() if line.removeprefix("fairl: ").startswith("cache: chunk")]
    assert len(lines) == 1 and lines[0].startswith(f"cache: chunk {victim} failed verification (")
    assert lines[0].endswith("); recomputing")
    assert len(list(cache.glob("gen-*.json"))) == 3


def test_generation_reasons(llama_dir, fresh_samples, tmp_path, capsys):
    cache = tmp_path / "gen"
    _gen(llama_dir, cache)
    victim = next(f for f in cache.glob("gen-*.json") if json.loads(f.read_text()) == fresh_samples[2:4])
    jobs.save_json(victim, [fresh_samples[2], fresh_samples[3][:1]])
    capsys.readouterr()
    _gen(llama_dir, cache)
    assert "(prompt 1 has 1 entries, expected 2 sample strings)" in capsys.readouterr().err
    jobs.save_json(victim, fresh_samples[2:3])
    _gen(llama_dir, cache)
    assert "(holds 1 prompts, expected 2 prompts)" in capsys.readouterr().err
