"""Estimators, the demo, and the README's quick-starts as written."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fairl_opt import PreferencePairs
from fairl_opt.demo import METHODS, format_table, run_demo
from fairl_opt.estimators import METHODS as METHODS_REGISTRY
from fairl_opt.estimators import FailureAwareReward, MaxEntReward, MaxMarginReward, make_estimator
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings
from fairl_opt.simulate import simulate
from tests.oracles import logreg_reference, svc_reference

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def problem():
    return simulate(n_pairs=120, dim=6, regime="isotropic", seed=3)


def test_maxmargin_estimator_matches_libsvm(problem):
    model = MaxMarginReward(margin="soft", C=0.5).fit(problem.pairs)
    assert model.certificate_.optimal and not hasattr(model, "history_")
    reference = svc_reference(problem.pairs.delta, 0.5)
    assert np.allclose(model.theta_, reference, atol=1e-4)
    assert model.score(problem.pairs) == pytest.approx(np.mean(problem.pairs.delta @ reference > 0))
    assert np.allclose(model.decision_function(problem.eval_features), problem.eval_features @ model.theta_)


def test_maxent_estimator_matches_logistic_regression(problem):
    model = MaxEntReward(reg=2.0).fit(problem.pairs)
    assert np.allclose(model.theta_, logreg_reference(problem.pairs.delta, 2.0), atol=1e-5)


def test_fa_estimator_state(problem):
    model = FailureAwareReward(MaxMarginReward(margin="soft"), FASettings(oof_folds=3, max_rounds=2)).fit(problem.pairs)
    assert model.history_[0]["round"] == 0 and len(model.history_) >= 2
    assert model.required_margins_.shape == (problem.pairs.n_pairs,)
    assert set(np.flatnonzero(model.required_margins_ != 1.0)) == set(model.tightened_.tolist())
    assert model.weights_ is None
    maxent = FailureAwareReward(MaxEntReward(), FASettings(oof_folds=0, max_rounds=2)).fit(problem.pairs)
    assert maxent.required_margins_ is None and maxent.weights_.max() == 2.0


def test_estimator_errors(problem):
    from sklearn.exceptions import NotFittedError

    for unfitted in (MaxMarginReward(), MaxEntReward(), FailureAwareReward()):
        with pytest.raises(NotFittedError, match="not fitted"):
            unfitted.decision_function(np.ones((2, 6)))
        with pytest.raises(NotFittedError):
            unfitted.score(problem.pairs)
        assert not hasattr(unfitted, "coef_")  # NotFittedError is an AttributeError
    with pytest.raises(DataError, match="margin must be"):
        MaxMarginReward(margin="medium").fit(problem.pairs)
    model = MaxEntReward().fit(problem.pairs)
    with pytest.raises(DataError, match=r"shape \(m, 6\)"):
        model.decision_function(np.ones((2, 5)))
    with pytest.raises(DataError, match="d=5"):
        model.score(np.ones((2, 5)))
    with pytest.raises(DataError, match="method must be"):
        make_estimator("svm")
    with pytest.raises(DataError, match="settings apply to the fa-"):
        make_estimator("mm-qp", settings=FASettings())
    with pytest.raises(DataError, match="estimator must be"):
        FailureAwareReward(FailureAwareReward()).fit(problem.pairs)
    with pytest.raises(DataError, match="settings must be a FASettings"):
        FailureAwareReward(settings={"max_rounds": 1}).fit(problem.pairs)


@pytest.mark.parametrize("X, groups, match", [
    (np.ones((3, 2), dtype=complex), None, "X must hold real numbers"),
    (np.array([["a", "b"]]), None, "X must hold real numbers"),
    ([[1.0, 2.0], [3.0]], None, "X must be real numbers"),  # ragged
    (np.ones(4), None, r"X must be a PreferencePairs or a non-empty 2-D array .* shape \(4,\)"),
    (np.ones((0, 3)), None, "X must be a PreferencePairs or a non-empty 2-D array"),
    (np.array([[1.0, 2.0], [np.nan, 0.0]]), None, "X row 1 has NaN/inf"),
    (np.ones((3, 2)), [0, 1], r"groups must have one prompt id per row of X \(3\)"),
])
def test_bad_input_names_the_argument(X, groups, match):
    for model in (MaxMarginReward(), MaxEntReward(), FailureAwareReward()):
        with pytest.raises(DataError, match=match):
            model.fit(X, groups=groups)


def test_pairs_carry_their_own_groups(problem):
    with pytest.raises(DataError, match="groups: a PreferencePairs X carries its own prompt ids"):
        FailureAwareReward().fit(problem.pairs, groups=problem.pairs.prompt_ids)


def test_array_and_pairs_inputs_fit_the_same_reward(problem):
    """An n × d array of differences is the same data as the pairs (every row chosen ≻ rejected); its
    groups are the FA folds' groups, as the pairs' prompt ids are."""
    pairs, settings = problem.pairs, FASettings(oof_folds=3, max_rounds=2)
    for model in (MaxMarginReward(margin="soft"), MaxEntReward(reg=0.5),
                  FailureAwareReward(MaxMarginReward(margin="soft"), settings)):
        from_pairs = model.fit(pairs).theta_.copy()
        from_array = model.fit(pairs.delta, groups=pairs.prompt_ids).theta_
        assert np.array_equal(from_pairs, from_array)
        assert model.coef_ is model.theta_ and model.n_features_in_ == pairs.dim
        assert model.score(pairs.delta) == model.score(pairs)


def test_fit_rejects_uncertified_answer(problem, monkeypatch):
    from fairl_opt.exceptions import SolverError
    from fairl_opt.solvers import certificate as certificate_module

    original = certificate_module.certify

    def broken(*args, **kwargs):
        return original(*args, **{**kwargs, "gap_tol": -1.0})  # no gap can pass

    monkeypatch.setattr("fairl_opt.solvers.reference.certify", broken)
    with pytest.raises(SolverError, match="MaxMarginReward: .*certificate fails"):
        MaxMarginReward(margin="soft", backend="cvxpy").fit(problem.pairs)


def test_demo_small_run_reports_every_method():
    rows = run_demo(regimes=("isotropic", "detox"), seeds=(0, 1), n_pairs=80, dim=5)
    assert {r.method for r in rows} == set(METHODS)
    assert len(rows) == 2 * 2 * len(METHODS)
    for row in rows:
        assert 0.0 <= row.heldout_pair_accuracy <= 1.0 and 0.0 <= row.starc <= 2.0
        if not METHODS_REGISTRY[row.method].failure_aware:
            assert row.rounds == 0
    table = format_table(rows)
    assert "FA − standard" in table and "fa-maxent" in table


def _readme_block(language):
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_python_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_block("python")[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("optimal")
    assert "cosine to the true reward" in out


def test_readme_grid_search_runs(tmp_path, monkeypatch, capsys):
    """The scikit-learn example, in the quick-start's namespace (it reuses train and test)."""
    monkeypatch.chdir(tmp_path)
    namespace = {}
    quickstart, grid_search = _readme_block("python")[:2]
    exec(compile(quickstart, "README.md", "exec"), namespace)
    capsys.readouterr()
    exec(compile(grid_search, "README.md", "exec"), namespace)
    assert namespace["search"].best_params_["reg"] in (0.1, 1.0, 10.0)
    assert capsys.readouterr().out.startswith("{'reg': ")


def _bash_block(first_command: str) -> list[str]:
    """The commands of the README's bash block that starts with ``first_command``."""
    blocks = [b for b in _readme_block("bash") if b.startswith(first_command)]
    assert len(blocks) == 1, first_command
    return [line for line in blocks[0].splitlines() if line.strip()]


def test_readme_cli_quickstart_runs(tmp_path):
    commands = _bash_block("fairl simulate")
    assert commands and all(c.startswith("fairl ") for c in commands)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "result.json").exists()
    assert PreferencePairs.load(tmp_path / "pairs.npz").n_pairs == 300


@pytest.mark.llm
def test_readme_audit_your_own_model_runs(tmp_path):
    """The four commands of "Audit your own model", as written, on the shipped example with MiniLM."""
    pytest.importorskip("torch")
    commands = _bash_block("fairl pairs examples/data/preferences.jsonl")
    assert [c.split()[1] for c in commands] == ["pairs", "fit", "score", "audit"]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "new_texts.txt").write_text("Happy to help! I hope this helps.\nUgh. Figure it out yourself.\n")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    outputs = []
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    scores = [json.loads(line)["reward"] for line in outputs[2].splitlines()]
    assert len(scores) == 2 and scores[0] > scores[1]
    assert (tmp_path / "audit" / "report.md").is_file() and (tmp_path / "reward" / "reward.json").is_file()
