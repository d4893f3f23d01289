"""``fairl generate``: placeholder until its module lands (replaced in this issue's work)."""

from __future__ import annotations


def add_generate_parser(sub) -> None:
    from fairl_opt.exceptions import DataError

    def run(args):
        raise DataError("fairl generate is not built yet")

    p = sub.add_parser("generate", help="(being built)")
    p.set_defaults(func=run)
