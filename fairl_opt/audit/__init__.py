"""Audit a fitted reward on a pairs file: per-pair margins, failures, what it pays for, figures.

``fairl audit PAIRS --reward DIR --out REPORT_DIR`` (or :func:`audit` on :func:`load_inputs`) writes
into REPORT_DIR: ``report.md`` (every section below, figures embedded), ``audit.json`` (every number
of the report), ``pairs.csv`` (one row per pair: ``pair, split, source_row, prompt_id, kind, margin,
normalised_margin, reward_chosen, reward_rejected, failure, prompt, chosen, rejected``),
``phrases.csv`` (every tested n-gram, columns as in ``phrases.positive`` below; only with texts) and
the PNG figures ``margins.png``, ``rewards.png``, ``fa_rounds.png`` (FA rewards) and ``phrases.png``
(when some phrase is listed). Same inputs, same bytes. Pair indices are 0-based rows of the pairs
file; ``source_row`` is the row of the input file the pairs came from.

``audit.json``, field by field:

=======================================  ============================================================
field                                    meaning
=======================================  ============================================================
``format``                               ``"fairl-audit/1"``
``run``                                  :func:`~fairl_opt._json.run_record`: ``command``,
                                         ``fairl_version``, ``inputs`` (pairs, reward), ``parameters``
                                         (top, min_count, max_ngram, fdr, separability_limit, out, quiet)
``inputs.pairs``, ``inputs.reward``      the paths audited
``inputs.n_pairs/n_train/n_test/dim``    pair counts (held-out = the file's ``test_mask``) and d
``inputs.has_texts/has_kinds/``          what the pairs file carries
``has_prompt_ids``
``inputs.features``                      ``pairs``/``reward``: their feature recipes (model,
                                         fingerprint, pooling, max_length, with_prompt, standardised,
                                         dim) or null; ``checked``: both recorded one and it matched;
                                         ``restandardised``: the pairs were mapped to the reward's units
``inputs.same_file_as_training``         whether the pairs file is the one the reward was fitted on
                                         (sha256 against ``training.input_sha256``); null if unknown
``inputs.notes``                         what the input check could not establish
``reward.method/kind/failure_aware``     the reward's method (:data:`fairl_opt.estimators.METHODS`)
``reward.hyper_parameters``              as the reward folder records them
``reward.status``, ``reward.certificate`` its certificate (``"optimal"`` = certified)
``reward.theta_norm``                    ‖θ‖₂
``reward.fitted_pairs``                  pairs it was fitted on, when the folder says; else null
``reward.training/fairl_version/created`` copied from ``reward.json``
``failure_rule``                         ``source`` (the reward's FA settings or the FASettings
                                         defaults), ``near_tie_threshold``, ``near_tie_quantile``,
                                         ``rule`` (in words), ``threshold`` (τ used, on θᵀΔ/‖θ‖: the
                                         FA loop's own τ for an FA reward with a quantile rule, else
                                         the quantile resolved on the training pairs' normalised
                                         margins), ``threshold_from_fa_loop``,
                                         ``threshold_reward_units`` (τ‖θ‖), ``definition``
``failures.train``, ``failures.test``    null without such pairs; else ``n_pairs``, ``n_failures``,
                                         ``n_misclassified`` (θᵀΔ ≤ 0), ``n_near_ties``,
                                         ``failure_rate``, ``indices`` (every failure, worst first:
                                         misclassified by margin, then near ties by margin) and
                                         ``listed`` (the first ``top``: ``pair, split, source_row,
                                         prompt_id, kind, margin, normalised_margin, reward_chosen,
                                         reward_rejected, failure, prompt, chosen, rejected``)
``margins.train``, ``margins.test``      margins θᵀΔ: ``n``, ``correct``, ``accuracy`` (margin > 0),
                                         ``accuracy_ci95`` (Wilson), ``mean``, ``sd``, ``quantiles``
                                         (0, 0.05, 0.25, 0.5, 0.75, 0.95, 1); test null without one
``completions.chosen/rejected``          rewards θᵀφ of that side: ``n``, ``mean``, ``sd``, ``quantiles``
``completions.highest/lowest``           the ``top`` distinct completions (text and prompt) by reward:
                                         ``reward, side, pair, split, source_row, prompt_id, prompt,
                                         text``
``kinds``                                null without kinds; else per kind present: ``n_pairs``,
                                         ``n_train``, ``accuracy``, ``mean_margin``, ``median_margin``,
                                         ``n_misclassified``, ``n_near_ties``, ``mean_reward_chosen``,
                                         ``mean_reward_rejected``
``phrases``                              null without texts; else ``units``, ``n_completions``,
                                         ``min_count``, ``max_ngram``, ``fdr``, ``token_pattern``,
                                         ``lowercase``, ``statistic``, ``caveat``, ``n_tested``,
                                         ``n_significant_positive/negative``, ``note`` (when nothing
                                         could be tested) and ``positive``/``negative``: up to ``top``
                                         n-grams with q ≤ fdr by effect size, each ``ngram, n_with,
                                         mean_with, mean_without, difference, effect_size`` (Cohen's
                                         d), ``t, df, p_value`` (Welch), ``q_value`` (BH),
                                         ``pairs_one_side, chosen_side, chosen_fraction, mean_margin,
                                         paired_difference, paired_t, paired_p_value,
                                         paired_q_value, label_p_value``;
                                         ``within_statistic``, ``n_within_tested``,
                                         ``n_significant_within_positive/negative`` and
                                         ``within_positive``/``within_negative``: the within-prompt
                                         test (pairs with the n-gram on one side only, topic held
                                         fixed), up to ``top`` with paired q ≤ fdr by paired t
                                         (:mod:`fairl_opt.audit.phrases`)
``fa``                                   null for a standard reward; else ``stop_reason``,
                                         ``n_tightened``, ``rounds`` (``round, n_failures,
                                         n_misclassified, n_near_ties, objective, n_edited, step,
                                         note``) and ``geometry`` (null unless fitted with
                                         ``--geometry``: ``volume_ratio`` F_FA/F_std, ``stderr``,
                                         ``ci_low``, ``ci_high``, ``confidence``, ``method``, ``steps``
                                         (per round), ``chebyshev_radius_standard/fa``, ``convention``)
``limits.identification``                ``n_train``, ``dim``, ``rank`` of the training Δ,
                                         ``pairs_per_dim``, ``status``: ok / weakly determined
                                         (n_train < 10·d) / not identified (rank < d)
``limits.separability``                  ``status``: separable / not separable / skipped /
                                         undetermined, ``how``, ``limit``; ``min_margin`` and
                                         ``witness_norm`` (solved), ``conflicting_pairs`` (first 50,
                                         pairs of the file), ``n_conflicting``, ``farkas_radius``
                                         (not separable)
``limits.prompts``                       ``n_prompts`` (distinct training prompt ids; null without
                                         ids), ``pairs_per_prompt`` (min, median, max),
                                         ``largest_share``
``limits.heldout``                       ``n_test``
``warnings``                             ``[{code, message}]``; codes: ``not_identified``,
                                         ``weakly_determined``, ``separable``,
                                         ``separability_unchecked``, ``separability_undetermined``,
                                         ``no_prompt_ids``, ``single_prompt``, ``few_prompts``
                                         (< 20), ``dominant_prompt`` (> 50 %), ``no_heldout``,
                                         ``small_heldout`` (< 50), ``inaccurate`` (held-out Wilson
                                         interval reaches 0.5, or training accuracy < 0.6 without
                                         held-out pairs), ``uncertified``, ``other_file`` (the reward
                                         was fitted on another file), ``other_pairs`` (on another
                                         number of pairs),
                                         ``feature_recipe_unchecked``
``files``                                ``report``, ``audit``, ``pairs_csv``, ``phrases_csv`` (with
                                         texts) and ``figures`` (name → file), relative to REPORT_DIR
=======================================  ============================================================

Numbers that JSON cannot hold (±inf) are strings, as in every ``fairl`` output.
"""

#: Public names → the module that defines them (imported on first use, so that ``fairl --help``
#: does not load scikit-learn's text tools and matplotlib).
_EXPORTS = {"AuditOptions": "core", "analyse": "core", "audit": "core", "headline": "core",
            "AuditInputs": "inputs", "check_inputs": "inputs", "fa_settings": "inputs", "load_inputs": "inputs"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fairl_opt.audit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"fairl_opt.audit.{_EXPORTS[name]}"), name)
