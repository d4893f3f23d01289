"""argparse pieces shared by every ``fairl`` sub-command: value types checked at parse time, a help
formatter that shows defaults, one-line usage errors, and options refused where they do not apply."""

from __future__ import annotations

import argparse
import math
import sys

from fairl_opt.exceptions import DataError


def _int(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, round counts, ``0 = off`` options)."""
    return _int(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions and epilogs as written; ``(default: …)`` after each option that has a real default
    (not for flags, nor for options whose default is ``None``: those say it in their help)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, ``fairl: error: …``, exit status 2 (the
    same shape as every other ``fairl`` failure), and whose sub-parsers use :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"fairl: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


class _NegatableFlag(argparse.BooleanOptionalAction):
    """``--flag``/``--no-flag`` that remembers it was passed, so that :func:`given` can tell an
    explicit ``--no-flag`` (False) from a flag left alone."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        setattr(namespace, "_passed_flags", getattr(namespace, "_passed_flags", frozenset()) | {self.dest})


def given(args, dest: str) -> bool:
    """Whether the option behind ``dest`` was passed (its argparse default is ``None``, or ``False``
    for a flag; an explicit ``--no-…`` counts as passed)."""
    value = getattr(args, dest, None)
    if value is False:
        return dest in getattr(args, "_passed_flags", ())
    return value is not None


def fill_defaults(args, defaults: dict) -> None:
    """Set each option in ``defaults`` that was not passed to its documented default."""
    for dest, value in defaults.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)


def refuse_inapplicable(args, applies: dict, choice: str, choice_flag: str = "--method") -> None:
    """DataError for the first option passed that does not apply to ``choice``.

    ``applies`` maps an argparse ``dest`` to the choices it applies to; the message reads
    ``--norm applies to mm-lp/fa-mm-lp only, not --method mm-qp``.
    """
    for dest, choices in applies.items():
        if given(args, dest) and choice not in choices:
            flag = ("--no-" if getattr(args, dest) is False else "--") + dest.replace("_", "-")
            raise DataError(f"{flag} applies to {'/'.join(choices)} only, not {choice_flag} {choice}")


def _number(kind):
    """argparse type for a settings field annotated ``int``/``float`` (optionally ``| None``)."""
    if kind == "int":
        return nonnegative_int

    def real(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        return value

    return real


def add_settings_arguments(parser, cls, names=None, applies_text=None) -> None:
    """One ``--option`` per field of the settings dataclass ``cls`` (all fields, or ``names``).

    Each field's metadata gives its help; the flag is the field name with dashes; numbers are checked
    at parse time, a ``bool`` field defaulting to False is a flag and one defaulting to True gets a
    ``--no-…`` form, and a field with metadata ``choices`` (a ``str`` field) takes one of them.
    Defaults are ``None`` in argparse (so :func:`given` can tell "passed" from "default") and the
    help shows the field's real default. ``applies_text(field)`` may add a note
    such as ``fa-mm-*`` to the help.
    """
    import dataclasses

    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        note = applies_text(f) if applies_text else None
        text = f.metadata.get("help", f.name)
        where = f"{note}; " if note else ""
        kind = str(f.type)
        if "bool" in kind:
            if f.default:
                parser.add_argument(flag, dest=f.name, action=_NegatableFlag, default=None,
                                    help=f"{text} ({where}default: on)")
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=f"{text} ({where.rstrip('; ')})"
                                    if note else text)
            continue
        if f.metadata.get("choices"):
            parser.add_argument(flag, dest=f.name, choices=tuple(f.metadata["choices"]), default=None,
                                help=f"{text} ({where}default: {f.default})")
            continue
        parser.add_argument(flag, dest=f.name, type=_number("int" if kind.startswith("int") else "float"),
                            default=None, help=f"{text} ({where}default: "
                                                     f"{'unset' if f.default is None else f.default})")


def settings_from_args(cls, args, names=None):
    """``cls(**options)`` from the options of :func:`add_settings_arguments` that were passed (the rest
    keep the dataclass defaults); invalid values raise the settings' own DataError."""
    import dataclasses

    # "passed" is "not None": a ``--no-…`` form gives False, which must reach the settings
    passed = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if (names is None or f.name in names) and getattr(args, f.name, None) is not None}
    return cls(**passed)
