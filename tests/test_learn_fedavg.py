"""FedAvg / FedProx / DP-FedAvg over secure sums: learning, sampling, dropouts and the estimator classes."""

from __future__ import annotations

import itertools
import time
import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Perceptron, SGDClassifier, SGDRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from fedbench.dp import DPConfig
from fedbench.errors import BudgetExceededError, ConfigurationError, DropoutError, UnsupportedEstimatorError
from fedbench.learn import FedAvg, FedAvgClassifier, FedAvgRegressor, FedProx, iid_partition, to_federation

from .conftest import make_fed

_KEYS = make_fed().keys


def federation(df: pl.DataFrame, n: int = 4, seed: int = 0):
    fed = to_federation(iid_partition(df, n, seed=seed), key_bits=512, allow_insecure_key_size=True)
    fed._keys = _KEYS
    return fed


@pytest.fixture(scope="module")
def clf_data() -> pl.DataFrame:
    x, y = make_classification(n_samples=400, n_features=6, n_informative=4, n_clusters_per_class=1, class_sep=1.5,
                               random_state=0)
    return pl.DataFrame({f"x{i}": x[:, i] for i in range(6)}).with_columns(pl.Series("y", y))


@pytest.fixture(scope="module")
def reg_data() -> pl.DataFrame:
    x, y = make_regression(n_samples=400, n_features=5, noise=5.0, random_state=0)
    return pl.DataFrame({f"x{i}": x[:, i] for i in range(5)}).with_columns(pl.Series("y", y / 50.0))


@pytest.mark.parametrize(
    ("estimator", "threshold"),
    [
        (SGDClassifier(loss="log_loss", random_state=0), 0.8),
        (Perceptron(random_state=0), 0.7),
        (MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01, random_state=0), 0.8),
        (LogisticRegression(), 0.8),
    ],
)
def test_classifiers_learn_securely(clf_data, estimator, threshold):
    fed = federation(clf_data)
    run = fed.fit(make_pipeline(StandardScaler(), estimator), target="y", rounds=8,
                  strategy=FedAvg(local_epochs=2))
    assert run.score >= threshold
    assert run.secure and run.transcript.filter(kind="ciphertexts")  # updates went through Paillier
    hist = run.history.filter(pl.col("stage") == run.steps[-1].name)
    assert hist.filter(pl.col("party") == "<global>").height == 8
    assert set(hist["party"].unique()) == {"<global>", *fed.party_names}
    assert run.model.predict(clf_data.drop("y").head(5)).shape == (5,)


@pytest.mark.parametrize(
    "estimator",
    [SGDRegressor(random_state=0),
     MLPRegressor(hidden_layer_sizes=(8,), learning_rate_init=0.01, batch_size=16, random_state=0)],
)
def test_regressors_learn(reg_data, estimator):
    fed = federation(reg_data)
    run = fed.fit(estimator, target="y", strategy=FedAvg(local_epochs=3, rounds=10), secure=False)
    assert run.score > 0.8  # R² on held-out rows


def test_secure_and_plaintext_sums_give_the_same_model(clf_data):
    est = SGDClassifier(loss="log_loss", random_state=0)
    fed = federation(clf_data)
    a = fed.fit(est, target="y", rounds=5)
    b = fed.fit(est, target="y", rounds=5, secure=False)
    # Fixed point with 24 fractional bits: the averages differ by rounding only.
    np.testing.assert_allclose(a.model.coef_, b.model.coef_, atol=1e-5)
    c = fed.fit(est, target="y", rounds=5, secure=False)
    np.testing.assert_array_equal(b.model.coef_, c.model.coef_)  # seeded: reproducible


def test_client_sampling_is_seeded_and_respects_the_minimum(clf_data):
    fed = federation(clf_data, n=6)
    est = SGDClassifier(loss="log_loss", random_state=0)
    runs = [fed.fit(est, target="y", strategy=FedAvg(fraction_fit=0.4), rounds=4, min_parties=3, secure=False, seed=s)
            for s in (1, 1, 2)]

    def chosen(run):
        h = run.history.filter((pl.col("party") != "<global>") & (pl.col("stage") == "model"))
        return [sorted(h.filter(pl.col("round") == r)["party"].to_list()) for r in range(1, 5)]

    assert chosen(runs[0]) == chosen(runs[1]) != chosen(runs[2])
    assert all(len(c) == 3 for c in chosen(runs[0]))  # ceil(0.4 * 6) = 3 = min_parties


def test_dropout_round_completes_with_the_rest(clf_data):
    fed = federation(clf_data, n=4)

    def failure(party: str, rnd: int) -> bool | str:
        if party == "party_1" and rnd == 2:
            raise RuntimeError("node lost")
        return "power cut" if party == "party_2" and rnd in (2, 3) else False

    run = fed.fit(SGDClassifier(loss="log_loss", random_state=0), target="y", rounds=4, failure=failure,
                  min_parties=2, evaluate_every=0)
    fit_failures = [(f.party, f.round, f.kind) for f in run.failures if f.stage == "model"]
    assert fit_failures == [("party_1", 2, "injected"), ("party_2", 2, "injected"), ("party_2", 3, "injected")]
    assert "node lost" in run.failures[0].reason and "power cut" in run.failures[1].reason
    g = run.global_history.filter(pl.col("stage") == "model")
    assert g["n"].to_list()[1] < g["n"].to_list()[0]  # round 2 averaged over the two remaining parties
    rows = run.history.filter((pl.col("round") == 2) & (pl.col("stage") == "model") & (pl.col("party") != "<global>"))
    assert sorted(rows["status"].to_list()) == ["dropped (injected)", "dropped (injected)", "ok", "ok"]
    assert "party_1@2" in repr(run)
    with pytest.raises(DropoutError, match="round 2 kept 1 parties") as exc:
        fed.fit(SGDClassifier(random_state=0), target="y", rounds=3, min_parties=2,
                failure=lambda p, r: r == 2 and p != "party_0")
    assert exc.value.round == 2 and len(exc.value.failures) == 3


def test_slow_party_times_out(clf_data):
    fed = federation(clf_data, n=3)

    def slow(party: str, rnd: int) -> bool:
        if party == "party_0" and rnd == 1:
            time.sleep(0.3)
        return False

    run = fed.fit(SGDClassifier(random_state=0), target="y", rounds=2, failure=slow, party_timeout=0.2,
                  secure=False, evaluate_every=0)
    assert [(f.party, f.round, f.kind) for f in run.failures] == [("party_0", 1, "timeout")]


def test_fedprox_and_its_proximal_pull(clf_data):
    fed = federation(clf_data)
    est = make_pipeline(StandardScaler(), LogisticRegression())
    loose = fed.fit(est, target="y", strategy=FedAvg(local_epochs=5), rounds=1, secure=False)
    tight = fed.fit(est, target="y", strategy=FedProx(proximal_mu=1e3, local_epochs=5), rounds=1, secure=False)
    # A very strong proximal term keeps the first local steps near the initial (zero) model.
    assert np.abs(tight.model[-1].coef_).max() < 0.1 * np.abs(loose.model[-1].coef_).max()
    assert tight.steps[-1].protocol.startswith("FedProx")
    strat = FedAvg(local_epochs=2, fraction_fit=0.5)
    run = fed.fit(SGDClassifier(random_state=0), target="y", strategy=strat, rounds=2, secure=False)
    assert run.steps[-1].protocol.startswith("FedAvg (2 local epochs")


def test_dp_fedavg_reports_epsilon_per_round(clf_data):
    fed = federation(clf_data, n=8)
    dp = DPConfig(noise_multiplier=1.0, clip=1.0, sample_rate=0.5, delta=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = fed.fit(make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)), target="y",
                      strategy=FedAvg(dp=dp), rounds=6)
    g = run.global_history.filter(pl.col("stage") == "sgdclassifier")
    eps = g["epsilon"].to_list()
    assert len(eps) == 6 and all(b > a for a, b in itertools.pairwise(eps))
    assert run.epsilon == pytest.approx(eps[-1], rel=1e-6) and run.delta == 1e-4
    assert g["metric"].null_count() == 6  # no exact evaluation of held-out rows under DP unless asked
    assert "ε" in repr(run)
    with pytest.raises(ConfigurationError, match="delta"):
        fed.fit(SGDClassifier(), target="y", rounds=1, strategy=FedAvg(dp=DPConfig(noise_multiplier=1.0, clip=1.0)))


def test_dp_fedavg_is_charged_to_the_budgets_up_front(clf_data):
    fed = federation(clf_data, n=8)
    fed.set_budget(epsilon=2.0, delta=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(BudgetExceededError, match="dp-fedavg"):
            fed.fit(SGDClassifier(), target="y", rounds=50, strategy=FedAvg(dp=DPConfig(
                noise_multiplier=1.0, clip=1.0, sample_rate=0.5, delta=1e-5)))
        assert len(fed.transcript) == 0  # refused before any data was read or any message sent
        fed.fit(SGDClassifier(), target="y", strategy=FedAvg(rounds=3, dp=DPConfig(
            noise_multiplier=3.0, clip=1.0, sample_rate=0.5, delta=1e-5)))
    spent = fed.budget.summary()["epsilon_spent"].to_list()
    assert all(0 < e < 2.0 for e in spent)


def test_unsupported_fedavg_configurations(clf_data):
    fed = federation(clf_data)
    with pytest.raises(UnsupportedEstimatorError, match="average"):
        fed.fit(SGDClassifier(average=True), target="y")
    with pytest.raises(UnsupportedEstimatorError, match="lbfgs"):
        fed.fit(MLPClassifier(solver="lbfgs"), target="y")
    with pytest.raises(UnsupportedEstimatorError, match="supports fedavg, fedprox"):
        fed.fit(SGDClassifier(), target="y", strategy="newton")


def test_estimator_classes_pass_sklearn_checks():
    for est in (FedAvgClassifier(rounds=3), FedAvgRegressor(rounds=3)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_estimator(est)


def test_estimator_classes_train_across_parties(clf_data):
    x = clf_data.drop("y").to_numpy()
    y = clf_data["y"].to_numpy()
    groups = np.arange(len(y)) % 3
    clf = FedAvgClassifier(rounds=5, key_bits=512, allow_insecure_key_size=True).fit(x, y, parties=groups)
    assert clf.n_parties_ == 3 and clf.score(x, y) > 0.75
    assert set(clf.history_["party"].unique()) >= {"party_0", "party_1", "party_2"}
    import pickle

    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(x), clf.predict(x))


def test_a_strategy_subclass_sees_the_fixed_round_loop(clf_data):
    calls: list[str] = []

    class Traced(FedAvg):
        """FedAvg with server-side momentum, recording the hooks the loop calls."""

        def configure_fit(self, server_round, params, parties, rng):
            calls.append(f"configure_fit:{server_round}")
            return super().configure_fit(server_round, params, parties, rng)

        def aggregate_fit(self, server_round, params, total, party_info, failures):
            calls.append(f"aggregate_fit:{server_round}:{sorted(party_info)}")
            new, metrics = super().aggregate_fit(server_round, params, total, party_info, failures)
            self.velocity = 0.5 * getattr(self, "velocity", 0.0) + (new - params)
            return params + self.velocity, metrics

        def configure_evaluate(self, server_round, params, parties, last):
            calls.append(f"configure_evaluate:{server_round}")
            return super().configure_evaluate(server_round, params, parties, last)

        def aggregate_evaluate(self, server_round, total, ctx):
            calls.append(f"aggregate_evaluate:{server_round}")
            return super().aggregate_evaluate(server_round, total, ctx)

    fed = federation(clf_data, n=3)
    run = fed.fit(make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)), target="y",
                  strategy=Traced(evaluate_every=2), rounds=3, secure=False)
    parties = sorted(fed.party_names)
    assert calls == [
        "configure_fit:1", f"aggregate_fit:1:{parties}", "configure_evaluate:1",
        "configure_fit:2", f"aggregate_fit:2:{parties}", "configure_evaluate:2", "aggregate_evaluate:2",
        "configure_fit:3", f"aggregate_fit:3:{parties}", "configure_evaluate:3", "aggregate_evaluate:3",
    ]
    assert run.score > 0.8
