"""Federated Newton / L-BFGS reaches scikit-learn's pooled optimum for GLMs."""

from __future__ import annotations

from functools import partial

import numpy as np
import polars as pl
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor, LinearRegression, LogisticRegression, PoissonRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fedbench as fb
from fedbench.errors import ConfigurationError, UnsupportedEstimatorError
from fedbench.learn import FedNewton
from fedbench.learn.data import local_rows

from .conftest import make_fed

_KEYS = make_fed().keys


@pytest.fixture(scope="module")
def hospitals() -> fb.Federation:
    fed = fb.Federation.from_dir("data_samples/hospitals", key_bits=512, allow_insecure_key_size=True)
    fed._keys = _KEYS
    return fed


def pooled(fed, run):
    parts = [p.compute(partial(local_rows, spec=run._spec)) for p in fed]
    return pl.concat([x for x, _ in parts], how="vertical_relaxed"), np.concatenate([y for _, y in parts])


def pipe(**lr):
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(**lr))


def test_hospitals_pipeline_matches_pooled_and_beats_every_hospital_alone(hospitals):
    """The issue's acceptance test: secure federated imputer + scaler + logistic regression."""
    run = hospitals.fit(pipe(), target="diagnosis", features=None, rounds=30, secure=True, test_size=0.3, seed=0)
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), StandardScaler(),
                        LogisticRegression(solver="newton-cholesky", tol=1e-12)).fit(x, y)
    assert np.abs(run.model[-1].coef_ - ref[-1].coef_).max() < 1e-4
    assert np.abs(run.model[-1].intercept_ - ref[-1].intercept_).max() < 1e-4
    assert run.steps[-1].converged and run.steps[-1].rounds < 20
    tab = run.compare()
    assert tab["model"].to_list() == ["local:east", "local:north", "local:south", "local:west", "federated",
                                      "centralized"]
    score = dict(zip(tab["model"], tab["score"], strict=True))
    assert score["federated"] >= score["centralized"] - 0.01
    assert all(score["federated"] >= v for k, v in score.items() if k.startswith("local:"))
    assert "patient_id" not in run.features and "sex" not in run.features  # identifiers and strings left out
    assert set(run.skipped_columns) >= {"patient_id", "sex", "referral"}


def test_multinomial_and_balanced_weights_match_sklearn(hospitals):
    run = hospitals.fit(pipe(C=0.5, class_weight="balanced"), target="referral", secure=False)
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), StandardScaler(),
                        LogisticRegression(C=0.5, class_weight="balanced", solver="newton-cholesky",
                                           tol=1e-12)).fit(x, y)
    assert list(run.model.classes_) == list(ref.classes_) == ["gp", "screening", "specialist"]
    assert np.abs(run.model[-1].coef_ - ref[-1].coef_).max() < 1e-6
    assert np.abs(run.model[-1].intercept_ - ref[-1].intercept_).max() < 1e-6
    np.testing.assert_allclose(run.model.predict_proba(x), ref.predict_proba(x), atol=1e-7)


def test_no_penalty_no_intercept_and_lbfgs(hospitals):
    feats = ["mean_radius", "mean_compactness", "worst_symmetry"]
    run = hospitals.fit(pipe(C=np.inf, fit_intercept=False), target="diagnosis", features=feats, secure=False)
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(
        C=np.inf, fit_intercept=False, solver="newton-cholesky", tol=1e-12)).fit(x, y)
    assert np.abs(run.model[-1].coef_ - ref[-1].coef_).max() < 1e-6
    assert np.all(run.model[-1].intercept_ == 0)
    lb = hospitals.fit(pipe(C=2.0), target="diagnosis", features=feats, strategy="lbfgs", secure=False)
    ref = make_pipeline(SimpleImputer(), StandardScaler(),
                        LogisticRegression(C=2.0, solver="newton-cholesky", tol=1e-12)).fit(x, y)
    assert np.abs(lb.model[-1].coef_ - ref[-1].coef_).max() < 1e-4
    assert lb.steps[-1].protocol.startswith("federated L-BFGS") and lb.steps[-1].converged


def test_poisson_gamma_and_newton_linear_regression(hospitals):
    feats = ["mean_radius", "mean_compactness", "age"]
    for est in (PoissonRegressor(alpha=0.1), GammaRegressor(alpha=0.05)):
        run = hospitals.fit(make_pipeline(StandardScaler(), est), target="worst_radius", features=feats, secure=False)
        x, y = pooled(hospitals, run)
        ref = make_pipeline(StandardScaler(), type(est)(alpha=est.alpha, solver="newton-cholesky", tol=1e-12,
                                                        max_iter=1000)).fit(x, y)
        np.testing.assert_allclose(run.model[-1].coef_, ref[-1].coef_, rtol=1e-6, atol=1e-8)
        assert run.model[-1].intercept_ == pytest.approx(ref[-1].intercept_, rel=1e-6)
    run = hospitals.fit(LinearRegression(), target="worst_radius", features=feats, strategy="newton")
    x, y = pooled(hospitals, run)
    np.testing.assert_allclose(run.model.coef_, LinearRegression().fit(x, y).coef_, rtol=1e-6)


def test_a_custom_strategy_instance_and_refusals(hospitals):
    feats = ["mean_radius", "mean_compactness"]
    run = hospitals.fit(LogisticRegression(), target="diagnosis", features=feats, secure=False,
                        strategy=FedNewton(method="newton", tol=1e-12))
    x, y = pooled(hospitals, run)
    ref = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(x, y)
    assert np.abs(run.model.coef_ - ref.coef_).max() < 1e-6
    with pytest.raises(UnsupportedEstimatorError, match="l1"):
        hospitals.fit(LogisticRegression(l1_ratio=1.0, solver="saga"), target="diagnosis", features=feats)
    with pytest.raises(UnsupportedEstimatorError, match="supports newton, lbfgs"):
        hospitals.fit(PoissonRegressor(), target="worst_radius", features=feats, strategy="fedavg")
    with pytest.raises(ConfigurationError, match="DP-FedAvg|dp="):
        from fedbench.dp import DPConfig

        hospitals.fit(LogisticRegression(), target="diagnosis", features=feats, strategy="newton",
                      dp=DPConfig(noise_multiplier=1.0, clip=1.0, delta=1e-5))  # deprecated spelling: still refused


def test_newton_round_with_a_dropout_is_retried_not_used(hospitals):
    feats = ["mean_radius", "mean_compactness"]
    run = hospitals.fit(LogisticRegression(), target="diagnosis", features=feats, secure=False,
                        failure=lambda party, rnd: party == "west" and rnd == 2, min_parties=2)
    x, y = pooled(hospitals, run)
    ref = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(x, y)
    assert np.abs(run.model.coef_ - ref.coef_).max() < 1e-6  # same optimum despite the dropout
    g = run.global_history.filter(pl.col("stage") == "model")
    assert g.filter(pl.col("round") == 2)["status"].item() == "retry"
    # The party is down for the whole round: its local step and its evaluation both drop out.
    assert [(f.party, f.round, f.stage) for f in run.failures] == [("west", 2, "model"), ("west", 2, "model:evaluate")]
