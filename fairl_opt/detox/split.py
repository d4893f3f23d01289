"""One prompt-level split of a detox dataset (:class:`Split`): features standardised on its training
prompts, its training and test pairs, every held-out metric of a reward, and the choice of the
regularisation by validation inside the training prompts (:data:`REG_GRID`)."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from fairl_opt.detox.dataset import DetoxDataset
from fairl_opt.estimators import make_estimator
from fairl_opt.metrics import classification_metrics, fit_threshold, pairwise_accuracy, starc_distance

#: The programs' fixed settings (soft margins; C and λ before the choice of :data:`REG_GRID`).
OPTIONS = dict(margin="soft", C=1.0, reg=1.0)
#: Regularisation chosen per split, on the training prompts only: 3-fold prompt-level validation
#: (:class:`~fairl_opt.pairs.PromptFolds`), criterion = mean validation ROC-AUC of the reward as a
#: toxicity detector on the validation prompts' completions. Each standard program has
#: its own grid (the ℓ1 LP returns θ = 0 once C·‖ΣΔ‖∞ ≤ 1, so it needs larger C; C ≥ 0.3 is left out
#: of its grid because one LP fit there costs 5-10 s); every FA variant uses its standard method's value.
REG_GRID = {
    "mm-qp": ("C", (1.0, 0.1, 0.01, 0.001, 0.0001)),
    "mm-lp": ("C", (0.1, 0.03, 0.01)),
    "maxent": ("reg", (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)),
}
SELECTION_FOLDS = 3


#: The prompt family whose held-out ROC-AUC is reported apart from the others' (when the data has it).
FOCUS_FAMILY = "challenge"


class Split:
    """One prompt-level split of a dataset, standardised on its training prompts, with the (aligned ≻
    base) pairs of aligned policy ``policy`` (:meth:`DetoxDataset.aligned`). The standardisation and
    every held-out completion do not depend on the policy: two policies' rewards are judged alike."""

    def __init__(self, ds: DetoxDataset, test_mask: np.ndarray, policy: str = "sir"):
        self.ds, self.policy = ds, policy
        self.train_prompts = np.flatnonzero(~test_mask)
        self.test_prompts = np.flatnonzero(test_mask)
        self.mean, self.scale = ds.standardiser(self.train_prompts)
        self.train, self.train_dropped = ds.pairs(self.train_prompts, self.mean, self.scale, policy)
        self.test, self.test_dropped = ds.pairs(self.test_prompts, self.mean, self.scale, policy)

    def completions(self, prompts):
        """Standardised features, r*, labels and prompt ids of every completion of ``prompts``."""
        ds = self.ds
        x = (ds.features[prompts].reshape(-1, ds.dim) - self.mean) / self.scale
        ids = np.repeat(prompts, ds.K + 1)
        return x, ds.r_star[prompts].ravel(), ds.toxic[prompts].ravel(), ids

    @cached_property
    def _train_completions(self):
        return self.completions(self.train_prompts)

    @cached_property
    def _test_completions(self):
        return self.completions(self.test_prompts)

    @cached_property
    def _focus(self):
        """Boolean mask over the held-out completions: those of :data:`FOCUS_FAMILY` prompts (None
        when the data has no prompt of that family, or only such prompts)."""
        fam = np.asarray(self.ds.families)[np.repeat(self.test_prompts, self.ds.K + 1)] == FOCUS_FAMILY
        return fam if 0 < fam.sum() < fam.size else None

    @cached_property
    def implicit_policy(self):
        """The added policy whose implicit reward the rewards are compared with: this split's policy
        when it has one, else the first that has one, else None."""
        pols = self.ds.policies
        if self.policy in pols and pols[self.policy].implicit is not None:
            return pols[self.policy]
        return next((p for p in pols.values() if p.implicit is not None), None)

    @cached_property
    def _implicit_completions(self):
        """(standardised features, implicit reward, r*, prompt ids) of the held-out completions the
        implicit reward is computed on: base, SIR-aligned and the policy's samples of each test prompt."""
        pol, ds, rows = self.implicit_policy, self.ds, self.test_prompts
        a = ds.aligned_index[rows]
        x = np.concatenate([ds.features[rows, 0], ds.features[rows, a]] + [pol.features[rows, j]
                                                                         for j in range(pol.features.shape[1])])
        imp = np.concatenate([pol.implicit_data[rows, 0], pol.implicit_data[rows, a]] + list(pol.implicit[rows].T))
        r = np.concatenate([ds.r_star[rows, 0], ds.r_star[rows, a]] + list(pol.r_star[rows].T))
        ids = np.tile(rows, 2 + pol.features.shape[1])
        return (x - self.mean) / self.scale, imp, r, ids

    def evaluate(self, theta) -> dict:
        """Every held-out metric of reward θ (see the module docstring)."""
        ds = self.ds
        x_tr, _, y_tr, _ = self._train_completions
        x_te, r_te, y_te, ids_te = self._test_completions
        # the reward as a toxicity detector: toxic (positive class) when −r(y) is above the threshold
        threshold = fit_threshold(-(x_tr @ theta), y_tr, criterion="f1")
        cls = classification_metrics(-(x_te @ theta), y_te, threshold)
        out = {
            "heldout_pair_accuracy": pairwise_accuracy(theta, self.test.delta),
            "accuracy": cls["accuracy"], "f1": cls["f1"], "roc_auc": cls["roc_auc"],
            "starc": starc_distance(x_te @ theta, r_te, ids_te),
            "roc_auc_challenge": None, "roc_auc_other": None, "starc_implicit": None,
        }
        if self._focus is not None:
            for key, mask in (("roc_auc_challenge", self._focus), ("roc_auc_other", ~self._focus)):
                out[key] = classification_metrics(-(x_te[mask] @ theta), y_te[mask], threshold)["roc_auc"]
        if self.implicit_policy is not None:
            x_i, imp, _, ids = self._implicit_completions
            out["starc_implicit"] = starc_distance(x_i @ theta, imp, ids)
        cand = (ds.features[self.test_prompts, 1:] - self.mean) / self.scale
        pick = 1 + np.argmax(cand @ theta, axis=1)
        out.update(self._policy(pick))
        return out

    def select_regularisation(self, seed: int) -> tuple[dict, dict]:
        """C (margin programs) and λ (MaxEnt) by :data:`SELECTION_FOLDS`-fold validation over the training
        prompts (see :data:`REG_GRID`): ``GridSearchCV`` with ``PromptFolds(SELECTION_FOLDS, seed)`` on
        the training pairs, scored by :meth:`validation_roc_auc`. Returns ({method: {param: value}},
        {method: {value: mean validation ROC-AUC}}); ties go to the first value of the grid."""
        from sklearn.model_selection import GridSearchCV

        from fairl_opt.pairs import PromptFolds

        chosen, scores = {}, {}
        ids = self.train.prompt_ids
        for base, (param, grid) in REG_GRID.items():
            search = GridSearchCV(make_estimator(base, **OPTIONS), {param: list(grid)}, scoring=self.validation_roc_auc,
                                  cv=PromptFolds(SELECTION_FOLDS, seed), refit=False, error_score="raise")
            search.fit(self.train.delta, ids, groups=ids)  # y = prompt ids, for the scorer only
            chosen[base] = search.best_params_
            scores[base] = dict(zip(map(str, grid), map(float, search.cv_results_["mean_test_score"])))
        return chosen, scores

    def validation_roc_auc(self, model, delta, prompt_ids) -> float:
        """A scikit-learn scorer: ROC-AUC of the fitted ``model`` as a toxicity detector on every
        completion of the prompts in ``prompt_ids`` (the validation pairs'; ``delta`` is not used)."""
        x, _, toxic, _ = self.completions(np.unique(prompt_ids))
        return classification_metrics(-model.decision_function(x), toxic, 0.0)["roc_auc"]

    def _policy(self, index) -> dict:
        rows = self.test_prompts
        return {"bok_toxic_rate": float(self.ds.toxic[rows, index].mean()),
                "bok_mean_r_star": float(self.ds.r_star[rows, index].mean())}

    def reference_policies(self) -> dict:
        """Toxicity rate and mean r* of base, aligned (SIR and each added policy's first sample) and
        best-of-K-by-r* on the test prompts."""
        ds, rows = self.ds, self.test_prompts
        out = {
            "base": self._policy(np.zeros(rows.size, dtype=int)),
            "aligned (SIR, data)": self._policy(ds.aligned_index[rows]),
        }
        for name, pol in ds.policies.items():
            out[f"aligned ({name}, trained)"] = {"bok_toxic_rate": float(pol.toxic[rows, 0].mean()),
                                                "bok_mean_r_star": float(pol.r_star[rows, 0].mean())}
        out["best-of-K by r*"] = self._policy(1 + np.argmax(ds.r_star[rows, 1:], axis=1))
        return out

    def implicit_reference(self) -> dict | None:
        """How far the trained model's implicit reward is from r* (STARC on the completions of
        :attr:`_implicit_completions`) and how often it ranks (policy sample ≻ base) as r* does."""
        if self.implicit_policy is None:
            return None
        _, imp, r, ids = self._implicit_completions
        return {"policy": self.implicit_policy.name, "starc_r_star_vs_implicit": starc_distance(r, imp, ids),
                "completions": int(imp.size)}
