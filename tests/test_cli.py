"""The ``fairl`` command contract: simulate, solve (JSON + certificate), one-line errors, demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fairl_opt.cli import main
from fairl_opt.estimators import METHODS
from tests.clirun import run

N, D = 60, 5
FA_FAST = ["--max-rounds", "2", "--oof-folds", "3"]


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "sim.npz"
    assert main(["simulate", "--n", str(N), "--d", str(D), "--seed", "1", "--out", str(path)]) == 0
    return path


def run_cli(capsys, *argv):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def solve_json(capsys, *argv):
    code, out, err = run_cli(capsys, "solve", *argv)
    assert code == 0, err
    return json.loads(out)


def one_line_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr must be exactly one line, got {err!r}"
    assert lines[0].startswith("fairl: error: ")
    return lines[0]


# -- simulate ------------------------------------------------------------------------------------
def test_simulate_writes_loadable_file_and_is_reproducible(tmp_path, capsys):
    paths = [tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"]
    for path, seed in zip(paths, (1, 1, 2)):
        code, out, _ = run_cli(capsys, "simulate", "--n", N, "--d", D, "--seed", seed, "--out", path)
        assert code == 0
        summary = json.loads(out)
        assert summary["n_pairs"] == N and summary["dim"] == D
        assert sum(summary["kinds"].values()) == N
    with np.load(paths[0], allow_pickle=False) as a, np.load(paths[1], allow_pickle=False) as b:
        assert {"chosen", "rejected"} <= set(a.files)
        assert a["chosen"].shape == (N, D)
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with np.load(paths[0]) as a, np.load(paths[2]) as c:
        assert not np.array_equal(a["chosen"], c["chosen"])  # the seed matters

    from fairl_opt.pairs import PreferencePairs

    assert PreferencePairs.load(paths[0]).n_pairs == N


# -- solve: every method -------------------------------------------------------------------------
def check_certificate(result):
    assert result["status"] == "optimal"
    cert = result["certificate"]
    for key in ("primal_objective", "dual_objective", "gap", "max_violation"):
        assert isinstance(cert[key], float), key
    scale = 1.0 + abs(cert["primal_objective"])
    assert cert["gap"] >= -1e-9 * scale
    assert cert["gap"] <= 1e-6 * scale
    assert abs(cert["primal_objective"] - cert["dual_objective"]) <= 1e-6 * scale
    assert 0.0 <= cert["max_violation"] <= 1e-6
    assert result["solve_seconds"] > 0


@pytest.mark.parametrize("method", list(METHODS))
def test_solve_every_method(sim_file, capsys, method):
    extra = FA_FAST if method.startswith("fa-") else []
    if "mm" in method:  # --margin applies to margin methods only
        extra = [*extra, "--margin", "soft"]
    result = solve_json(capsys, sim_file, "--method", method, *extra)
    assert result["method"] == method
    assert result["n_pairs"] == N and result["dim"] == D
    theta = np.asarray(result["theta"], dtype=float)
    assert theta.shape == (D,) and np.isfinite(theta).all() and np.linalg.norm(theta) > 0
    check_certificate(result)
    assert 0.5 < result["train_pair_accuracy"] <= 1.0  # planted reward: better than chance
    if not method.startswith("fa-"):
        assert "rounds" not in result
        return
    rounds = result["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(rounds)))
    assert 1 <= len(rounds) <= 3  # round 0 + at most --max-rounds 2
    for r in rounds:
        assert isinstance(r["n_failures"], int) and r["n_failures"] >= 0
        assert isinstance(r["objective"], float)
    tightened = result["tightened"]
    assert all(isinstance(i, int) and 0 <= i < N for i in tightened)
    assert len(set(tightened)) == len(tightened)
    if method.startswith("fa-mm"):
        margins = np.asarray(result["required_margin"])
        assert margins.shape == (N,)
        assert (margins >= 1.0 - 1e-12).all()
        assert set(np.flatnonzero(margins > 1.0).tolist()) == set(tightened)
        assert "weights" not in result
    else:
        weights = np.asarray(result["weights"])
        assert weights.shape == (N,) and len(result["temperatures"]) == N
        assert set(np.flatnonzero(weights != 1.0).tolist()) == set(tightened)
        assert "required_margin" not in result


def test_fa_changes_something_on_simulated_data(sim_file, capsys):
    result = solve_json(capsys, sim_file, "--method", "fa-mm-qp", "--margin", "soft", *FA_FAST)
    assert result["rounds"][0]["n_failures"] > 0
    assert len(result["tightened"]) > 0
    # Tightening margins can only raise the soft-margin optimum.
    objectives = [r["objective"] for r in result["rounds"]]
    assert all(b >= a - 1e-7 * (1 + abs(a)) for a, b in zip(objectives, objectives[1:]))


@pytest.mark.parametrize("method", ["mm-qp", "fa-mm-lp"])
def test_solve_out_writes_same_json(sim_file, tmp_path, capsys, method):
    extra = FA_FAST if method.startswith("fa-") else []
    args = [sim_file, "--method", method, "--margin", "soft", *extra]
    on_stdout = solve_json(capsys, *args)
    out_file = tmp_path / "result.json"
    code, out, err = run_cli(capsys, "solve", *args, "--out", out_file)
    assert code == 0, err
    assert out == ""
    in_file = json.loads(out_file.read_text())
    assert in_file.pop("solve_seconds") > 0
    on_stdout.pop("solve_seconds")
    assert in_file == on_stdout


def test_mm_lp_stdout_is_pure_json(sim_file, capfd):
    # capfd captures file descriptor 1: a banner printed by HiGHS's C++ code would land here too.
    assert main(["solve", str(sim_file), "--method", "mm-lp", "--margin", "soft"]) == 0
    out, err = capfd.readouterr()
    result = json.loads(out)
    assert result["method"] == "mm-lp"
    assert "HiGHS" not in out and "Running" not in out


def test_mm_lp_linf_norm(sim_file, capsys):
    l1 = solve_json(capsys, sim_file, "--method", "mm-lp", "--margin", "soft")
    linf = solve_json(capsys, sim_file, "--method", "mm-lp", "--margin", "soft", "--norm", "linf")
    check_certificate(linf)
    assert not np.allclose(l1["theta"], linf["theta"])


def test_hard_margin_on_separable_data(tmp_path, capsys):
    rng = np.random.default_rng(3)
    theta_true = np.array([1.0, -2.0, 0.5])
    a, b = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    better = (a - b) @ theta_true > 0
    chosen = np.where(better[:, None], a, b)
    rejected = np.where(better[:, None], b, a)
    path = tmp_path / "sep.npz"
    np.savez(path, chosen=chosen, rejected=rejected)
    for method in ("mm-qp", "mm-lp"):
        result = solve_json(capsys, path, "--method", method, "--margin", "hard")
        check_certificate(result)
        theta = np.asarray(result["theta"])
        assert ((chosen - rejected) @ theta >= 1 - 1e-6).all()  # every hard margin holds
        assert result["train_pair_accuracy"] == 1.0


def test_mm_qp_soft_matches_sklearn_linear_svc(sim_file, capsys):
    svm = pytest.importorskip("sklearn.svm")
    C = 0.5
    result = solve_json(capsys, sim_file, "--method", "mm-qp", "--margin", "soft", "--C", C)
    from fairl_opt.pairs import PreferencePairs

    delta = PreferencePairs.load(sim_file).delta
    # fairl: min ½‖θ‖² + C Σ_i max(0, 1 − Δ_i θ). sklearn's LinearSVC needs two classes, so feed it
    # the symmetrised data X = [Δ; −Δ], y = [1; −1]: each pair then contributes its hinge term twice,
    # C' Σ_{2n} hinge = 2C' Σ_n hinge, so C' = C/2 gives the same program (and the same θ).
    X = np.vstack([delta, -delta])
    y = np.concatenate([np.ones(len(delta)), -np.ones(len(delta))])
    ref = svm.LinearSVC(loss="hinge", fit_intercept=False, C=C / 2, tol=1e-10, max_iter=10**6).fit(X, y)
    theta_ref = ref.coef_.ravel()
    theta = np.asarray(result["theta"])
    assert np.linalg.norm(theta - theta_ref) <= 1e-3 * np.linalg.norm(theta_ref)
    # A wrong C (not halved) gives a visibly different θ: the comparison can fail.
    wrong = svm.LinearSVC(loss="hinge", fit_intercept=False, C=C, tol=1e-10, max_iter=10**6).fit(X, y)
    assert np.linalg.norm(theta - wrong.coef_.ravel()) > 1e-2 * np.linalg.norm(theta_ref)


# -- bad input: non-zero exit, one line on stderr naming the problem -----------------------------
def test_nan_names_pair_17(tmp_path, capsys):
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    chosen[17, 2] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, chosen=chosen, rejected=rejected)
    code, out, err = run_cli(capsys, "solve", path)
    assert code == 2
    assert out == ""
    line = one_line_error(err)
    assert "pair 17" in line and "nan" in line.lower()


def test_missing_file(tmp_path, capsys):
    code, out, err = run_cli(capsys, "solve", tmp_path / "nope.npz")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "nope.npz" in line and "no such file" in line


def test_not_an_npz(tmp_path, capsys):
    path = tmp_path / "text.npz"
    path.write_text("chosen,rejected\n1,2\n")
    code, _, err = run_cli(capsys, "solve", path)
    assert code == 2
    assert "not a .npz file" in one_line_error(err)


def test_pair_count_mismatch(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "mismatch.npz"
    np.savez(path, chosen=rng.normal(size=(30, 4)), rejected=rng.normal(size=(29, 4)))
    code, _, err = run_cli(capsys, "solve", path)
    assert code == 2
    line = one_line_error(err)
    assert "30" in line and "29" in line


def test_duplicate_pairs_need_flag(tmp_path, capsys):
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    chosen[7], rejected[7] = chosen[2], rejected[2]
    path = tmp_path / "dup.npz"
    np.savez(path, chosen=chosen, rejected=rejected)
    code, _, err = run_cli(capsys, "solve", path, "--margin", "soft")
    assert code == 2
    line = one_line_error(err)
    assert "pair 7" in line and "pair 2" in line
    assert solve_json(capsys, path, "--margin", "soft", "--allow-duplicates")["status"] == "optimal"


@pytest.fixture
def contradictory_file(tmp_path):
    """Pair 3 is pair 0 reversed: no θ has Δ_0 θ ≥ 1 and −Δ_0 θ ≥ 1."""
    rng = np.random.default_rng(5)
    chosen, rejected = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    chosen[3], rejected[3] = rejected[0], chosen[0]
    path = tmp_path / "contradiction.npz"
    np.savez(path, chosen=chosen, rejected=rejected)
    return path


@pytest.mark.parametrize("method", ["mm-qp", "mm-lp"])
def test_hard_margin_infeasible_names_conflicting_pairs(contradictory_file, capsys, method):
    code, out, err = run_cli(capsys, "solve", contradictory_file, "--method", method, "--margin", "hard")
    assert code != 0
    assert out == ""
    line = one_line_error(err)
    assert "infeasible" in line
    named = {int(tok) for tok in line.replace(",", " ").split() if tok.isdigit()}
    assert named & {0, 3}


def test_soft_margin_accepts_contradiction(contradictory_file, capsys):
    result = solve_json(capsys, contradictory_file, "--margin", "soft")
    check_certificate(result)
    assert result["train_pair_accuracy"] <= 7 / 8  # pair 0 or pair 3 must be misranked


def test_bad_method_is_an_argparse_error(sim_file, capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve", str(sim_file), "--method", "svm"])
    assert info.value.code != 0
    _, err = capsys.readouterr()
    assert "invalid choice" in err and "svm" in err


def test_failure_rule_option(sim_file, tmp_path, capsys):
    """--failure-rule is FASettings.failure_rule: a choice in solve and fit, shown in --help, recorded
    in the JSON and reward.json; a bad value is exit 2 naming the option."""
    result = solve_json(capsys, sim_file, "--method", "fa-maxent", "--failure-rule", "band", *FA_FAST)
    assert result["hyper_parameters"]["fa_settings"]["failure_rule"] == "band"
    assert all(r["n_kept"] <= r["n_failures"] for r in result["rounds"])
    for command in ("solve", "fit"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--failure-rule {all,band,posterior,agree}" in capsys.readouterr().out, command
    for argv, message in ((["--failure-rule", "oracle"], "--failure-rule"),
                          (["--failure-rule", "agree", "--oof-folds", "0"], "failure_rule='agree'")):
        code, out, err = run(capsys, "solve", sim_file, "--method", "fa-maxent", *argv)
        assert code == 2 and out == "" and message in one_line_error(err), err
    code, _, err = run_cli(capsys, "solve", sim_file, "--method", "maxent", "--failure-rule", "band")
    assert code == 2 and "--failure-rule applies to fa-" in one_line_error(err)
    code, _, err = run_cli(capsys, "fit", sim_file, "--method", "fa-mm-qp", "--failure-rule", "agree",
                           *FA_FAST, "--out", tmp_path / "r")
    assert code == 0, err
    saved = json.loads((tmp_path / "r" / "reward.json").read_text(encoding="utf-8"))
    assert saved["hyper_parameters"]["fa_settings"]["failure_rule"] == "agree"


@pytest.mark.parametrize("reg", ["0", "-1"])
def test_maxent_needs_positive_reg(sim_file, capsys, reg):
    code, out, err = run_cli(capsys, "solve", sim_file, "--method", "maxent", "--reg", reg)
    assert code != 0 and out == ""
    assert "reg" in one_line_error(err)


# -- demo ----------------------------------------------------------------------------------------
def test_demo_table(capsys):
    from fairl_opt.demo import METHODS

    code, out, err = run_cli(capsys, "demo", "--n", 80, "--d", 5, "--seeds", 2, "--quiet")
    assert code == 0
    for method in METHODS:
        assert any(line.split()[1:2] == [method] for line in out.splitlines() if line.split()), method
    assert "FA − standard" in out
    assert "24 fits" in out  # 2 regimes × 6 methods × 2 seeds
    assert err == ""  # --quiet: no progress lines


# -- the real console script ---------------------------------------------------------------------
def fairl_command() -> list[str]:
    exe = Path(sys.executable).with_name("fairl")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("fairl")
    return [found] if found else [sys.executable, "-m", "fairl_opt.cli"]


def test_console_script_end_to_end(tmp_path):
    cmd = fairl_command()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    path = tmp_path / "sim.npz"
    sim = subprocess.run(
        [*cmd, "simulate", "--n", "30", "--d", "4", "--seed", "2", "--out", str(path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    assert path.exists()
    solved = subprocess.run(
        [*cmd, "solve", str(path), "--method", "mm-lp", "--margin", "soft"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert solved.returncode == 0, solved.stderr
    result = json.loads(solved.stdout)  # the whole stdout is JSON: no solver banner
    assert result["status"] == "optimal" and len(result["theta"]) == 4
    missing = subprocess.run(
        [*cmd, "solve", str(tmp_path / "missing.npz")], capture_output=True, text=True, env=env, timeout=120
    )
    assert missing.returncode != 0
    assert missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1 and "missing.npz" in missing.stderr
