"""Fit a reward by method name: the options ``fairl solve`` and ``fairl fit`` share, checked once, and
:func:`fit_reward`, the Python call behind ``fairl fit``.

Options that do not apply to the chosen method are refused, not ignored. The soft margin is the
default for max-margin methods (typical preference data is not separable: a hard margin would end
in exit 3); ``--margin hard`` asks for the exact separating program.
"""

from __future__ import annotations

import time

import numpy as np

from fairl_opt._args import (
    add_settings_arguments,
    fill_defaults,
    given,
    nonnegative_int,
    positive_int,
    refuse_inapplicable,
    settings_from_args,
)
from fairl_opt.data.pairs_file import PairsData
from fairl_opt.data.reward import RewardModel
from fairl_opt.estimators import METHODS, make_estimator, methods_with
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings
from fairl_opt.pairs import PreferencePairs
from fairl_opt.solvers import BACKENDS

#: ``--backend``: ``auto`` and every backend of :data:`fairl_opt.solvers.BACKENDS`.
BACKEND_CHOICES = ("auto", *BACKENDS)
#: The FA settings that have an option, generated from :class:`FASettings` (``--seed`` is its own
#: option: it also seeds ``--geometry``).
FA_OPTIONS = tuple(n for n in FASettings.names() if n != "seed")
#: Options whose argparse default is None (so that "given" can be told from "default"), with the
#: defaults they get once checked; the FA options keep FASettings' defaults.
SOLVE_DEFAULTS = dict(margin="soft", C=1.0, reg=1.0, norm="l1", geometry_samples=2000)
#: The methods each option applies to (from :data:`fairl_opt.estimators.METHODS`); given with any
#: other method it is an error.
SOLVE_APPLIES = {
    **{option: methods_with(option) for option in ("norm", "margin", "C", "reg", *FA_OPTIONS)},
    "geometry": tuple(name for name, m in METHODS.items() if m.failure_aware and m.kind == "margin"),
}


def add_method_arguments(p, default_method: str = "mm-qp") -> None:
    """The method, its hyper-parameters, the backend, the FA settings, ``--seed`` and ``--geometry``."""
    d = SOLVE_DEFAULTS
    p.add_argument("--method", choices=tuple(METHODS), default=default_method, help="reward program")
    p.add_argument("--margin", choices=("hard", "soft"), default=None,
                   help=f"hard or soft margins (mm-*, fa-mm-*; default: {d['margin']})")
    p.add_argument("--C", type=float, default=None,
                   help=f"soft-margin slack penalty (--margin soft; default: {d['C']})")
    p.add_argument("--reg", type=float, default=None,
                   help=f"MaxEnt L2 regularisation λ > 0 (maxent, fa-maxent; default: {d['reg']})")
    p.add_argument("--norm", choices=("l1", "linf"), default=None,
                   help=f"objective norm (mm-lp, fa-mm-lp; default: {d['norm']})")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="solver backend; auto picks working-set for mm-qp, lp-ipm for mm-lp (highs "
                        "when d > 256 and n < d/5), newton (d <= 64) or lbfgs for maxent")
    applies = {"all": "fa-*", "margin": "fa-mm-*", "maxent": "fa-maxent"}
    add_settings_arguments(p, FASettings, names=FA_OPTIONS,
                           applies_text=lambda field: applies[field.metadata["applies"]])
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the FA folds and --geometry")
    p.add_argument("--allow-duplicates", action="store_true", help="accept identical pairs")
    p.add_argument("--verbose", action="store_true", help="a log line per FA round on stderr")
    p.add_argument("--geometry", action="store_true",
                   help="add volume ratio, Chebyshev radii and interval widths of F_std and F_FA (fa-mm-*)")
    p.add_argument("--geometry-samples", type=positive_int, default=None,
                   help=f"hit-and-run samples per phase for --geometry, cost grows with d and rounds "
                        f"(default: {d['geometry_samples']})")


def check_method_options(args) -> None:
    """Refuse options that do not apply to ``args.method`` (DataError), then fill the defaults."""
    refuse_inapplicable(args, SOLVE_APPLIES, args.method)
    if given(args, "C") and args.margin == "hard":
        raise DataError("--C applies to --margin soft only (a hard margin has no slack penalty)")
    if given(args, "slack_upweight") and args.margin == "hard":
        raise DataError("--slack-upweight applies to --margin soft only (a hard margin has no slack price)")
    if given(args, "geometry_samples") and not args.geometry:
        raise DataError("--geometry-samples applies with --geometry only")
    fill_defaults(args, SOLVE_DEFAULTS)


def hyper_parameters(method: str, *, margin="soft", C=1.0, reg=1.0, norm=None, backend="auto",
                     settings: FASettings | None = None) -> dict:
    """The hyper-parameters that apply to ``method`` (defaults included), as recorded in JSON."""
    m = METHODS[method]
    out = {"backend": backend}
    for name, value in (("margin", margin), ("C", C), ("reg", reg), ("norm", norm)):
        if name in m.options and not (name == "C" and margin == "hard"):
            out[name] = value
    if m.failure_aware:
        settings = settings or FASettings()
        out["fa_settings"] = {k: v for k, v in settings.to_dict().items() if k in FASettings.names(m.kind)}
    return out


def settings_of(args) -> FASettings | None:
    """The FASettings the options give for ``args.method`` (None for a standard method)."""
    method = METHODS[args.method]
    if not method.failure_aware:
        return None
    return settings_from_args(FASettings, args, names=FASettings.names(method.kind))


def certificate_summary(cert) -> dict:
    """The certificate fields every JSON output prints."""
    return {"primal_objective": cert.primal_objective, "dual_objective": cert.dual_objective,
            "gap": cert.gap, "relative_gap": cert.relative_gap, "max_violation": cert.max_violation,
            "solver_status": cert.solver_status, "backend": cert.backend, "gradient_bound": cert.gradient_bound}


def fit_reward(data, method: str = "mm-qp", *, margin="soft", C=1.0, reg=1.0, norm=None, backend="auto",
               settings: FASettings | None = None, geometry: bool = False, geometry_samples: int = 2000,
               seed: int = 0, verbose: bool = False, input_path=None, input_sha256=None, scheduler=None,
               chunk_rows: int | None = None):
    """Fit ``method`` on the training pairs of ``data`` and return ``(RewardModel, estimator)``.

    Parameters
    ----------
    data : PairsData, PreferencePairs or an (n, d) array of differences
        With a test mask, only the training pairs are fitted; the held-out pair accuracy is recorded.
        An array of differences Δ_i = φ(chosen_i) − φ(rejected_i) — in memory, memory-mapped
        (``np.load(path, mmap_mode="r")``: passed over by row blocks, never loaded) or a row-chunked
        Dask array — is fitted whole, with no features recipe (maxent, mm-qp with the streaming
        backends; see :mod:`fairl_opt.programs.blocks`).
    scheduler : distributed.Client, str or None
        A Dask cluster (a client, or an address for :func:`fairl_opt.cluster.connect`): the training
        Δ becomes a row-chunked Dask array on its workers (:func:`fairl_opt.programs.dask_rows.distribute`:
        a memory-mapped ``.npy`` is read by the workers from its path, which they must see) and every
        pass of the solver and the certificate is a map-reduce there; ``chunk_rows`` sets the rows
        per block (default about 64 MiB).
    method, margin, C, reg, norm, backend, settings
        As :func:`fairl_opt.estimators.make_estimator`; options that do not apply are ignored here
        (the CLI refuses them).
    geometry, geometry_samples, seed
        With ``geometry`` (fa-mm-* only), the feasible-set summary of
        :func:`fairl_opt.geometry.geometry_summary` is computed and saved with the reward.
    input_path, input_sha256
        Recorded as the training input.
    """
    if scheduler is not None:
        from fairl_opt.cluster import client_for

        with client_for(scheduler) as client, client.as_current():
            return _fit_reward(data, method, dict(margin=margin, C=C, reg=reg, norm=norm, backend=backend),
                               settings, geometry, geometry_samples, seed, verbose, input_path, input_sha256,
                               distributed=True, chunk_rows=chunk_rows)
    return _fit_reward(data, method, dict(margin=margin, C=C, reg=reg, norm=norm, backend=backend), settings,
                       geometry, geometry_samples, seed, verbose, input_path, input_sha256, distributed=False,
                       chunk_rows=chunk_rows)


def _is_differences(data) -> bool:
    """Whether ``data`` is an array of differences (ndarray, memmap, Dask array) rather than pairs."""
    return isinstance(data, np.ndarray) or type(data).__module__.startswith("dask.array")


def _fit_reward(data, method, options, settings, geometry, geometry_samples, seed, verbose, input_path,
                input_sha256, *, distributed: bool, chunk_rows):
    """:func:`fit_reward` once the cluster, if any, is the current Dask client (``distributed``)."""
    differences = _is_differences(data)
    if isinstance(data, PreferencePairs):
        data = PairsData(data)
    if not (differences or isinstance(data, PairsData)):
        raise DataError(f"data must be PairsData, PreferencePairs or an array of differences, got "
                        f"{type(data).__name__}")
    if method not in METHODS:
        raise DataError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    m = METHODS[method]
    if geometry and not (m.failure_aware and m.kind == "margin"):
        raise DataError(f"geometry needs an fa-mm-* method, not {method}")
    if m.failure_aware and settings is None:
        settings = FASettings(seed=seed)
    train = data if differences else data.train()
    if distributed:
        from fairl_opt.programs.dask_rows import distribute

        train = distribute(train if differences else train.delta, chunk_rows)
    model = make_estimator(method, **options, settings=settings, verbose=verbose)
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    n_pairs = int(data.shape[0]) if differences else data.pairs.n_pairs
    test = np.zeros(0, dtype=np.int64) if differences else data.test_index
    training = {
        "input": None if input_path is None else str(input_path), "input_sha256": input_sha256,
        "n_pairs": n_pairs, "n_train": n_pairs - int(test.size), "n_test": int(test.size),
        "dim": int(model.n_features_in_),
        # (a blocked Δ: scored on the program's own rows, not checked and persisted a second time)
        "train_pair_accuracy": float(model.score(model.solution_.program.delta if differences or distributed
                                                 else train)),
        "test_pair_accuracy": float(model.score(data.pairs.subset(test))) if test.size else None,
        "fit_seconds": seconds,
    }
    if distributed:
        training["scheduler"] = True
    summary = None
    if geometry:
        from fairl_opt.geometry import geometry_summary

        summary = geometry_summary(model.result_, samples=geometry_samples, seed=seed)
    params = hyper_parameters(method, **options, settings=settings)
    features = None if differences else data.features
    reward = RewardModel.from_estimator(model, method, params, features=features, training=training,
                                        geometry=summary)
    return reward, model

