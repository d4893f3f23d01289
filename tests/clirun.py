"""Run the ``fairl`` command in-process, as the CLI tests do."""

from __future__ import annotations

from fairl_opt.cli import main


def run(capsys, *argv):
    """main(argv) in-process: (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
