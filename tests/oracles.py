"""Test oracles shared by the test files: random pair differences, and the soft-margin QP and MaxEnt
solved by scikit-learn (libsvm's SVC, LogisticRegression), independent of fairl_opt's backends."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC


def random_delta(seed, n=40, d=6, shift=1.5):
    """n standard-normal rows of dimension d shifted by ``shift`` along one random unit direction
    (larger shifts: more separable pairs)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    return rng.normal(size=(n, d)) + shift * direction


def svc_reference(delta, C, margins=None, sample_weight=None):
    """Soft-margin QP through sklearn's SVC (libsvm, linear kernel).

    The QP's hinge terms C·max(0, m_i − Δ_iθ) = C·m_i·max(0, 1 − (Δ_i/m_i)θ) for m_i > 0, so rows
    are divided by m_i and weighted by m_i. sklearn needs two classes: the data are symmetrised as
    [Δ; −Δ] with labels [1; −1], which doubles the hinge sum, hence C/2; by symmetry the intercept
    libsvm fits is 0 (checked). (liblinear's LinearSVC was tried first: its dual coordinate descent
    stopped 1e-2 away from the optimum on some of these problems.)
    """
    margins = np.ones(len(delta)) if margins is None else margins
    rows = delta / margins[:, None]
    weight = margins if sample_weight is None else sample_weight * margins
    X = np.vstack([rows, -rows])
    y = np.r_[np.ones(len(rows)), -np.ones(len(rows))]
    svc = SVC(kernel="linear", C=C / 2, tol=1e-10)
    svc.fit(X, y, sample_weight=np.r_[weight, weight])
    assert abs(svc.intercept_[0]) < 1e-6
    return svc.coef_.ravel()


def logreg_reference(delta, reg, weights=None, temperatures=None):
    """MaxEnt through sklearn LogisticRegression: Σ w ℓ + (λ/2)‖θ‖² ⇔ C Σ w ℓ + ½‖θ‖² with C = 1/λ,
    halved again for the symmetrised two-class data."""
    n = len(delta)
    weights = np.ones(n) if weights is None else weights
    temperatures = np.ones(n) if temperatures is None else temperatures
    rows = delta / temperatures[:, None]
    X = np.vstack([rows, -rows])
    y = np.r_[np.ones(n), np.zeros(n)]
    model = LogisticRegression(C=1.0 / (2 * reg), fit_intercept=False, tol=1e-12, max_iter=10**5, random_state=0)
    model.fit(X, y, sample_weight=np.r_[weights, weights])
    return model.coef_.ravel()
