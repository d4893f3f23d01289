"""Every ``fairl`` command fails the same way: an exit status from the documented table and exactly one
line on stderr, ``fairl: error: <message>`` naming the argument, file, line or pair; never a traceback.

Fast: no model loads (embed and detox fail before one would), tiny simulated pairs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fairl_opt import cli
from fairl_opt._io import atomic_savez, atomic_write_text, check_output_dir, check_output_path
from fairl_opt.cli import build_parser, main
from tests.clirun import run
from fairl_opt.data import fitting
from fairl_opt.data.fitting import SOLVE_DEFAULTS
from fairl_opt.detox.prompts import iter_jsonl
from fairl_opt.exceptions import (
    EXIT_CODES,
    ClusterError,
    DataError,
    InfeasibleError,
    NumericalRangeError,
    SolverError,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("errors") / "sim.npz"
    assert main(["simulate", "--n", "20", "--d", "3", "--seed", "0", "--out", str(path)]) == 0
    return path


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"stderr must be exactly one line, got {err!r}"
    assert lines[0].startswith("fairl: error: "), lines[0]
    return lines[0]


def fails(capsys, code, *argv) -> str:
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert out == ""
    return one_line(err)


# -- the exit-code table ---------------------------------------------------------------------------
def test_exit_codes_are_the_documented_ones():
    assert EXIT_CODES == {"ok": 0, "bad input or usage": 2, "infeasible": 3, "could not certify": 4,
                          "cluster": 5, "interrupted": 130}
    for code in ("2 ", "3 ", "4 ", "5 ", "130 "):
        assert code in cli.__doc__ and code in cli.EPILOG


@pytest.mark.parametrize("exc, code, named", [
    (DataError("pair 3: bad"), 2, "pair 3"),
    (InfeasibleError("infeasible: pairs [0, 3] conflict", [0, 3]), 3, "[0, 3]"),
    (SolverError("status 'stalled'; try backend cvxpy"), 4, "stalled"),
    (NumericalRangeError("relative margin 1e-14 below float64 range", relative_margin=1e-14), 4, "1e-14"),
    (PermissionError(13, "Permission denied", "/some/where.npz"), 2, "/some/where.npz: Permission denied"),
    (IsADirectoryError(21, "Is a directory", "/some/dir"), 2, "/some/dir"),
    (UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"), 2, "offset 2"),
    (DataError("two\nlines"), 2, "two lines"),
    (ClusterError("--scheduler tcp://x:1: cannot connect"), 5, "--scheduler tcp://x:1"),
])
def test_main_maps_each_error_to_its_code(monkeypatch, capsys, sim, exc, code, named):
    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_solve", boom)
    assert named in fails(capsys, code, "solve", sim)


def test_keyboard_interrupt_is_130_and_says_caches_are_kept(monkeypatch, capsys, sim):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_solve", interrupted)
    code, out, err = run(capsys, "solve", sim)
    assert code == 130 and out == ""
    assert err == "fairl: interrupted; finished cache chunks are kept, rerun to resume\n"


def test_infeasible_hard_margin_exits_3(tmp_path, capsys):
    rng = np.random.default_rng(5)
    chosen, rejected = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    chosen[3], rejected[3] = rejected[0], chosen[0]  # pair 3 reverses pair 0
    path = tmp_path / "c.npz"
    np.savez(path, chosen=chosen, rejected=rejected)
    assert "infeasible" in fails(capsys, 3, "solve", path, "--margin", "hard")


def test_console_script_errors_have_no_traceback(tmp_path, sim):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cases = [
        (["solve", str(sim), "--method", "mm-qp", "--norm", "linf"], "--norm"),
        (["simulate", "--out", str(tmp_path / "nowhere" / "x.npz")], "nowhere"),
        (["embed", str(tmp_path / "t.txt"), "--out", "x", "--batch-size", "0"], "--batch-size"),
    ]
    for argv, named in cases:
        proc = subprocess.run([sys.executable, "-m", "fairl_opt.cli", *argv], capture_output=True,
                              text=True, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert named in one_line(proc.stderr)


# -- --help ----------------------------------------------------------------------------------------
def _all_parsers():
    import argparse

    stack, seen = [build_parser()], []
    while stack:
        parser = stack.pop()
        seen.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return seen


def test_help_has_no_rest_markup_and_shows_defaults():
    parsers = _all_parsers()
    assert {p.prog for p in parsers} >= {"fairl", "fairl solve", "fairl simulate", "fairl volume",
                                          "fairl certify", "fairl embed", "fairl detox", "fairl detox generate",
                                          "fairl detox run", "fairl demo"}
    for parser in parsers:
        text = parser.format_help()
        for markup in ("``", ":class:", ":func:", ":data:", "default: None"):
            assert markup not in text, (parser.prog, markup)
    top = build_parser().format_help()
    assert "exit status" in top and "130" in top
    solve = next(p for p in parsers if p.prog == "fairl solve").format_help()
    for name, value in SOLVE_DEFAULTS.items():
        assert f"default: {value}" in solve, name
    for name in fitting.FA_OPTIONS:  # generated from FASettings: its defaults, one spelling
        flag = "--" + name.replace("_", "-")
        assert flag in solve, name
    assert "(default: auto)" in solve and "(default: mm-qp)" in solve


def test_backend_choices_are_every_backend(capsys, sim):
    from fairl_opt.solvers import BACKENDS

    assert set(fitting.BACKEND_CHOICES) == {"auto", *BACKENDS}
    solve = next(p for p in _all_parsers() if p.prog == "fairl solve").format_help()
    for name in fitting.BACKEND_CHOICES:
        assert name in solve
    assert "--backend" in fails(capsys, 2, "solve", sim, "--backend", "nope")


# -- output paths: checked before any work, written atomically, reported as written ----------------
def _out_commands(tmp_path, sim, out):
    texts = tmp_path / "texts.txt"
    texts.write_text("a\nb\n", encoding="utf-8")
    return {
        "simulate": ["simulate", "--n", "5", "--d", "2", "--out", out],
        "solve": ["solve", sim, "--out", out],
        "volume": ["volume", sim, "--out", out],
        "certify": ["certify", sim, "--out", out],
        "embed": ["embed", texts, "--out", out, "--model", tmp_path / "no-model"],
        "demo": ["demo", "--n", "10", "--d", "2", "--seeds", "1", "--quiet", "--out", out],
    }


@pytest.mark.parametrize("command", ["simulate", "solve", "volume", "certify", "embed", "demo"])
def test_missing_output_folder_fails_first(tmp_path, capsys, sim, command):
    out = tmp_path / "missing" / "result.json"
    line = fails(capsys, 2, *_out_commands(tmp_path, sim, out)[command])
    assert "--out" in line and str(tmp_path / "missing") in line and "does not exist" in line
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["solve", "demo"])
def test_output_that_is_a_folder_fails_first(tmp_path, capsys, sim, command):
    line = fails(capsys, 2, *_out_commands(tmp_path, sim, tmp_path)[command])
    assert str(tmp_path) in line and "folder" in line


@pytest.mark.skipif(IS_ROOT, reason="root may write to any folder")
def test_unwritable_output_folder_fails_first(tmp_path, capsys, sim):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = fails(capsys, 2, "solve", sim, "--out", locked / "r.json")
        assert str(locked) in line and "not writable" in line
        line = fails(capsys, 2, "detox", "run", "--data", tmp_path, "--out", locked / "report")
        assert str(locked) in line and "not writable" in line
    finally:
        locked.chmod(0o700)


def test_unwritable_output_folder_message(tmp_path, capsys, sim, monkeypatch):
    """The same check as above, runnable as root: os.access says the folder is read-only."""
    import fairl_opt._io as io

    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    line = fails(capsys, 2, "solve", sim, "--out", tmp_path / "r.json")
    assert f"folder {tmp_path} is not writable" in line
    line = fails(capsys, 2, "detox", "generate", "--out", tmp_path / "new" / "data")
    assert f"folder {tmp_path} is not writable" in line


@pytest.mark.parametrize("sub", ["generate", "run"])
def test_detox_output_folder_under_a_file_fails_first(tmp_path, capsys, sub):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = ["detox", sub, "--out", blocker / "data"]
    if sub == "run":
        argv += ["--data", tmp_path / "no-data"]
    line = fails(capsys, 2, *argv)
    assert "--out" in line and str(blocker) in line


def test_cache_dir_under_a_file_fails_first(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    texts = tmp_path / "t.txt"
    texts.write_text("a\n", encoding="utf-8")
    line = fails(capsys, 2, "embed", texts, "--out", tmp_path / "f.npz", "--cache-dir", blocker / "c",
                 "--model", tmp_path / "no-model")
    assert "--cache-dir" in line


def test_simulate_reports_the_file_it_writes(tmp_path, capsys):
    code, out, err = run(capsys, "simulate", "--n", "8", "--d", "2", "--out", tmp_path / "z")
    assert code == 0, err
    reported = json.loads(out)["out"]
    assert reported == str(tmp_path / "z.npz")
    assert os.path.isfile(reported) and not (tmp_path / "z").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.npz"]  # no temporary file left


def test_json_outputs_are_written_whole_and_leave_no_temporary_file(tmp_path, capsys, sim):
    out = tmp_path / "r.json"
    code, stdout, err = run(capsys, "solve", sim, "--margin", "soft", "--out", out)
    assert code == 0 and stdout == "", err
    assert json.loads(out.read_text())["status"] == "optimal"
    code, _, err = run(capsys, "volume", tmp_path / "absent.npz", "--out", out)
    assert code == 2
    assert json.loads(out.read_text())["status"] == "optimal"  # a failed run leaves the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_atomic_writes_keep_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old\n")

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(RuntimeError):
        atomic_savez(target, x=np.zeros(2))
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_savez_writes_exactly_the_given_path(tmp_path):
    target = tmp_path / "features.bin"
    assert atomic_savez(target, x=np.arange(3)) == target
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["features.bin"]


def test_check_output_helpers(tmp_path):
    assert check_output_path(tmp_path / "x", suffix=".npz") == tmp_path / "x.npz"
    assert check_output_path(tmp_path / "x.npz", suffix=".npz") == tmp_path / "x.npz"
    with pytest.raises(DataError, match="--where .*does not exist"):
        check_output_path(tmp_path / "no" / "x.json", what="--where")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"  # mkdir -p works
    (tmp_path / "f").write_text("")
    with pytest.raises(DataError, match="not a folder"):
        check_output_dir(tmp_path / "f")


# -- options that do not apply to the method are refused -----------------------------------------
@pytest.mark.parametrize("method, option, applies", [
    ("mm-qp", ["--norm", "linf"], "--norm applies to mm-lp/fa-mm-lp only"),
    ("fa-mm-qp", ["--norm", "l1"], "--norm applies to mm-lp/fa-mm-lp only"),
    ("maxent", ["--norm", "l1"], "--norm applies to mm-lp/fa-mm-lp only"),
    *[("mm-qp", opt, flag) for opt, flag in [
        (["--max-rounds", "2"], "--max-rounds"), (["--oof-folds", "0"], "--oof-folds"),
        (["--near-tie-quantile", "0.2"], "--near-tie-quantile"), (["--margin-step", "1"], "--margin-step"),
        (["--upweight", "3"], "--upweight"), (["--sharpen", "0.5"], "--sharpen"),
        (["--slack-upweight", "2"], "--slack-upweight"), (["--dual-path"], "--dual-path"),
        (["--near-tie-threshold", "0.1"], "--near-tie-threshold"), (["--backoff", "0.5"], "--backoff"),
        (["--correction-penalty", "2"], "--correction-penalty")]],
    ("fa-maxent", ["--backoff", "0.5"], "--backoff applies to fa-mm-qp/fa-mm-lp only"),
    ("maxent", ["--max-rounds", "1"], "--max-rounds applies to fa-mm-qp/fa-mm-lp/fa-maxent only"),
    ("mm-lp", ["--reg", "2"], "--reg applies to maxent/fa-maxent only"),
    ("fa-mm-qp", ["--reg", "2"], "--reg applies to maxent/fa-maxent only"),
    ("fa-mm-lp", ["--upweight", "3"], "--upweight applies to fa-maxent only"),
    ("fa-mm-qp", ["--sharpen", "0.5"], "--sharpen applies to fa-maxent only"),
    ("maxent", ["--margin", "soft"], "--margin applies to"),
    ("maxent", ["--C", "2"], "--C applies to"),
    ("fa-maxent", ["--margin-step", "1"], "--margin-step applies to fa-mm-qp/fa-mm-lp only"),
    ("fa-maxent", ["--slack-upweight", "2"], "--slack-upweight applies to fa-mm-qp/fa-mm-lp only"),
    ("mm-qp", ["--margin", "hard", "--C", "2"], "--C applies to --margin soft only"),
    ("fa-mm-qp", ["--margin", "hard", "--slack-upweight", "2"], "--slack-upweight applies to --margin soft"),
    ("fa-mm-qp", ["--geometry-samples", "10"], "--geometry-samples applies with --geometry only"),
    ("fa-maxent", ["--geometry"], "--geometry applies to fa-mm-qp/fa-mm-lp only"),
])
def test_inapplicable_option_is_refused(capsys, sim, method, option, applies):
    line = fails(capsys, 2, "solve", sim, "--method", method, *option)
    assert applies in line
    if " applies to --margin" not in applies and "--geometry only" not in applies:
        assert line.endswith(f"only, not --method {method}")


def test_defaults_are_filled_after_the_check():
    parser = build_parser()
    args = parser.parse_args(["solve", "p.npz", "--method", "fa-mm-lp"])
    fitting.check_method_options(args)
    for name, value in SOLVE_DEFAULTS.items():
        assert getattr(args, name) == value, name
    # soft margins by default: typical preference data is not separable (a hard margin exits 3)
    assert SOLVE_DEFAULTS == dict(margin="soft", C=1.0, reg=1.0, norm="l1", geometry_samples=2000)
    args = parser.parse_args(["solve", "p.npz", "--method", "fa-mm-lp", "--C", "3"])
    fitting.check_method_options(args)
    assert (args.margin, args.C) == ("soft", 3.0)
    args = parser.parse_args(["solve", "p.npz", "--method", "fa-mm-lp", "--margin", "hard"])
    fitting.check_method_options(args)
    assert args.margin == "hard"


def test_applicable_options_still_work(capsys, sim):
    code, out, err = run(capsys, "solve", sim, "--method", "mm-lp", "--margin", "soft")
    assert code == 0, err
    default = json.loads(out)
    code, out, err = run(capsys, "solve", sim, "--method", "mm-lp", "--margin", "soft", "--norm", "l1", "--C", "1")
    assert code == 0, err
    assert json.loads(out)["theta"] == default["theta"]  # the filled defaults are today's


@pytest.mark.parametrize("option, named", [
    (["--C", "2"], "--C applies to --margin soft only"),
    (["--near-tie-quantile", "0.2", "--near-tie-threshold", "0.1"], "exclude each other"),
    (["--samples", "100", "--no-volume"], "--samples"),
])
def test_certify_refuses_inapplicable_options(capsys, sim, option, named):
    assert named in fails(capsys, 2, "certify", sim, *option)


# -- values checked at parse time, before any model loads ----------------------------------------
@pytest.mark.parametrize("argv, flag", [
    (["embed", "t.txt", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["embed", "t.txt", "--out", "x", "--batch-size", "-4"], "--batch-size"),
    (["embed", "t.txt", "--out", "x", "--workers", "0"], "--workers"),
    (["embed", "t.txt", "--out", "x", "--max-length", "0"], "--max-length"),
    (["embed", "t.txt", "--out", "x", "--train-rows", "0"], "--train-rows"),
    (["embed", "t.txt", "--out", "x", "--batch-size", "two"], "--batch-size"),
    (["detox", "generate", "--n-prompts", "0"], "--n-prompts"),
    (["detox", "generate", "--K", "0"], "--K"),
    (["detox", "generate", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["detox", "generate", "--splits", "0"], "--splits"),
    (["detox", "generate", "--workers", "0"], "--workers"),
    (["detox", "generate", "--seed", "-1"], "--seed"),
    (["detox", "run", "--workers", "0"], "--workers"),
    (["simulate", "--out", "x", "--n", "0"], "--n"),
    (["simulate", "--out", "x", "--d", "-1"], "--d"),
    (["simulate", "--out", "x", "--seed", "-1"], "--seed"),
    (["solve", "p.npz", "--seed", "-1"], "--seed"),
    (["solve", "p.npz", "--method", "fa-mm-qp", "--max-rounds", "-1"], "--max-rounds"),
    (["solve", "p.npz", "--geometry-samples", "0"], "--geometry-samples"),
    (["volume", "c.npz", "--samples", "0"], "--samples"),
    (["certify", "p.npz", "--samples", "0"], "--samples"),
    (["certify", "p.npz", "--budget", "nan"], "--budget"),
    (["demo", "--seeds", "0"], "--seeds"),
    (["demo", "--n", "0"], "--n"),
])
def test_bad_counts_are_refused_at_parse_time(capsys, argv, flag):
    line = fails(capsys, 2, *argv)
    assert f"argument {flag}" in line


# -- text inputs: UTF-8 and JSON errors name the file and line -----------------------------------
def test_embed_txt_with_invalid_utf8_names_file_line_and_offset(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_bytes(b"fine\nalso fine\nbad \xff here\n")
    line = fails(capsys, 2, "embed", src, "--out", tmp_path / "f.npz", "--model", tmp_path / "no-model")
    assert f"{src}:3:" in line and "UTF-8" in line and "offset 19" in line
    assert not (tmp_path / "f.npz").exists()


def test_embed_jsonl_with_invalid_utf8_names_file_line_and_offset(tmp_path, capsys):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b'{"text": "a"}\n\n{"text": "b\xc3"}\n')
    line = fails(capsys, 2, "embed", src, "--out", tmp_path / "f.npz", "--model", tmp_path / "no-model")
    assert f"{src}:3:" in line and "UTF-8" in line and "offset 26" in line


def test_embed_train_rows_checked_before_the_model_loads(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    line = fails(capsys, 2, "embed", src, "--out", tmp_path / "f.npz", "--train-rows", "3",
                 "--model", tmp_path / "no-model")
    assert "--train-rows" in line and "1..2" in line


def test_embed_input_folder_is_a_data_error(tmp_path, capsys):
    line = fails(capsys, 2, "embed", tmp_path, "--out", tmp_path / "f.npz", "--model", tmp_path / "no-model")
    assert str(tmp_path) in line


def test_iter_jsonl_skips_a_bom_and_reports_offsets(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\n')
    assert [obj["text"] for _, obj in iter_jsonl(path)] == ["a", "b"]
    path.write_bytes(b'{"text": "a"}\n\x80\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: not valid UTF-8 \(byte 0x80 at offset 14"):
        list(iter_jsonl(path))


def test_detox_generate_bad_prompt_file_fails_before_any_model(tmp_path, capsys):
    prompts = tmp_path / "rtp.jsonl"
    prompts.write_bytes(b'{"prompt": {"text": "Hello"}}\n{"prompt": {"text": "caf\xe9"}}\n')
    out = tmp_path / "data"
    line = fails(capsys, 2, "detox", "generate", "--out", out, "--prompts", prompts,
                 "--model", tmp_path / "no-model")
    assert f"{prompts}:2:" in line and "UTF-8" in line
    assert not out.exists()


# -- detox run on a malformed dataset folder ----------------------------------------------------
def _dataset_dir(tmp_path, manifest: bytes | None):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("prompts.jsonl", "completions.jsonl", "arrays.npz"):
        (data / name).write_bytes(b"")
    if manifest is None:
        (data / "manifest.json").mkdir()
    else:
        (data / "manifest.json").write_bytes(manifest)
    return data


@pytest.mark.parametrize("manifest", [b"{not json", b"{}", b'{"files": 3}', b"\xff\xfe", None])
def test_detox_run_malformed_manifest_is_one_line(tmp_path, capsys, manifest):
    data = _dataset_dir(tmp_path, manifest)
    line = fails(capsys, 2, "detox", "run", "--data", data, "--out", tmp_path / "report", "--quiet")
    assert str(data) in line
    assert not (tmp_path / "report").exists()


# -- input types through the CLI -----------------------------------------------------------------
@pytest.mark.parametrize("arrays, named", [
    (dict(chosen=np.eye(3) + 1j, rejected=np.zeros((3, 3))), "chosen"),
    (dict(chosen=np.eye(3), rejected=np.full((3, 3), "0")), "rejected"),
    (dict(chosen=np.eye(3), rejected=np.zeros((3, 3)), prompt_ids=np.array([0, 1, 2**64 - 1], np.uint64)),
     "prompt_ids[2]"),
    (dict(chosen=np.eye(3), rejected=np.zeros((3, 3)), prompt_ids=np.array([0, -1, 2])), "pair 1"),
])
def test_solve_refuses_bad_input_types_naming_file_and_argument(tmp_path, capsys, arrays, named):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    line = fails(capsys, 2, "solve", path, "--margin", "soft")
    assert str(path) in line and named in line


# -- issue 10: extreme but valid numbers from the command line --------------------------------------
@pytest.mark.parametrize("argv, named", [
    (("--method", "fa-maxent", "--sharpen", "1e-300"), "temperature"),
    (("--method", "fa-maxent", "--upweight", "1e300"), "weight"),
    (("--method", "fa-mm-qp", "--margin", "soft", "--margin-step", "1e300"), "margins"),
    (("--method", "mm-qp", "--margin", "soft", "--C", "1e300"), "C"),
    (("--method", "mm-lp", "--margin", "soft", "--C", "1e-300"), None),
    (("--method", "maxent", "--reg", "1e-300"), "reg"),
])
def test_extreme_numbers_certify_or_fail_in_one_line(capsys, sim, argv, named):
    """A certified answer, or exit 2 naming the argument — never a traceback (issue 10 item 3)."""
    code, out, err = run(capsys, "solve", sim, *argv)
    if code == 0:
        assert json.loads(out)["status"] == "optimal"
        return
    assert code == 2, err
    line = one_line(err)
    assert named is None or named in line


@pytest.mark.parametrize("C", ["1e10", "1e100"])
def test_soft_margin_failures_never_say_try_a_soft_margin(capsys, sim, C):
    code, out, err = run(capsys, "solve", sim, "--method", "mm-lp", "--margin", "soft", "--C", C)
    assert "try a soft margin" not in err
    if code != 0:
        one_line(err)
