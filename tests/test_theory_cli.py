"""``fairl certify``: the theory claims (proofs/T2, T3) certified on a user's data.

The parser is built here with :func:`add_certify_parser` on a fresh argparse parser, so these tests do
not depend on how ``fairl_opt/cli.py`` wires the sub-command.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

import numpy as np
import pytest

from fairl_opt.geometry.claims import certify_claims
from fairl_opt.geometry.cli import add_certify_parser, cmd_certify
from fairl_opt.exceptions import DataError
from fairl_opt.pairs import PreferencePairs
from fairl_opt.simulate import simulate


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="fairl")
    add_certify_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def _exact_rows(delta, theta):
    t = [Fraction(float(v)) for v in theta]
    return [sum((Fraction(float(a)) * b for a, b in zip(row, t)), Fraction(0)) for row in delta]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A planted problem with d > n (separable: the hard-margin sets are non-empty)."""
    path = tmp_path_factory.mktemp("certify") / "planted.npz"
    simulate(n_pairs=30, dim=40, seed=0).save(path)
    return path


@pytest.mark.parametrize("method", ["fa-mm-qp", "fa-mm-lp"])
def test_certify_planted_problem_strict_inclusion(planted, method, capsys):
    out = _run(["certify", str(planted), "--method", method, "--samples", "4000"], capsys)
    assert out["strict_inclusion"] is True
    assert out["certified"] == "exact"
    assert out["failed_assumption"] is None
    # the witness is in F_std and outside F_FA, re-checked here in exact arithmetic
    pairs = PreferencePairs.load(planted)
    witness = np.array(out["witness"])
    R = Fraction(out["radius_bound"])
    assert sum(Fraction(float(v)) ** 2 for v in witness) <= R * R
    scores = _exact_rows(pairs.delta, witness)
    assert all(s >= 1 for s in scores)
    j = out["witness_pair"]
    assert j in out["tightened"]
    assert scores[j] < 1 + Fraction(0.5)  # the FA margin of pair j (one step of the default δ = 0.5)
    # d > n with independent rows: every tightening is admissible (T3: t* = ∞)
    assert out["max_tightening"] == "inf"
    volume = out["volume_ratio"]
    assert volume is not None, out["volume_ratio_reason"]
    assert 0.0 <= volume["ci_low"] <= volume["ratio"] <= volume["ci_high"] < 1.0
    assert out["chebyshev_radius"]["fa"] <= out["chebyshev_radius"]["standard"] + 1e-9


def test_certify_reports_no_failure_found(planted, capsys):
    """Strictness fails when the FA loop finds no failure: τ = 0 and no out-of-fold mining on separable data."""
    out = _run(["certify", str(planted), "--near-tie-threshold", "0", "--oof-folds", "0", "--no-volume"], capsys)
    assert out["strict_inclusion"] is False
    assert out["witness"] is None
    assert out["n_tightened"] == 0
    assert "tightened no pair" in out["failed_assumption"] and "no new failures" in out["failed_assumption"]


def test_certify_reports_empty_standard_set(tmp_path, capsys):
    """Non-separable demo-style data under a hard margin: F_std is empty, and the output says so."""
    path = tmp_path / "demo.npz"
    simulate(n_pairs=120, dim=6, seed=1).save(path)
    out = _run(["certify", str(path), "--no-volume"], capsys)
    assert out["strict_inclusion"] is False
    assert out["failed_assumption"].startswith("F_std is empty")


def test_certify_soft_margin_on_demo_data(tmp_path, capsys):
    """--margin soft on non-separable data uses the slack-relaxed margins and runs to a verdict."""
    path = tmp_path / "demo.npz"
    simulate(n_pairs=120, dim=6, seed=1).save(path)
    out = _run(["certify", str(path), "--margin", "soft", "--no-volume"], capsys)
    assert out["margin"] == "soft" and out["standard_slack"]["pairs_with_slack"] > 0
    assert isinstance(out["strict_inclusion"], bool)
    assert out["strict_inclusion"] or out["failed_assumption"]


def test_certify_implied_constraints_are_detected():
    """Strictness fails when every tightened constraint is already implied: pair 2 = pair 0 + pair 1, so
    Δ_2θ ≥ 2 holds on all of F_std and raising m_2 to 2 cuts nothing (exact dual certificate y = (1, 1)).

    The FA loop itself never tightens such a pair on its training fit (the pairs it flags first are the
    active ones, whose constraints do cut — proofs/T2), so the sets are certified directly.
    """
    from fairl_opt.geometry.claims import certify_sets

    delta = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = certify_sets(delta, np.ones(3), np.array([1.0, 1.0, 2.0]), radius_bound=3.0)
    assert out["strict_inclusion"] is False
    assert out["implied_certificate"] == {"exact": True, "pairs_checked": 1}
    assert "implied" in out["failed_assumption"]


def test_certify_writes_out_file(planted, tmp_path):
    parser = argparse.ArgumentParser(prog="fairl")
    add_certify_parser(parser.add_subparsers(dest="command", required=True))
    target = tmp_path / "claims.json"
    args = parser.parse_args(["certify", str(planted), "--no-volume", "--out", str(target)])
    assert cmd_certify(args) == 0
    assert json.loads(target.read_text())["strict_inclusion"] is True


def test_certify_passes_its_fa_settings_unchanged(planted, capsys):
    """The FA options are FASettings' own: --margin-step is the step of the witness pair's FA margin, and
    --max-rounds 0 runs no FA round (so nothing is tightened); certify_claims takes the same object."""
    from fairl_opt.fa import FASettings

    out = _run(["certify", str(planted), "--margin-step", "0.25", "--no-volume"], capsys)
    assert out["strict_inclusion"] is True and out["certified"] == "exact"
    scores = _exact_rows(PreferencePairs.load(planted).delta, np.array(out["witness"]))
    assert 1 <= scores[out["witness_pair"]] < 1 + Fraction(0.25)
    out = _run(["certify", str(planted), "--max-rounds", "0", "--no-volume"], capsys)
    assert out["rounds"] == 0 and out["n_tightened"] == 0 and out["strict_inclusion"] is False
    pairs = PreferencePairs.load(planted)
    direct = certify_claims(pairs, volume=False, settings=FASettings(max_rounds=0))
    assert direct["n_tightened"] == 0
    with pytest.raises(DataError, match="FASettings"):
        certify_claims(pairs, volume=False, settings={"max_rounds": 0})


def test_certify_claims_rejects_bad_options(planted):
    pairs = PreferencePairs.load(planted)
    with pytest.raises(DataError, match="method"):
        certify_claims(pairs, method="fa-maxent")
    with pytest.raises(DataError, match="margin"):
        certify_claims(pairs, margin="medium")
    with pytest.raises(DataError, match="PreferencePairs"):
        certify_claims(np.eye(3))
