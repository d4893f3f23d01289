"""Datasets that cannot lie: ``DetoxDataset.load`` checks the manifest's form and the data's meaning.

A small synthetic dataset is damaged one way at a time and the manifest's sha256 re-signed, so only
the meaning checks can catch it; each must raise a DataError naming the file and the first bad row.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from fairl_opt.detox.dataset import DetoxDataset, sha256_file, synthetic_dataset
from fairl_opt.exceptions import DataError

N, K, DIM, SPLITS = 30, 3, 5, 2


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine")
    synthetic_dataset(out, n_prompts=N, K=K, dim=DIM, n_splits=SPLITS, seed=4)
    return out


@pytest.fixture
def data(pristine, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def resign(d, name):
    """Rewrite manifest.json's sha256 and size of ``name`` to match the (damaged) file."""
    man = json.loads((d / "manifest.json").read_text())
    man["files"][name] = {"sha256": sha256_file(d / name), "bytes": (d / name).stat().st_size}
    (d / "manifest.json").write_text(json.dumps(man, indent=2))


def edit_jsonl(d, name, edit):
    """Apply ``edit(list of dicts) -> list of dicts or str lines`` to a JSONL file and re-sign it."""
    rows = [json.loads(line) for line in (d / name).read_text().splitlines()]
    rows = edit(rows)
    (d / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    resign(d, name)


def edit_arrays(d, edit):
    with np.load(d / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez_compressed(d / "arrays.npz", **arrays)
    resign(d, "arrays.npz")


def edit_manifest(d, edit):
    man = json.loads((d / "manifest.json").read_text())
    edit(man)
    (d / "manifest.json").write_text(json.dumps(man))


def raises(d, *fragments):
    with pytest.raises(DataError) as info:
        DetoxDataset.load(d)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_pristine_loads(pristine):
    ds = DetoxDataset.load(pristine)
    assert ds.features.shape == (N, K + 1, DIM) and ds.test_masks.shape == (SPLITS, N)
    assert ds.toxic.dtype == bool and ds.aligned_index.dtype == np.int64
    assert all(len(row) == K + 1 and all(isinstance(t, str) for t in row) for row in ds.texts)


# -- completions.jsonl ----------------------------------------------------------------------------
def _set(rows, line, **changes):
    rows[line - 1] = {**rows[line - 1], **changes}
    return rows


@pytest.mark.parametrize("edit, fragments", [
    # the bug: a prompt_id of -1 loaded and overwrote the text of the last prompt
    (lambda rows: _set(rows, 7, prompt_id=-1), [":7: prompt_id -1 out of range 0..29"]),
    (lambda rows: _set(rows, 7, prompt_id=N), [f":7: prompt_id {N} out of range"]),
    (lambda rows: _set(rows, 7, prompt_id="1"), [":7: prompt_id '1' out of range"]),
    (lambda rows: _set(rows, 6, sample=K + 1), [":6: sample 4 of prompt 1 out of range 0..3"]),
    (lambda rows: rows[:9] + rows[10:], ["prompt 2 is incomplete: no sample(s) [1]"]),
    (lambda rows: rows[:-1], [f"prompt {N - 1} is incomplete"]),
    (lambda rows: rows + [rows[4]], [f":{N * (K + 1) + 1}: prompt 1 sample 0 appears twice"]),
    (lambda rows: _set(rows, 1, role="candidate"), [":1: prompt 0 sample 0 has role 'candidate', expected 'base'"]),
    (lambda rows: _set(rows, 2, toxic=not rows[1]["toxic"]), [":2: prompt 0 sample 1 toxic"]),
    (lambda rows: _set(rows, 3, r_star=rows[2]["r_star"] + 0.5), [":3: prompt 0 sample 2 r_star"]),
    (lambda rows: _set(rows, 3, text=None), [":3: text must be a string"]),
    (lambda rows: rows[:4] + ["{oops"] + rows[5:], [":5: not valid JSON"]),
    (lambda rows: rows[:4] + ["[1, 2]"] + rows[5:], [":5: expected an object"]),
    (lambda rows: [{k: v for k, v in r.items() if k != "role"} if i == 3 else r for i, r in enumerate(rows)],
     [":4: expected an object"]),
])
def test_bad_completions_name_file_and_line(data, edit, fragments):
    edit_jsonl(data, "completions.jsonl", edit)
    raises(data, str(data / "completions.jsonl"), *fragments)


# -- prompts.jsonl --------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, fragments", [
    (lambda rows: _set(rows, 4, id=7), [":4: id is 7, expected 3"]),
    (lambda rows: _set(rows, 4, id=-1), [":4: id is -1, expected 3"]),
    (lambda rows: rows[:-1], [f"{N - 1} prompts, manifest.json says n_prompts = {N}"]),
    (lambda rows: rows + [{"id": N, "family": "neutral", "text": "extra"}], [f":{N + 1}: more than n_prompts"]),
    (lambda rows: _set(rows, 2, family="other"), ["family counts"]),
    (lambda rows: _set(rows, 2, text=3), [":2: text and family must be strings"]),
])
def test_bad_prompts_name_file_and_line(data, edit, fragments):
    edit_jsonl(data, "prompts.jsonl", edit)
    raises(data, str(data / "prompts.jsonl"), *fragments)


# -- arrays.npz -----------------------------------------------------------------------------------
def _nan_at(arrays, key, index):
    a = arrays[key].astype(np.float64)
    a[index] = np.nan
    arrays[key] = a


@pytest.mark.parametrize("edit, fragments", [
    (lambda a: a.update(features=a["features"][:-1]), [f"features has shape ({N - 1}, {K + 1}, {DIM})"]),
    (lambda a: a.update(features=a["features"][:, :, :-1]), ["features has shape", f"({N}, {K + 1}, {DIM})"]),
    (lambda a: _nan_at(a, "features", (11, 2, 0)), ["features of prompt 11 is not finite"]),
    (lambda a: a.update(features=np.where(np.arange(N)[:, None, None] == 4, np.inf, a["features"])),
     ["features of prompt 4 is not finite"]),
    (lambda a: a.update(r_star=a["r_star"][:, :-1]), ["r_star has shape"]),
    (lambda a: _nan_at(a, "r_star", (8, 0)), ["r_star of prompt 8 is not finite"]),
    (lambda a: a.update(toxic=a["toxic"][:-2]), ["toxic has shape"]),
    (lambda a: a.update(toxic=a["toxic"].astype(np.int8)), ["toxic has dtype int8, expected bool"]),
    (lambda a: a["toxic"].__setitem__((9, 1), not a["toxic"][9, 1]), ["toxic of prompt 9 disagrees"]),
    (lambda a: a["r_star"].__setitem__((13, 1), a["r_star"][13, 1] + 1), ["r_star of prompt 13 is not logit"]),
    (lambda a: a["p_offensive"].__setitem__((6, 0), 1.5), ["p_offensive of prompt 6 lies outside [0, 1]"]),
    (lambda a: a["aligned_index"].__setitem__(5, 0), ["aligned_index of prompt 5 is 0, must lie in 1..K = 1..3"]),
    (lambda a: a["aligned_index"].__setitem__(5, K + 1), ["aligned_index of prompt 5 is 4"]),
    (lambda a: a.update(aligned_index=a["aligned_index"].astype(float)), ["aligned_index has dtype float64"]),
    (lambda a: a.update(test_masks=a["test_masks"][:, :-1]), [f"test_masks has shape ({SPLITS}, {N - 1})",
                                                              f"expected ({SPLITS}, {N})"]),
    (lambda a: a.update(test_masks=a["test_masks"][:1]), [f"test_masks has shape (1, {N})"]),
    (lambda a: a.update(test_masks=a["test_masks"].astype(np.int64)), ["test_masks has dtype int64, expected bool"]),
    (lambda a: a["test_masks"].__setitem__(1, True), [f"test_masks split 1 has {N} test prompts of {N}"]),
    (lambda a: a.pop("p_offensive"), ["no array p_offensive"]),
    (lambda a: a.update(extra=np.zeros(3)), ["unknown array(s) extra"]),
])
def test_bad_arrays_name_file_and_row(data, edit, fragments):
    edit_arrays(data, edit)
    raises(data, str(data / "arrays.npz"), *fragments)


def test_arrays_not_an_npz(data):
    (data / "arrays.npz").write_bytes(b"not a zip")
    resign(data, "arrays.npz")
    raises(data, str(data / "arrays.npz"), "not a readable .npz")


def test_meaning_checks_run_without_verify(data):
    edit_jsonl(data, "completions.jsonl", lambda rows: _set(rows, 7, prompt_id=-1))
    with pytest.raises(DataError, match=re.escape(f"{data / 'completions.jsonl'}:7: prompt_id -1")):
        DetoxDataset.load(data, verify=False)


# -- manifest.json --------------------------------------------------------------------------------
@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON (line 1, column 2"),
    ("", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object, got list"),
    ("{}", "missing key(s) 'dataset'"),
])
def test_malformed_manifest_is_a_data_error(data, text, fragment):
    (data / "manifest.json").write_text(text)
    raises(data, str(data / "manifest.json"), fragment)


def test_manifest_not_utf8(data):
    (data / "manifest.json").write_bytes(b"\xff\xfe{}")
    raises(data, str(data / "manifest.json"), "not valid UTF-8")


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.pop("files"), "missing key(s) 'files'"),
    (lambda m: m.pop("K"), "missing key(s) 'K'"),
    (lambda m: m.update(surprise=1), "unknown key(s) 'surprise'"),
    (lambda m: m.update(files=3), "files must map each data file to its sha256, got int"),
    (lambda m: m["files"].pop("arrays.npz"), "files lists no arrays.npz"),
    (lambda m: m["files"].update({"extra.bin": {"sha256": "0" * 64, "bytes": 1}}), "lists unknown file(s) extra.bin"),
    (lambda m: m["files"].update({"prompts.jsonl": "abc"}), "files['prompts.jsonl'] must be"),
    (lambda m: m["files"]["prompts.jsonl"].update(sha256="xyz"), "files['prompts.jsonl'] must be"),
    (lambda m: m["files"]["prompts.jsonl"].pop("bytes"), "files['prompts.jsonl'] must be"),
    (lambda m: m.update(n_prompts="30"), "n_prompts must be an integer >= 2, got '30'"),
    (lambda m: m.update(K=0), "K must be an integer >= 1, got 0"),
    (lambda m: m.update(n_splits=True), "n_splits must be an integer >= 1, got True"),
    (lambda m: m.update(beta=-1), "beta must be a number > 0"),
    (lambda m: m.update(feature_model=[]), "feature_model must be an object"),
])
def test_manifest_form(data, edit, fragment):
    edit_manifest(data, edit)
    raises(data, str(data / "manifest.json"), fragment)


def test_manifest_sizes_must_agree_with_the_arrays(data):
    edit_manifest(data, lambda m: m.update(n_prompts=N + 1))
    raises(data, str(data / "arrays.npz"), f"features has shape ({N}, {K + 1}, {DIM}), expected ({N + 1}, ")
    edit_manifest(data, lambda m: m.update(n_prompts=N, K=K - 1))
    raises(data, "features has shape")
    edit_manifest(data, lambda m: (m.update(K=K), m["feature_model"].update(dim=DIM + 1)))
    raises(data, f"expected ({N}, {K + 1}, {DIM + 1})")


def test_manifest_is_a_folder(data):
    (data / "manifest.json").unlink()
    (data / "manifest.json").mkdir()
    raises(data, str(data / "manifest.json"), "not a file")


def test_size_mismatch_is_reported_as_altered(data):
    edit_manifest(data, lambda m: m["files"]["prompts.jsonl"].update(bytes=1))
    raises(data, str(data / "prompts.jsonl"), "does not match the sha256 in manifest.json")
