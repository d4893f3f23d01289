"""``fairl volume`` (through its own sub-parser) and the figure script."""

import argparse
import json

import numpy as np
import pytest

from fairl_opt.exceptions import DataError, InfeasibleError
from fairl_opt.geometry import kernels
from fairl_opt.geometry.cli import add_volume_parser, load_constraints


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    kernels.warm_up()


def run_volume(argv, capsys):
    parser = argparse.ArgumentParser(prog="fairl")
    add_volume_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["volume", *argv])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_volume_fraction_json(tmp_path, capsys):
    path = save(tmp_path / "c.npz", A=np.eye(4)[:2], b=np.zeros(2))
    out = run_volume([path, "--samples", "100000", "--seed", "3"], capsys)
    for key in ("fraction", "stderr", "ci_low", "ci_high", "effective_samples"):
        assert key in out
    assert out["method"] == "gaussian" and out["dim"] == 4 and out["rows"] == 2
    assert abs(out["fraction"] - 0.25) <= 4 * out["stderr"]
    again = run_volume([path, "--samples", "100000", "--seed", "3"], capsys)
    assert again["fraction"] == out["fraction"]  # a seed gives the same answer


def test_volume_ratio_json(tmp_path, capsys):
    A = np.eye(3)[:2]
    wide = save(tmp_path / "wide.npz", A=A, b=np.array([0.0, -1.0]))
    narrow = save(tmp_path / "narrow.npz", A=A, b=np.array([0.0, 0.0]))
    out = run_volume([narrow, "--relative-to", wide, "--samples", "4000"], capsys)
    assert "ratio" in out and "fraction" not in out
    assert out["ci_low"] < out["ratio"] < out["ci_high"] <= 1.0
    assert abs(out["ratio"] - 0.5) <= 4 * out["stderr"]  # calibration itself is tested in test_geometry
    assert out["relative_to"] == wide


def test_bad_files_are_one_line_data_errors(tmp_path):
    with pytest.raises(DataError, match="missing array.*b"):
        load_constraints(save(tmp_path / "x.npz", A=np.eye(2)))
    with pytest.raises(DataError, match="no such file"):
        load_constraints(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="pickles"):
        load_constraints(save(tmp_path / "obj.npz", A=np.array([{"a": 1}], dtype=object), b=np.zeros(1)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz"):
        load_constraints(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="rows 0 and 1 of A are identical"):
        load_constraints(save(tmp_path / "dup.npz", A=np.ones((2, 3)), b=np.zeros(2)))


def test_empty_set_is_an_error_not_a_zero(tmp_path, capsys):
    path = save(tmp_path / "empty.npz", A=np.array([[1.0, 0.0], [-1.0, 0.0]]), b=np.array([0.3, 0.3]))
    parser = argparse.ArgumentParser(prog="fairl")
    add_volume_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["volume", path])
    with pytest.raises(InfeasibleError) as info:
        args.func(args)
    assert "\n" not in str(info.value) and "empty" in str(info.value)
    assert capsys.readouterr().out == ""
    # the certificate proves it: bᵀy > ‖Aᵀy‖ (here Aᵀy = 0: rows 0 and 1 are opposite), so no θ of norm
    # below bᵀy/‖Aᵀy‖ > 1 meets the rows
    cert = info.value
    assert sorted(cert.rows) == [0, 1] and cert.bound > cert.reach >= 0 and cert.radius > 1
    # one infeasibility type: `fairl volume` exits 3 on it, as `fairl solve` does on a hard-margin conflict
    from fairl_opt.cli import main

    assert main(["volume", str(path)]) == 3
    assert "empty" in capsys.readouterr().err


def test_figures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from fairl_opt.geometry.figures import draw_2d

    path = draw_2d(tmp_path / "f.png", samples=2000)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_solve_geometry_flag_adds_ratio_radii_and_widths(tmp_path, capsys):
    import json

    from fairl_opt.cli import main

    path = tmp_path / "sep.npz"
    assert main(["simulate", "--n", "15", "--d", "20", "--seed", "0", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["solve", str(path), "--method", "fa-mm-qp", "--oof-folds", "3", "--geometry",
                 "--geometry-samples", "500"]) == 0
    geometry = json.loads(capsys.readouterr().out)["geometry"]
    ratio = geometry["volume_ratio"]
    assert 0.0 < ratio["ci_low"] <= ratio["ratio"] <= ratio["ci_high"] <= 1.0
    # FA set is nested in the standard one: its Chebyshev radius cannot be larger (T5)
    radii = geometry["chebyshev_radius"]
    assert 0.0 < radii["fa"] <= radii["standard"] + 1e-9


def test_solve_geometry_rejects_maxent(tmp_path, capsys):
    from fairl_opt.cli import main

    path = tmp_path / "p.npz"
    main(["simulate", "--n", "30", "--d", "5", "--out", str(path)])
    capsys.readouterr()
    assert main(["solve", str(path), "--method", "fa-maxent", "--oof-folds", "0", "--geometry"]) == 2
    assert "fa-mm" in capsys.readouterr().err
