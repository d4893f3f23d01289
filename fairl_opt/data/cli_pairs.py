"""``fairl pairs DATA --model MODEL --out pairs.npz``: a preference file to a pairs file with texts,
prompt ids, a held-out split and one standardisation (:mod:`fairl_opt.data.preferences`,
:mod:`fairl_opt.data.build`).

Everything that can fail is checked before a model loads: the output and cache paths, reading and
validating the file (its layout, fields and every row), the split and the model name. Bad rows are
an error naming them (exit 2) unless ``--skip-bad`` drops and counts them. Reruns with the same
``--cache-dir`` (default ``<out>.cache``) embed nothing that is already cached.

It prints one JSON object:

==============  ================================================================================
field           meaning
==============  ================================================================================
out             the pairs file written (``.npz`` appended when missing)
n_pairs         pairs in it (rows read less bad rows)
n_train         training pairs (the standardisation is fitted on their completions)
n_test          held-out pairs (whole prompts; 0 with ``--test-fraction 0``)
n_prompts       distinct prompt texts (one prompt id each)
n_read          rows in the input file (or split)
dim             feature dimension (the model's hidden size)
layout          ``standard``, ``conversational`` or ``hh`` (as detected or given)
fields          the columns used: ``prompt`` (null when taken from the shared prefix), ``chosen``,
                ``rejected``
bad_rows        ``{reason: count}`` of the rows dropped by ``--skip-bad`` (``{}`` when none):
                missing_field, not_a_string, bad_messages, empty_text, identical_sides,
                duplicate_row, identical_features, duplicate_features
feature_model   the feature recipe: model, fingerprint, pooling, max_length, with_prompt,
                standardised, dim
cache           the embedding cache folder
run             command, fairl_version, inputs (data), parameters (every option, defaults included)
==============  ================================================================================
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fairl_opt._args import HelpFormatter, nonnegative_int, positive_int

SUMMARY = "a preference file (JSONL/JSON/CSV/Parquet/datasets folder) → pairs .npz with texts and features"
DESCRIPTION = f"""{SUMMARY}.

Reads standard (prompt/chosen/rejected strings), conversational (message lists) and Anthropic-HH
(dialogues sharing their prefix) layouts; embeds every distinct text once (cached, resumable) and
standardises both sides with one mean/scale fitted on the training pairs. Bad rows (missing or
non-string fields, empty texts, identical sides, duplicates) are an error naming them unless
--skip-bad drops and counts them. Prints one JSON object."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def cmd_pairs(args) -> int:
    from fairl_opt._io import check_output_dir, check_output_path
    from fairl_opt._json import emit_json, run_record
    from fairl_opt.cluster import check_scheduler_arguments, client_for
    from fairl_opt.data.build import build_pairs, check_split, prompt_ids
    from fairl_opt.data.preferences import read_preferences
    from fairl_opt.models import resolve_model

    check_scheduler_arguments(args)
    out = check_output_path(args.out, suffix=".npz")
    cache = Path(args.cache_dir) if args.cache_dir else out.with_name(out.name + ".cache")
    check_output_dir(cache, "--cache-dir")
    texts = read_preferences(args.data, layout=args.layout, prompt_field=args.prompt_field,
                             chosen_field=args.chosen_field, rejected_field=args.rejected_field,
                             split=args.split, skip_bad=args.skip_bad)
    check_split(int(prompt_ids(texts.prompts).max()) + 1, args.test_fraction)
    resolve_model(args.model)
    with client_for(args.scheduler) as client:  # connected (or refused) before any model loads
        data = build_pairs(texts, model=args.model, max_length=args.max_length, with_prompt=args.with_prompt,
                           test_fraction=args.test_fraction, seed=args.seed, cache_dir=cache,
                           batch_size=args.batch_size, workers=args.workers, progress=not args.quiet,
                           skip_bad=args.skip_bad, scheduler=client)
    written = data.save(out)
    parameters = {k: getattr(args, k) for k in ("model", "layout", "prompt_field", "chosen_field",
                                                "rejected_field", "split", "with_prompt", "max_length",
                                                "batch_size", "workers", "scheduler", "test_fraction", "seed",
                                                "skip_bad")}
    parameters["cache_dir"] = str(cache)
    emit_json({
        "out": str(written), "n_pairs": data.pairs.n_pairs, "n_train": int(data.train_index.size),
        "n_test": int(data.test_index.size), "n_prompts": data.meta["n_prompts"], "n_read": texts.n_read,
        "dim": data.pairs.dim, "layout": texts.layout, "fields": texts.fields, "bad_rows": data.meta["bad_rows"],
        "feature_model": data.features.to_dict(), "cache": str(cache),
        "run": run_record("pairs", {"data": args.data}, parameters),
    })
    return 0


def add_pairs_parser(sub) -> None:
    from fairl_opt.data.preferences import LAYOUTS

    p = sub.add_parser("pairs", help=SUMMARY, description=DESCRIPTION,
                       formatter_class=HelpFormatter)
    p.add_argument("data", help=".jsonl, .json, .csv, .parquet file or a datasets save_to_disk folder (UTF-8)")
    p.add_argument("--out", required=True, help="output pairs .npz (.npz is appended when missing)")
    p.add_argument("--model", default="smollm2", help="feature model: smollm2, minilm or a local model directory")
    p.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="standard (prompt/chosen/rejected strings), conversational (message lists), hh "
                        "(dialogues sharing their prefix); auto picks from the first row")
    p.add_argument("--prompt-field", default=None,
                   help="column of the prompt (default: prompt; absent: the shared prefix of the two sides)")
    p.add_argument("--chosen-field", default=None, help="column of the preferred completion (default: chosen)")
    p.add_argument("--rejected-field", default=None,
                   help="column of the dispreferred completion (default: rejected)")
    p.add_argument("--split", default="train", help="split of a DatasetDict folder (a file holds only train)")
    p.add_argument("--with-prompt", action="store_true", help="embed prompt + completion (default: completion)")
    p.add_argument("--max-length", type=positive_int, default=128, help="tokens kept per text")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (one thread each)")
    from fairl_opt.cluster import add_scheduler_argument

    add_scheduler_argument(p)
    p.add_argument("--test-fraction", type=_fraction, default=0.2,
                   help="fraction of prompts held out (whole prompts); 0: no held-out split")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the held-out split")
    p.add_argument("--cache-dir", default=None, help="embedding cache (default: <out>.cache); reruns resume")
    p.add_argument("--skip-bad", action="store_true", help="drop bad rows (counted in bad_rows) instead of failing")
    p.add_argument("--quiet", action="store_true", help="no progress bar; warnings only")
    p.set_defaults(func=cmd_pairs)
