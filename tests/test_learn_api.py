"""fed.fit: bad input gives clear errors; results are real estimators and never show raw rows."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

import fedbench as fb
from fedbench.errors import (
    ConfigurationError,
    FederatedLearningWarning,
    MissingColumnError,
    NonNumericColumnError,
    NullValuesError,
    TooFewPartiesError,
    UnsupportedEstimatorError,
)
from fedbench.learn import SUPPORTED, FitRun
from fedbench.learn.engine import HISTORY_SCHEMA

from .conftest import make_fed

_KEYS = make_fed().keys


@pytest.fixture(scope="module")
def hospitals() -> fb.Federation:
    fed = fb.Federation.from_dir("data_samples/hospitals", key_bits=512, allow_insecure_key_size=True, audit=True)
    fed._keys = _KEYS
    return fed


@pytest.fixture(scope="module")
def run(hospitals) -> FitRun:
    return hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()), target="diagnosis",
                         test_size=0.3, seed=0)


def small_fed(frames: dict[str, pl.DataFrame], **kw) -> fb.Federation:
    fed = make_fed(**kw)
    fed._keys = _KEYS
    for name, df in frames.items():
        fed.add_party(name, df)
    return fed


def test_run_is_an_ordinary_fitted_estimator(hospitals, run):
    df = pl.read_csv("data_samples/hospitals/north.csv")
    x = df.select(run.features)
    proba = run.model.predict_proba(x)
    assert proba.shape == (df.height, 2) and np.allclose(proba.sum(axis=1), 1)
    assert run.model.score(x, df["diagnosis"].to_numpy()) > 0.9
    again = pickle.loads(pickle.dumps(run.model))
    np.testing.assert_array_equal(again.predict(x), run.model.predict(x))
    assert list(run.model.feature_names_in_) == run.features
    restored = pickle.loads(pickle.dumps(run))  # the federation (and its rows) stays behind
    assert restored._fed is None and restored.history.equals(run.history)
    with pytest.raises(ConfigurationError, match="unpickled"):
        restored.compare(metric="log_loss")
    assert hospitals.history[-1] is run or run in hospitals.history


def test_history_comparison_and_plot(run):
    assert run.history.schema == pl.Schema(HISTORY_SCHEMA)
    g = run.global_history
    assert g["stage"].to_list()[:4] == ["setup", "simpleimputer", "standardscaler", "standardscaler"]
    per_party = run.history.filter((pl.col("party") != "<global>") & (pl.col("stage") == "logisticregression"))
    assert set(per_party["party"]) == set(run.parties)
    # Each party's own loss and metric stay inside it unless party_metrics=True; the global loss is released.
    assert per_party.select(pl.col("loss", "metric", "n").null_count().sum()).row(0) == (per_party.height,) * 3
    assert g.filter(pl.col("stage") == "logisticregression")["loss"].null_count() == 0
    assert (g["bytes"].drop_nulls() > 0).all()
    tab = run.compare()
    assert tab.columns == ["model", "trained_on", "score", *run.parties, "note"]
    assert tab.filter(pl.col("model") == "centralized")["trained_on"].item().endswith("(simulation only)")
    ll = run.compare(metric="log_loss")
    assert ll.filter(pl.col("model") == "federated")["score"].item() < 0.2
    fig = run.plot()
    assert type(fig).__name__ == "Figure" and len(fig.data) == tab.height
    assert type(run.plot("history")).__name__ == "Figure"


def test_displays_never_show_raw_rows(hospitals, run):
    run.compare()
    df = pl.read_csv("data_samples/hospitals/west.csv")
    text = repr(run) + run._repr_html_()
    assert "Is collaboration worth it?" in run._repr_html_() and "federated=" in repr(run)
    for pid in df["patient_id"].head(20):
        assert pid not in text
    raw = {f"{v}" for v in df["mean_radius"].drop_nulls().head(20).to_list()}
    assert not any(f">{v}<" in text or f" {v} " in text for v in raw)
    # No message of the training protocol carries a party's raw value of a feature in the clear.
    plain = [m.payload for m in run.transcript if not m.encrypted and m.payload is not None]
    needle = np.asarray(df["mean_area"].drop_nulls().to_numpy()[:5], dtype="<f8").tobytes()[:8]
    assert all(needle not in p for p in plain)


def test_bad_input_errors_name_party_and_column():
    rng = np.random.default_rng(0)

    def frame(n: int, **extra) -> pl.DataFrame:
        base = {"a": rng.normal(size=n), "b": rng.normal(size=n), "y": np.arange(n) % 2}
        return pl.DataFrame(base | extra)

    fed = small_fed({"north": frame(30), "south": frame(30).drop("y")})
    with pytest.raises(MissingColumnError, match="party 'south' has no target column 'y'") as exc:
        fed.fit(LogisticRegression(), target="y")
    assert exc.value.party == "south" and exc.value.column == "y"
    fed = small_fed({"north": frame(30, c=["x"] * 30), "south": frame(30, c=["z"] * 30)})
    with pytest.raises(NonNumericColumnError, match="'c'.*encoder") as exc:
        fed.fit(LogisticRegression(), target="y", features=["a", "c"])
    assert exc.value.column == "c"
    holes = frame(30).with_columns(pl.when(pl.col("a") > 1).then(None).otherwise(pl.col("a")).alias("a"))
    fed = small_fed({"north": frame(30), "south": holes})
    with pytest.raises(NullValuesError, match="party 'south'.*'a'.*SimpleImputer") as exc:
        fed.fit(LogisticRegression(), target="y")
    assert exc.value.party == "south"
    with pytest.raises(NullValuesError, match="party 'south': 'a' has missing values") as exc:
        fed.fit(make_pipeline(StandardScaler(), LogisticRegression()), target="y")  # a later step finds them
    assert exc.value.column == "a"
    with pytest.raises(UnsupportedEstimatorError) as exc:
        fed.fit(RandomForestClassifier(), target="y")
    for name in ("LogisticRegression", "SGDClassifier", "GaussianNB", "KMeans", "MLPClassifier"):
        assert name in str(exc.value) and name in SUPPORTED
    with pytest.raises(UnsupportedEstimatorError, match="MinMaxScaler"):
        fed.fit(make_pipeline(MinMaxScaler(), LogisticRegression()), target="y")
    with pytest.raises(ConfigurationError, match="target="):
        fed.fit(LogisticRegression())
    fed2 = small_fed({"north": frame(30, s=["x"] * 30), "south": frame(30, s=["z"] * 30)})
    with pytest.raises(NonNumericColumnError, match="target 's' is string, not numeric"):
        fed2.fit(make_pipeline(SimpleImputer(), LinearRegression()), target="s")
    with pytest.raises(TooFewPartiesError, match="at least 2 parties"):
        fed.fit(make_pipeline(SimpleImputer(), LogisticRegression()), target="y", parties=["north"])
    one = fed.fit(make_pipeline(SimpleImputer(), LogisticRegression()), target="y", parties=["north"], secure=False)
    assert one.model.score(frame(10).select("a", "b"), np.arange(10) % 2) >= 0
    with pytest.raises(ConfigurationError, match="test_size"):
        fed.fit(LogisticRegression(), target="y", test_size=1.5)


def test_single_class_party_warns_and_its_baseline_is_null():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 2))
    y = (x[:, 0] + 0.3 * rng.normal(size=90) > 0).astype(int)
    frames = {"a": pl.DataFrame({"u": x[:40, 0], "v": x[:40, 1], "y": y[:40]}),
              "b": pl.DataFrame({"u": x[40:80, 0], "v": x[40:80, 1], "y": y[40:80]}),
              "c": pl.DataFrame({"u": np.abs(x[80:, 0]) + 1, "v": x[80:, 1], "y": np.ones(10, dtype=int)})}
    fed = small_fed(frames)
    with pytest.warns(FederatedLearningWarning, match="party 'c' holds only class 1"):
        run = fed.fit(LogisticRegression(), target="y")
    assert run.single_class_parties == {"c": 1}
    tab = run.compare()
    row = tab.filter(pl.col("model") == "local:c")
    assert row["score"].item() is None and "single class" in row["note"].item()
    assert tab.filter(pl.col("model") == "federated")["score"].item() > 0.7


def test_categorical_columns_with_an_encoder(hospitals):
    ct = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["sex", "referral"]),
                                 remainder=make_pipeline(SimpleImputer(), StandardScaler()))
    run = hospitals.fit(make_pipeline(ct, SGDClassifier(loss="log_loss", random_state=0)), target="diagnosis",
                        rounds=5)
    assert {"sex", "referral"} <= set(run.features) and "patient_id" not in run.features
    assert run.score > 0.85
    df = pl.read_csv("data_samples/hospitals/east.csv")
    assert run.model.predict(df.select(run.features)).shape == (df.height,)


def test_unsupervised_and_transformer_runs(hospitals):
    feats = ["mean_radius", "mean_compactness", "worst_symmetry"]
    km = hospitals.fit(make_pipeline(StandardScaler(), KMeans(2, random_state=0)), features=feats, target="diagnosis")
    assert km.target is None and "diagnosis" not in km.features
    tab = km.compare()
    assert tab["model"].to_list()[-2:] == ["federated", "centralized"]
    sc = hospitals.fit(StandardScaler(), features=feats)
    with pytest.raises(ConfigurationError, match="no score"):
        sc.compare()
    assert sc.metric is None and "StandardScaler" in repr(sc)


def test_convergence_warning_when_rounds_run_out(hospitals):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
                            target="diagnosis", rounds=2, secure=False)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert run.steps[-1].converged is False and "NOT converged" in repr(run)


def test_per_round_callback_feeds_the_training_dashboard(hospitals):
    from fedbench.widgets.training import TrainingDashboard

    records = []
    dash = TrainingDashboard(rounds=4)
    hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), SGDClassifier(random_state=0)),
                  target="diagnosis", rounds=4, secure=False, callback=lambda rec: (records.append(rec), dash(rec)))
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) >= {"round", "seconds", "nbytes", "loss", "accuracy", "parties"}
    assert records[-1]["parties"] == {}  # per-party values stay inside the parties by default
    assert len(dash.records) == 4
    opted = hospitals.fit(make_pipeline(SimpleImputer(), StandardScaler(), SGDClassifier(random_state=0)),
                          target="diagnosis", rounds=2, secure=False, party_metrics=True,
                          callback=lambda rec: (records.append(rec), dash(rec)))
    assert set(records[-1]["parties"]) == set(opted.parties)
    assert opted.transcript.filter(kind="party-metrics")  # the opt-in release is on the record


def test_round_results_stay_with_their_parties_until_the_secure_sum():
    """Phase 1 of a round hands the driver a token, never the update to be summed."""
    import numpy as np
    import polars as pl

    from fedbench.learn.engine import Session, Stashed

    from .conftest import make_fed

    fed = make_fed()
    for i in range(3):
        fed.add_party(f"p{i}", pl.DataFrame({"x": [float(i)] * 4}))
    session = Session(fed, list(fed), secure=True)

    def step(df):
        return {"sum": {"update": np.full(3, df["x"][0])}, "party": {"n": df.height}}

    results, failures, _ = session.run_local(fed.party_names, step, round=1, stage="t")
    assert not failures
    assert all(isinstance(r["sum"], Stashed) for r in results.values())
    assert all("party" not in r for r in results.values())  # the party's own values stayed with it
    total, _ = session.sum_held({n: r["sum"] for n, r in results.items()}, encoding=fed.encoding, protocol="fit")
    np.testing.assert_allclose(total["update"], np.full(3, 3.0))
