"""Exact federated models equal scikit-learn fitted on the pooled rows (to 1e-6 relative)."""

from __future__ import annotations

from functools import partial

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.compose import make_column_transformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

import fedbench as fb
from fedbench.errors import UnsupportedEstimatorError
from fedbench.learn.data import local_rows

from .conftest import make_fed

HOSPITALS = "data_samples/hospitals"
FEATURES = ["age", "mean_radius", "mean_texture", "mean_smoothness", "mean_concavity", "worst_area"]
_KEYS = make_fed().keys


@pytest.fixture(scope="module")
def hospitals() -> fb.Federation:
    fed = fb.Federation.from_dir(HOSPITALS, key_bits=512, allow_insecure_key_size=True)
    fed._keys = _KEYS
    return fed


def pooled(fed: fb.Federation, run) -> tuple[pl.DataFrame, np.ndarray | None]:
    """The training rows of every party, pooled (what the centralized reference is fitted on)."""
    parts = [p.compute(partial(local_rows, spec=run._spec)) for p in fed]
    x = pl.concat([x for x, _ in parts], how="vertical_relaxed")
    y = None if parts[0][1] is None else np.concatenate([y for _, y in parts])
    return x, y


def close(a, b, rtol=1e-6, atol=1e-9) -> bool:
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rtol, atol=atol)


def test_linear_regression_equals_pooled(hospitals):
    feats = ["mean_radius", "mean_texture", "mean_perimeter", "worst_radius", "age"]
    run = hospitals.fit(make_pipeline(SimpleImputer(), LinearRegression()), target="mean_area", features=feats)
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), LinearRegression()).fit(x, y)
    assert close(run.model[-1].coef_, ref[-1].coef_) and close(run.model[-1].intercept_, ref[-1].intercept_)
    assert close(run.model[0].statistics_, ref[0].statistics_, rtol=1e-12)
    assert run.model[-1].rank_ == ref[-1].rank_
    assert close(run.model[-1].singular_, ref[-1].singular_)
    assert run.model.score(x, y) == pytest.approx(ref.score(x, y), rel=1e-9)
    assert run.steps[-1].protocol.startswith("exact")


def test_ridge_without_intercept_equals_pooled(hospitals):
    run = hospitals.fit(make_pipeline(SimpleImputer(), Ridge(alpha=5.0, fit_intercept=False)), target="mean_area",
                        features=FEATURES[:4], secure=False)
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), Ridge(alpha=5.0, fit_intercept=False)).fit(x, y)
    assert close(run.model[-1].coef_, ref[-1].coef_) and run.model[-1].intercept_ == 0.0


def test_gaussian_nb_equals_pooled(hospitals):
    run = hospitals.fit(make_pipeline(SimpleImputer(), GaussianNB()), target="diagnosis")
    x, y = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), GaussianNB()).fit(x, y)
    a, b = run.model[-1], ref[-1]
    for attr in ("theta_", "var_", "class_prior_", "class_count_", "epsilon_", "classes_"):
        assert close(getattr(a, attr), getattr(b, attr)), attr
    np.testing.assert_array_equal(run.model.predict(x), ref.predict(x))


def test_scaler_with_missing_values_equals_pooled(hospitals):
    # No imputer: StandardScaler ignores missing values, per column, exactly like scikit-learn.
    feats = ["mean_smoothness", "mean_compactness", "worst_smoothness", "age"]
    run = hospitals.fit(StandardScaler(), features=feats, test_size=0.0)
    x, _ = pooled(hospitals, run)
    ref = StandardScaler().fit(x)
    for attr in ("mean_", "var_", "scale_"):
        assert close(getattr(run.model, attr), getattr(ref, attr)), attr
    np.testing.assert_array_equal(run.model.n_samples_seen_, ref.n_samples_seen_)
    assert np.asarray(run.model.n_samples_seen_).dtype == np.asarray(ref.n_samples_seen_).dtype


def test_imputer_strategies(hospitals):
    run = hospitals.fit(SimpleImputer(strategy="constant", fill_value=-1.0), features=FEATURES, test_size=0.0)
    x, _ = pooled(hospitals, run)
    assert close(run.model.statistics_, SimpleImputer(strategy="constant", fill_value=-1.0).fit(x).statistics_)
    with pytest.raises(UnsupportedEstimatorError, match="median"):
        hospitals.fit(SimpleImputer(strategy="median"), features=FEATURES)


@pytest.mark.parametrize("n_components", [3, 0.9, "mle", None])
def test_pca_equals_pooled(hospitals, n_components):
    run = hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), PCA(n_components=n_components)),
                        features=FEATURES, secure=n_components == 3)
    x, _ = pooled(hospitals, run)
    ref = make_pipeline(SimpleImputer(), StandardScaler(), PCA(n_components=n_components, svd_solver="full")).fit(x)
    a, b = run.model[-1], ref[-1]
    assert a.n_components_ == b.n_components_
    for attr in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_"):
        assert close(getattr(a, attr), getattr(b, attr)), attr
    assert close(a.mean_, b.mean_, atol=1e-12) and close(a.noise_variance_, b.noise_variance_, atol=1e-12)
    assert close(run.model.transform(x), ref.transform(x), atol=1e-9)
    assert a.get_params() == PCA(n_components=n_components).get_params()


def test_kmeans_equals_lloyd_from_the_same_init(hospitals):
    run = hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), KMeans(3, random_state=0)), features=FEATURES)
    x, _ = pooled(hospitals, run)
    pre = make_pipeline(SimpleImputer(), StandardScaler()).fit(x)
    km = run.model[-1]
    ref = KMeans(3, init=km.init_centers_, n_init=1, algorithm="lloyd").fit(pre.transform(x))
    assert close(km.cluster_centers_, ref.cluster_centers_)
    assert km.n_iter_ == ref.n_iter_ and close(km.inertia_, ref.inertia_)
    assert not hasattr(km, "labels_")  # per-row labels stay with the parties
    np.testing.assert_array_equal(run.model.predict(x), ref.predict(pre.transform(x)))
    # The row-free initialisation is as good as k-means++ on this data (within 1 %).
    assert km.inertia_ <= 1.01 * KMeans(3, random_state=0).fit(pre.transform(x)).inertia_


def test_kmeans_explicit_init_and_refused_random_init(hospitals):
    init = np.array([[10.0, 0.1], [20.0, 0.2]])
    run = hospitals.fit(KMeans(2, init=init, n_init=1), features=["mean_radius", "mean_compactness"], test_size=0.0,
                        secure=False)
    x, _ = pooled(hospitals, run)
    ref = KMeans(2, init=init, n_init=1, algorithm="lloyd").fit(x)
    assert close(run.model.cluster_centers_, ref.cluster_centers_)
    with pytest.raises(UnsupportedEstimatorError, match="raw rows"):
        hospitals.fit(KMeans(2, init="random"), features=["mean_radius", "mean_compactness"])


def test_encoders_agree_on_the_union_of_categories(hospitals):
    run = hospitals.fit(OneHotEncoder(drop="if_binary"), features=["sex", "referral"], test_size=0.0)
    x, _ = pooled(hospitals, run)
    ref = OneHotEncoder(drop="if_binary").fit(x)
    assert [list(c) for c in run.model.categories_] == [list(c) for c in ref.categories_]
    assert close(run.model.transform(x).toarray(), ref.transform(x).toarray())
    sets = run.transcript.filter(kind="category-set")
    assert len(sets) == 4 and not any(m.encrypted for m in sets)  # declared leakage: each party's category set
    declared = hospitals.fit(OrdinalEncoder(categories=[["F", "M"]]), features=["sex"], test_size=0.0)
    assert len(declared.transcript.filter(kind="category-set")) == 0
    assert list(declared.model.categories_[0]) == ["F", "M"]


def test_column_transformer_pipeline_is_a_real_fitted_pipeline(hospitals):
    def make():
        ct = make_column_transformer((OneHotEncoder(sparse_output=False), ["sex", "referral"]),
                                     remainder=make_pipeline(SimpleImputer(), StandardScaler()))
        return make_pipeline(ct, LinearRegression())

    run = hospitals.fit(make(), target="mean_area", features=["sex", "referral", *FEATURES[2:]])
    x, y = pooled(hospitals, run)
    ref = make().fit(x, y)
    assert close(run.model[-1].coef_, ref[-1].coef_) and close(run.model[-1].intercept_, ref[-1].intercept_)
    assert close(run.model.predict(x), ref.predict(x))
    ct = run.model[0]
    assert [n for n, _, _ in ct.transformers_] == [n for n, _, _ in ref[0].transformers_]
    assert list(ct.get_feature_names_out()) == list(ref[0].get_feature_names_out())


# -- property tests: the protocols against their plaintext equivalent -----------------------------------
def _parties(data: np.ndarray, sizes: list[int]) -> list[pl.DataFrame]:
    out, i = [], 0
    for s in sizes:
        block = data[i : i + s]
        out.append(pl.DataFrame({f"x{j}": block[:, j] for j in range(block.shape[1] - 1)} | {"y": block[:, -1]}))
        i += s
    return out


def _federation(frames: list[pl.DataFrame]) -> fb.Federation:
    fed = make_fed()
    fed._keys = _KEYS
    for i, df in enumerate(frames):
        fed.add_party(f"p{i}", df)
    return fed


@pytest.mark.filterwarnings("ignore::fedbench.errors.FederatedLearningWarning")
@settings(max_examples=8)
@given(
    sizes=st.lists(st.integers(4, 12), min_size=2, max_size=4),
    d=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    loc=st.floats(-1e3, 1e3),
    scale=st.floats(1e-2, 1e3),
)
def test_exact_protocols_equal_the_plaintext_fit(sizes, d, seed, loc, scale):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    x = loc + scale * rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, d)
    y = x @ rng.normal(size=d) + rng.normal(size=n)
    data = np.hstack([x, y[:, None]])
    fed = _federation(_parties(data, sizes))
    feats = [f"x{j}" for j in range(d)]
    secure = seed % 2 == 0
    lin = fed.fit(LinearRegression(), target="y", features=feats, test_size=0.0, secure=secure)
    ref = LinearRegression().fit(x, y)
    assert close(lin.model.coef_, ref.coef_, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(ref.coef_).max()))
    assert close(lin.model.intercept_, ref.intercept_, rtol=1e-6, atol=1e-6 * (1 + abs(loc)))
    sc = fed.fit(StandardScaler(), features=feats, test_size=0.0, secure=secure)
    ref_sc = StandardScaler().fit(x)
    assert close(sc.model.mean_, ref_sc.mean_, atol=1e-9 * (1 + abs(loc))) and close(sc.model.var_, ref_sc.var_)
    labels = (y > np.median(y)).astype(int)
    if len(set(labels)) == 2:
        data2 = np.hstack([x, labels[:, None]])
        fed2 = _federation(_parties(data2, sizes))
        nb = fed2.fit(GaussianNB(), target="y", features=feats, test_size=0.0, secure=secure)
        ref_nb = GaussianNB().fit(x, labels)
        assert close(nb.model.theta_, ref_nb.theta_, atol=1e-9 * (1 + abs(loc)))
        assert close(nb.model.var_, ref_nb.var_) and close(nb.model.class_prior_, ref_nb.class_prior_)
    if n > d + 1:
        pca = fed.fit(PCA(), features=feats, test_size=0.0, secure=secure)
        ref_pca = PCA(svd_solver="full").fit(x)
        assert close(pca.model.explained_variance_, ref_pca.explained_variance_, atol=1e-9 * scale**2)
