"""``fairl audit``: placeholder until its module lands (replaced in this issue's work)."""

from __future__ import annotations


def add_audit_parser(sub) -> None:
    from fairl_opt.exceptions import DataError

    def run(args):
        raise DataError("fairl audit is not built yet")

    p = sub.add_parser("audit", help="(being built)")
    p.set_defaults(func=run)
