"""fairl_opt._args: the FA options are generated from FASettings and read back into it unchanged."""

import pytest

from fairl_opt._args import ArgumentParser, add_settings_arguments, settings_from_args
from fairl_opt.fa import FASettings


def _parse(argv):
    parser = ArgumentParser(prog="t")
    add_settings_arguments(parser, FASettings)
    return settings_from_args(FASettings, parser.parse_args(argv))


def test_every_setting_has_an_option_and_defaults_are_the_dataclass_defaults():
    assert _parse([]) == FASettings()


def test_options_reach_the_settings_including_a_no_form():
    got = _parse(["--margin-step", "0.7", "--no-curriculum", "--dual-path", "--oof-folds", "0",
                  "--near-tie-threshold", "0.05"])
    assert got == FASettings(margin_step=0.7, curriculum=False, dual_path=True, oof_folds=0,
                             near_tie_threshold=0.05)
    assert _parse(["--curriculum"]).curriculum is True


def test_bad_values_are_refused_at_parse_time_or_by_the_settings(capsys):
    with pytest.raises(SystemExit) as info:
        _parse(["--max-rounds", "-1"])
    assert info.value.code == 2 and "max-rounds" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sharpen"):
        _parse(["--sharpen", "1.5"])


def test_no_flag_counts_as_given_and_is_refused_where_it_does_not_apply(capsys, tmp_path):
    """``--no-curriculum`` reaches FASettings and, with a standard method, is refused by name."""
    import json

    from fairl_opt.cli import main

    main(["simulate", "--n", "60", "--d", "3", "--out", str(tmp_path / "s.npz")])
    capsys.readouterr()
    assert main(["solve", str(tmp_path / "s.npz"), "--method", "fa-mm-qp", "--no-curriculum",
                 "--max-rounds", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["hyper_parameters"]["fa_settings"]["curriculum"] is False
    assert main(["solve", str(tmp_path / "s.npz"), "--method", "mm-qp", "--no-curriculum"]) == 2
    assert "--no-curriculum applies to fa-" in capsys.readouterr().err
