"""``fairl fit`` (pairs → a saved reward folder) and ``fairl score`` (a reward folder + texts → one JSON
object per text).

``fairl fit PAIRS --method M --out REWARD_DIR`` fits on the training pairs of a pairs file (those
outside its ``test_mask``; every pair of a file without one) and writes the folder described in
:mod:`fairl_opt.data.reward`. PAIRS may also be a ``.npy`` of difference rows (n × d, float32 or
float64), memory-mapped and passed over by row blocks (maxent, mm-qp); ``--scheduler ADDRESS`` solves
on a Dask cluster (:func:`fairl_opt.data.fitting.fit_reward`; exit 5 when it does not answer). It prints one JSON object:

=====================  ======================================================================
field                  meaning
=====================  ======================================================================
out                    the reward folder written
method                 the method fitted
hyper_parameters       every hyper-parameter that applies (defaults included; FA settings)
status                 certificate status (``optimal``)
certificate            primal/dual objective, gap, relative gap, violation, backend
n_pairs, n_train,      pairs in the file, fitted on, held out
n_test
dim                    feature dimension
train_pair_accuracy    fraction of training pairs with θᵀΔ > 0
test_pair_accuracy     the same on held-out pairs (null without a test mask)
fit_seconds            wall time of the fit
features               the feature recipe (model, fingerprint, pooling, max length, with_prompt,
                       standardised, dim), null for features not from a text model
fa                     null, or ``stop_reason`` and per round ``n_failures``/``objective``
run                    command, fairl_version, inputs, parameters
=====================  ======================================================================

``fairl score REWARD_DIR TEXTS`` reads completions from a ``.txt`` (one per line) or a ``.jsonl``
(field ``text`` or ``completion``, and ``prompt`` when the reward's features include the prompt),
checks that the installed feature model has the fingerprint the reward recorded (exit 2 otherwise),
embeds with the recorded recipe and standardisation, and prints one JSON object per text:
``{"index": i, "reward": r, "text": ...}`` (plus ``"prompt"``). With ``--out FILE`` the lines go to
FILE and the run record (reward folder, method, hyper-parameters, feature model, input, version)
to ``FILE.meta.json``. ``--scheduler ADDRESS`` embeds the texts on a Dask cluster (the cache stays here).
"""

from __future__ import annotations

import json
from pathlib import Path

from fairl_opt._args import positive_int
from fairl_opt._io import atomic_write_text, check_output_dir, check_output_path, read_texts, sha256_file
from fairl_opt._json import emit_json, jsonable, run_record
from fairl_opt.exceptions import DataError


def cmd_fit(args) -> int:
    from fairl_opt.data.fitting import certificate_summary, check_method_options, fit_reward, settings_of
    from fairl_opt.data.pairs_file import PairsData

    check_method_options(args)
    out = check_output_dir(args.out)
    if str(args.pairs).endswith(".npy"):
        data = load_differences(args.pairs)
    else:
        data = PairsData.load(args.pairs, duplicates="allow" if args.allow_duplicates else "error")
    reward, model = fit_reward(data, args.method, margin=args.margin, C=args.C, reg=args.reg, norm=args.norm,
                               backend=args.backend, settings=settings_of(args), geometry=args.geometry,
                               geometry_samples=args.geometry_samples, seed=args.seed, verbose=args.verbose,
                               input_path=args.pairs, input_sha256=sha256_file(args.pairs),
                               scheduler=args.scheduler)
    written = reward.save(out)
    t = reward.training
    payload = {
        "out": str(written), "method": reward.method, "hyper_parameters": reward.hyper_parameters,
        "status": reward.status, "certificate": certificate_summary(model.certificate_),
        **{k: t[k] for k in ("n_pairs", "n_train", "n_test", "dim", "train_pair_accuracy",
                             "test_pair_accuracy", "fit_seconds")},
        "features": None if reward.features is None else reward.features.to_dict(),
        "fa": None if reward.fa is None else {
            "stop_reason": reward.fa["stop_reason"],
            "rounds": [{"round": r["round"], "n_failures": r["n_failures"], "objective": r["objective"]}
                       for r in reward.fa["rounds"]]},
        "run": run_record("fit", {"pairs": args.pairs}, reward.hyper_parameters),
    }
    if reward.geometry is not None:
        payload["geometry"] = reward.geometry
    emit_json(payload)
    return 0


def load_differences(path):
    """The (n, d) float32/float64 differences Δ in the ``.npy`` at ``path``, memory-mapped (read by
    row blocks, never loaded whole); a DataError naming the file otherwise."""
    import numpy as np

    try:
        delta = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise DataError(f"{path}: not a .npy array of differences ({exc})") from None
    if delta.ndim != 2 or delta.dtype not in (np.float32, np.float64):
        raise DataError(f"{path}: a .npy of differences must be a 2-D float32 or float64 array (pairs x "
                        f"features), got shape {delta.shape} and dtype {delta.dtype}")
    return delta


def cmd_score(args) -> int:
    from fairl_opt.cluster import check_scheduler_arguments, client_for
    from fairl_opt.data.reward import RewardModel

    out = check_output_path(args.out) if args.out else None
    reward = RewardModel.load(args.reward)
    texts, prompts = read_texts(args.texts)
    if reward.features is None:
        raise DataError(f"{args.reward}: this reward was fitted on features that did not come from a text "
                        "model (e.g. fairl simulate); it cannot score texts")
    if reward.features.with_prompt and prompts is None:
        raise DataError(f"{args.texts}: the reward's features include the prompt: give a .jsonl with "
                        "'prompt' and 'text' fields")
    reward.features.check_installed()  # before any embedding
    cache = Path(args.cache_dir) if args.cache_dir else None
    if cache is not None:
        check_output_dir(cache, "--cache-dir")
    check_scheduler_arguments(args)
    with client_for(args.scheduler) as client:
        scores = reward.score_texts(texts, prompts if reward.features.with_prompt else None, cache_dir=cache,
                                    batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                                    scheduler=client)
    lines = []
    for i, (t, r) in enumerate(zip(texts, scores)):
        row = {"index": i, "reward": float(r), "text": t}
        if prompts is not None:
            row["prompt"] = prompts[i]
        lines.append(json.dumps(jsonable(row), ensure_ascii=False))
    body = "\n".join(lines) + "\n"
    if out is None:
        print(body, end="")
        return 0
    atomic_write_text(out, body)
    meta = {"out": str(out), "n_texts": len(texts),
            "run": run_record("score", {"reward": args.reward, "texts": args.texts},
                              {"method": reward.method, **reward.hyper_parameters,
                               "feature_model": reward.features.to_dict(), "scheduler": args.scheduler})}
    emit_json(meta, out.with_name(out.name + ".meta.json"))
    return 0


def add_fit_parser(sub) -> None:
    from fairl_opt.data.fitting import add_method_arguments

    p = sub.add_parser("fit", help="fit a reward on a pairs file and save it as a folder (no pickle)",
                       description="Fit a reward on the training pairs of a pairs file (those outside its "
                                   "test mask) and save it as a folder: theta, standardisation, feature "
                                   "model, hyper-parameters, certificate, FA history. Prints JSON.")
    p.add_argument("pairs", help="pairs .npz (from fairl pairs, or chosen/rejected arrays), or a .npy of "
                                 "differences (n x d float32/float64; memory-mapped, read by row blocks)")
    add_method_arguments(p)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="solve on the Dask cluster at ADDRESS (tcp://host:8786 or a scheduler file): Δ is "
                        "split into row blocks on its workers (a .npy is read by them from its path, which "
                        "they must see) and every pass over it runs there; maxent and mm-qp (needs the dask "
                        "extra)")
    p.add_argument("--out", required=True, help="reward folder to write (created)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=cmd_fit)


def add_score_parser(sub) -> None:
    from fairl_opt.cluster import add_scheduler_argument

    p = sub.add_parser("score", help="score texts with a saved reward; one JSON object per text")
    p.add_argument("reward", help="reward folder from fairl fit")
    p.add_argument("texts", help=".txt (one completion per line) or .jsonl (text or completion[, prompt])")
    p.add_argument("--out", default=None, help="write the JSON lines here (and FILE.meta.json) instead of stdout")
    p.add_argument("--cache-dir", default=None, help="embedding chunk cache (reruns resume)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    add_scheduler_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=cmd_score)
