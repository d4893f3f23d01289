"""``fairl fit`` and ``fairl score``: placeholder until this module lands."""

from __future__ import annotations


def add_fit_parser(sub) -> None:
    pass


def add_score_parser(sub) -> None:
    pass
