"""Progress bars and log lines: one home for how long jobs report.

Every long job (embedding, generation, FA rounds, sampling, the experiment) shows a tqdm bar on
stderr through :func:`progress_bar`. A bar draws only when stderr is a terminal (tqdm's
``disable=None``) and never with ``--quiet``; resumed work is the bar's ``initial`` count, so its rate
counts only what this run computed. Messages go through :mod:`logging` under the ``fairl`` logger;
:func:`configure_logging` (called by the ``fairl`` command) prints them on stderr as
``fairl: <message>``, and ``--quiet`` keeps only warnings.
"""

from __future__ import annotations

import logging
import sys

#: Set by :func:`configure_logging` from ``--quiet``: no bars at all when True.
_QUIET = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (so a redirected or captured
    stderr is honoured), like :data:`logging.lastResort`."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Send ``fairl`` log records to stderr (``fairl: <message>``): INFO by default, DEBUG with
    ``verbose``, WARNING only with ``quiet`` (which also turns every progress bar off)."""
    global _QUIET
    _QUIET = bool(quiet)
    logger = logging.getLogger("fairl_opt")
    for handler in list(logger.handlers):
        if getattr(handler, "_fairl", False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("fairl: %(message)s"))
    handler._fairl = True
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def is_quiet() -> bool:
    """Whether ``--quiet`` turned progress output off."""
    return _QUIET


def progress_bar(total: int | None, desc: str, unit: str = "it", *, initial: int = 0, enabled: bool = True,
                 **kwargs):
    """A tqdm bar on stderr: off when ``enabled`` is False, under ``--quiet`` or when stderr is not a
    terminal. ``initial`` units were done before this run (a cache); the rate counts the rest."""
    from tqdm.auto import tqdm

    disable = None if (enabled and not _QUIET) else True
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kwargs)
