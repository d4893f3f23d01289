"""The estimators as scikit-learn sees them: parameters, clone, grid search and cross-validation over
prompt folds, and the method registry behind ``make_estimator`` and ``fairl solve``."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from fairl_opt.estimators import (
    METHODS,
    FailureAwareReward,
    MaxEntReward,
    MaxMarginReward,
    get_method,
    make_estimator,
    methods_with,
)
from fairl_opt.exceptions import DataError
from fairl_opt.fa import FASettings, run_fa
from fairl_opt.pairs import PromptFolds, group_folds
from fairl_opt.programs import MarginProgram, MaxEntProgram
from fairl_opt.simulate import simulate


@pytest.fixture(scope="module")
def pairs():
    return simulate(n_pairs=90, dim=5, regime="isotropic", seed=4).pairs


def test_get_params_nests_the_base_estimator_and_set_params_reaches_it():
    settings = FASettings(max_rounds=2)
    fa = FailureAwareReward(MaxMarginReward(margin="soft", C=0.5), settings)
    params = fa.get_params(deep=True)
    assert params["settings"] is settings and params["verbose"] is False
    assert params["estimator__C"] == 0.5 and params["estimator__margin"] == "soft"
    assert params["estimator__backend_settings"] is None
    assert set(fa.get_params(deep=False)) == {"estimator", "settings", "verbose"}
    fa.set_params(estimator__C=2.0, verbose=True)
    assert fa.estimator.C == 2.0 and fa.verbose is True
    assert MaxEntReward(reg=3.0).get_params() == {"reg": 3.0, "backend": "auto", "backend_settings": None}
    assert repr(MaxEntReward(reg=3.0)) == "MaxEntReward(reg=3.0)"  # scikit-learn's repr: changed params


def test_clone_copies_parameters_not_fitted_state(pairs):
    fa = FailureAwareReward(MaxEntReward(reg=2.0), FASettings(max_rounds=1, oof_folds=0)).fit(pairs)
    twin = clone(fa)
    assert not hasattr(twin, "theta_") and twin.estimator is not fa.estimator
    assert twin.estimator.reg == 2.0 and twin.settings == fa.settings
    assert np.array_equal(twin.fit(pairs).theta_, fa.theta_)


def test_fit_leaves_the_given_estimator_unfitted(pairs):
    base = MaxMarginReward(margin="soft")
    FailureAwareReward(base, FASettings(max_rounds=1, oof_folds=0)).fit(pairs)
    assert not hasattr(base, "theta_")


@pytest.mark.parametrize("base, program", [
    (MaxMarginReward(margin="soft", C=0.7), lambda d: MarginProgram(d, 1.0, "l2", 0.7)),
    (MaxMarginReward("l1", margin="soft", C=0.3), lambda d: MarginProgram(d, 1.0, "l1", 0.3)),
    (MaxEntReward(reg=0.5), lambda d: MaxEntProgram(d, 0.5)),
])
def test_settings_reach_run_fa_unchanged(pairs, base, program):
    """FailureAwareReward(settings=s).fit is run_fa(program, backend, s, groups=prompt ids), bit for bit."""
    settings = FASettings(oof_folds=3, max_rounds=3, seed=7, upweight=3.0, slack_upweight=2.0)
    model = FailureAwareReward(base, settings).fit(pairs)
    direct = run_fa(program(pairs.delta), "auto", settings, groups=pairs.prompt_ids)
    assert model.result_.settings is settings
    assert np.array_equal(model.theta_, direct.theta)
    untimed = lambda rounds: [{k: v for k, v in r.items() if k != "certificate"} for r in rounds]  # noqa: E731
    assert untimed([h.to_dict() for h in direct.history]) == untimed(model.history_)
    assert len(model.history_) >= 2  # the loop did run rounds


def test_grid_search_over_reg(pairs):
    search = GridSearchCV(MaxEntReward(), {"reg": [0.1, 1.0, 10.0]}, cv=3).fit(pairs.delta)
    assert search.best_params_["reg"] in (0.1, 1.0, 10.0)
    # the score is the pairwise accuracy of each fold's fit on the held-out rows
    folds = list(__import__("sklearn.model_selection", fromlist=["KFold"]).KFold(3).split(pairs.delta))
    for i, reg in enumerate((0.1, 1.0, 10.0)):
        manual = [MaxEntReward(reg=reg).fit(pairs.delta[tr]).score(pairs.delta[te]) for tr, te in folds]
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(np.mean(manual))


def test_grid_search_over_the_nested_estimator_with_prompt_folds(pairs):
    fa = FailureAwareReward(MaxEntReward(), FASettings(max_rounds=1, oof_folds=0))
    search = GridSearchCV(fa, {"estimator__reg": [0.3, 3.0]}, cv=PromptFolds(3, seed=1))
    search.fit(pairs.delta, groups=pairs.prompt_ids)
    assert search.best_estimator_.estimator.reg == search.best_params_["estimator__reg"]
    assert search.best_estimator_.settings.max_rounds == 1


def test_cross_val_score_with_prompt_folds_keeps_prompts_together(pairs):
    scores = cross_val_score(MaxMarginReward(margin="soft"), pairs.delta, cv=PromptFolds(3),
                             groups=pairs.prompt_ids)
    manual = []
    for train, test in group_folds(pairs.prompt_ids, 3, 0):
        assert not set(pairs.prompt_ids[train]) & set(pairs.prompt_ids[test])
        manual.append(MaxMarginReward(margin="soft").fit(pairs.subset(train)).score(pairs.subset(test)))
    assert np.array_equal(scores, manual)


def test_sklearn_estimator_checks_that_apply():
    """The parts of check_estimator that make sense for preference data (no labels, any real Δ)."""
    from sklearn.utils.estimator_checks import (
        check_dont_overwrite_parameters,
        check_estimators_overwrite_params,
        check_fit_check_is_fitted,
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    for est in (MaxMarginReward(margin="soft"), MaxEntReward(), FailureAwareReward(MaxEntReward())):
        name = type(est).__name__
        for check in (check_no_attributes_set_in_init, check_get_params_invariance, check_set_params,
                      check_parameters_default_constructible):
            check(name, est)
        for check in (check_fit_check_is_fitted, check_dont_overwrite_parameters,
                      check_estimators_overwrite_params):
            check(name, clone(est))


def test_registry_builds_every_method():
    assert list(METHODS) == ["mm-qp", "mm-lp", "maxent", "fa-mm-qp", "fa-mm-lp", "fa-maxent"]
    settings = FASettings(max_rounds=1)
    for name, method in METHODS.items():
        model = make_estimator(name, margin="hard", C=2.0, reg=3.0, norm="linf", backend="cvxpy",
                               settings=settings if method.failure_aware else None)
        base = model.estimator if method.failure_aware else model
        assert isinstance(model, FailureAwareReward) == method.failure_aware
        if method.failure_aware:
            assert model.settings is settings
        if method.program == "maxent":
            assert (type(base), base.reg, base.backend) == (MaxEntReward, 3.0, "cvxpy")
        else:
            assert (type(base), base.margin, base.C) == (MaxMarginReward, "hard", 2.0)
            assert base.norm == ("l2" if method.program == "mm-qp" else "linf")
    assert make_estimator("mm-lp").norm == "l1"
    assert get_method("fa-mm-lp").program == "mm-lp" and get_method("fa-maxent").kind == "maxent"
    with pytest.raises(DataError, match="method must be one of mm-qp, mm-lp, maxent, fa-mm-qp"):
        get_method("fa-svm")


def test_registry_says_which_options_apply():
    assert methods_with("norm") == ("mm-lp", "fa-mm-lp")
    assert methods_with("C") == ("mm-qp", "mm-lp", "fa-mm-qp", "fa-mm-lp")
    assert methods_with("reg") == ("maxent", "fa-maxent")
    assert methods_with("max_rounds") == ("fa-mm-qp", "fa-mm-lp", "fa-maxent")
    assert methods_with("margin_step") == methods_with("backoff") == ("fa-mm-qp", "fa-mm-lp")
    assert methods_with("upweight") == methods_with("sharpen") == ("fa-maxent",)
    for name, method in METHODS.items():
        fa_names = set(method.options) & set(FASettings.names())
        assert fa_names == (set(FASettings.names(method.kind)) if method.failure_aware else set())
