"""Ray backend: parties as actors placed by resource, failures, equality with the in-process backend.

One local two-node cluster (both nodes on loopback, started with ``ray start``) serves
the whole module: node A advertises ``party:north``, node B ``party:south``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import polars as pl
import pytest

import fedbench as fb
from fedbench.errors import ConfigurationError, PartyUnavailableError

from .conftest import make_fed

# Slow (starts a two-node Ray cluster): left out of the quick loop `pytest -m "not slow"`.
pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the Ray backend is an optional extra ('fedbench[ray]'), in the test extras")
from fedbench.ray_backend import RayBackend, RayParty  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    exe = shutil.which("ray")
    assert exe
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([exe, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false", '--resources={"party:north": 1}', *common],
                   check=True, env=env, capture_output=True, timeout=180)
    try:
        subprocess.run([exe, "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                        '--resources={"party:south": 1}', *common],
                       check=True, env=env, capture_output=True, timeout=180)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([exe, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory, ):
    d = tmp_path_factory.mktemp("parties")
    rng = np.random.default_rng(3)
    for name, n, start in [("north", 30, 0), ("south", 20, 10), ("east", 25, 18)]:
        pl.DataFrame({"id": [f"pt-{i:04d}" for i in range(start, start + n)], "age": rng.integers(20, 90, n),
                      "chol": rng.normal(240, 40, n)}).write_csv(d / f"{name}.csv")
    return d


def _ids(files) -> dict[str, list[str]]:
    return {n: pl.read_csv(files / f"{n}.csv")["id"].to_list() for n in ("north", "south", "east")}


def _local(files) -> fb.Federation:
    f = make_fed()
    for name in ("north", "south", "east"):
        f.add_party(name, files / f"{name}.csv")
    return f


@pytest.fixture(scope="module")
def fed(cluster, files):
    f = make_fed(backend=RayBackend(address=cluster, timeout=30))
    for name in ("north", "south", "east"):
        f.add_party(name, files / f"{name}.csv")
    yield f
    f.close()


def test_parties_are_placed_on_the_node_advertising_them(fed):
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    for name in ("north", "south"):
        party = fed[name]
        assert isinstance(party, RayParty)
        assert f"party:{name}" in nodes[party.node_id]
    assert fed["north"].node_id != fed["south"].node_id
    assert "RayParty 'north'" in repr(fed["north"])


def test_results_equal_the_in_process_backend(fed, files):
    local = _local(files)
    local._keys = fed.keys
    assert fed.secure_sum(["age", "chol"]).value == pytest.approx(local.secure_sum(["age", "chol"]).value)
    a, b = fed.stats(["age", "chol"]), local.stats(["age", "chol"])
    np.testing.assert_allclose(a["std"].to_numpy(), b["std"].to_numpy())
    assert fed.group_counts("age").equals(local.group_counts("age"))
    vec = fed.secure_sum(lambda df: {"v": np.arange(300.0) + df.height}, max_abs=1e6, frac_bits=0)
    np.testing.assert_array_equal(vec.value["v"], 3 * np.arange(300.0) + 75)


def test_party_errors_come_back_clean(fed):
    with pytest.raises(fb.LocalComputationError, match="party 'south'.*ZeroDivisionError"):
        fed.secure_sum(lambda df: {"x": 1 / 0 if df.height == 20 else 1.0})
    with pytest.raises(fb.MissingColumnError, match="party 'north' has no column 'bp'"):
        fed.secure_sum(["bp"])


def test_dataframes_are_refused_paths_required(fed):
    with pytest.raises(ConfigurationError, match="declare parties by file path"):
        fed.add_party("west", pl.DataFrame({"age": [1]}))
    assert "west" not in fed


def test_a_slow_party_times_out(cluster, files):
    backend = RayBackend(address=cluster, timeout=60)  # actor start-up on a busy machine can be slow
    f = make_fed(backend=backend)
    f.add_party("north", files / "north.csv")
    f.add_party("east", files / "east.csv")
    backend.timeout = 2.0

    def slow(df):
        time.sleep(30 if df.height == 25 else 0)
        return {"n": float(df.height)}

    t0 = time.perf_counter()
    with pytest.raises(PartyUnavailableError, match="party 'east' did not answer within 2 s") as err:
        f.secure_sum(slow)
    assert err.value.party == "east"
    assert time.perf_counter() - t0 < 25  # the driver did not wait for the sleeping party
    f.close()


def test_a_killed_actor_is_reported_as_unavailable(cluster, files):
    f = make_fed(backend=RayBackend(address=cluster, timeout=30))
    for name in ("north", "south", "east"):
        f.add_party(name, files / f"{name}.csv")
    ray.kill(f["east"].actor)
    with pytest.raises(PartyUnavailableError, match="party 'east' is unavailable") as err:
        f.secure_sum(["age"])
    assert err.value.party == "east"
    # The others still work without the lost party.
    assert f.secure_sum(["age"], parties=["north", "south"]).value["age"] > 0
    f.close()


def test_federated_training_runs_unchanged_on_ray(fed, files):
    from sklearn.linear_model import LinearRegression

    local = _local(files)
    a = fed.fit(LinearRegression(), target="chol", features=["age"], test_size=0.2, seed=1).model
    b = local.fit(LinearRegression(), target="chol", features=["age"], test_size=0.2, seed=1).model
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9)


def test_steps_of_different_parties_run_concurrently(fed):
    def span(df):
        t0 = time.time()
        time.sleep(1.0)
        return t0, time.time()

    spans = fed.backend.compute_each([(fed[n], span) for n in ("north", "south", "east")])
    assert max(a for a, _ in spans) < min(b for _, b in spans)  # every call was running at one moment


def test_settle_gives_up_on_a_late_party_without_losing_it(fed):
    out = fed.backend.settle([(fed["north"], lambda df: time.sleep(20)), (fed["south"], lambda df: df.height)],
                             timeout=2.0)
    assert out[1].value == 20 and out[1].error is None
    assert out[0].timed_out and isinstance(out[0].error, PartyUnavailableError)
    assert out[0].seconds == pytest.approx(2.0)


def _record(monkeypatch, backend) -> list:
    seen = []
    real = backend.settle

    def settle(calls, **kw):
        out = real(calls, **kw)
        seen.extend(s.value for s in out)
        return out

    monkeypatch.setattr(backend, "settle", settle)
    return seen


def test_psi_runs_in_the_actors_and_no_identifier_reaches_the_driver(fed, files, monkeypatch):
    import pickle

    ids = _ids(files)
    seen = _record(monkeypatch, fed.backend)
    r = fed.intersect("id", mode="cardinality")
    assert r.size == len(set(ids["north"]) & set(ids["south"]) & set(ids["east"]))
    expected = _local(files).intersect("id", mode="cardinality")
    assert r.overlap.equals(expected.overlap)
    assert seen, "PSI steps went through the backend"
    blob = b"".join(pickle.dumps(v) for v in seen)
    assert not [i for v in ids.values() for i in v if i.encode() in blob]
    assert "pt-" not in repr(r)

    rv = fed.intersect("id", mode="reveal", receiver="south", parties=["north", "south"])
    assert sorted(rv.ids["id"].to_list()) == sorted(set(ids["north"]) & set(ids["south"]))
    al = fed.intersect("id", mode="align", parties=["north", "east"])
    assert [ids["north"][i] for i in al.positions["north"]] == [ids["east"][j] for j in al.positions["east"]]


def test_vertical_logistic_regression_equals_the_in_process_run(cluster):
    from sklearn.linear_model import LogisticRegression

    opts = dict(label_party="hospital", target="outcome", on="patient_id", rounds=4, tol=0.0, seed=0)
    ray_fed = make_fed(backend=RayBackend(address=cluster, timeout=60))
    local = make_fed()
    for f in (ray_fed, local):
        for name in ("hospital", "insurer"):
            f.add_party(name, f"data_samples/vertical/{name}.csv")
    local._keys = ray_fed.keys
    a = ray_fed.fit_vertical(LogisticRegression(), **opts)
    b = local.fit_vertical(LogisticRegression(), **opts)
    for p in ("hospital", "insurer"):
        np.testing.assert_allclose(a.coef_by_party[p], b.coef_by_party[p], rtol=1e-6, atol=1e-9)
    with pytest.raises(ConfigurationError, match="rows never leave them"):
        a.compare()
    ray_fed.close()


def test_centralized_baseline_is_not_pooled_from_remote_parties(fed):
    from sklearn.linear_model import LinearRegression

    run = fed.fit(LinearRegression(), target="chol", features=["age"], test_size=0.2, seed=1)
    table = run.compare()
    central = table.filter(pl.col("model") == "centralized")
    assert central["score"][0] is None and "never leave them" in central["note"][0]
    assert table.filter(pl.col("model") == "federated")["score"][0] is not None


def test_dp_releases_charge_the_ledger_on_ray(fed, files):
    fed.set_budget(epsilon=1000.0, delta=1e-6)
    m = fed.mean("age", epsilon=500.0, bounds=(0, 120))
    pooled = pl.concat([pl.read_csv(files / f"{n}.csv") for n in ("north", "south", "east")])
    assert m == pytest.approx(pooled["age"].mean(), abs=1.0)
    for n in ("north", "south", "east"):
        assert fed.budget.spent(n)[0] == pytest.approx(500.0)
    assert fed.history[-1].privacy["noise"] == "distributed"  # each actor added its noise share before encrypting


def test_parties_can_share_a_small_pool_of_actors(cluster, files):
    backend = RayBackend(address=cluster, timeout=60, max_actors=2)
    f = make_fed(backend=backend)
    for name in ("east", "west", "centre"):  # no node advertises these: they share the pool
        f.add_party(name, files / "east.csv")
    f.add_party("north", files / "north.csv")  # placed by its resource: its own actor
    assert len({id(f[n].actor) for n in ("east", "west", "centre")}) == 2
    assert f["east"].actor is f["centre"].actor and f["north"].actor not in (f["east"].actor, f["west"].actor)
    ages = {n: pl.read_csv(files / f"{n}.csv")["age"].sum() for n in ("east", "north")}
    assert f.secure_sum(["age"]).value["age"] == pytest.approx(3 * ages["east"] + ages["north"])
    # Re-declaring a party on the shared actor, then removing another, leaves the rest intact.
    f.add_parties({"east": files / "south.csv"}, replace=True)
    assert f["east"].n_rows == 20
    f.remove_party("centre")
    assert f.count() == 20 + 25 + 30
    with pytest.raises(ConfigurationError, match="max_actors must be a positive integer"):
        RayBackend(max_actors=0)
    f.close()


def test_the_magics_switch_to_ray_with_config(cluster, files):
    from IPython.core.interactiveshell import InteractiveShell

    from fedbench.notebook.registry import REGISTRY

    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext fedbench")
    settings = {"key_bits": 512, "allow_insecure_key_size": True, "backend": "'ray'", "ray_address": f"'{cluster}'",
                "ray_max_actors": 1, "ray_timeout": 60, "federation_name": "'rayfed'", "progress": False}
    for k, v in settings.items():
        assert ip.run_cell(f"%config Fedbench.{k} = {v}").success
    try:
        res = ip.run_cell(f"%%federate\nnorth: {files / 'north.csv'}\neast: {files / 'east.csv'}\n")
        assert res.success, res.error_in_exec
        fed = ip.user_ns["rayfed"]
        assert isinstance(fed.backend, RayBackend) and fed.backend.max_actors == 1
        assert all(isinstance(p, RayParty) for p in fed)
        res = ip.run_cell("%federate stats age --out s")
        assert res.success, res.error_in_exec
        ages = pl.concat([pl.read_csv(files / f"{n}.csv") for n in ("north", "east")])["age"]
        assert ip.user_ns["s"]["mean"][0] == pytest.approx(ages.mean())
    finally:
        for name, fed in zip(REGISTRY.names, REGISTRY.clear(), strict=True):
            ip.user_ns.pop(name, None)
            fed.close()
        for k, v in (("backend", "'inprocess'"), ("ray_address", "''"), ("ray_max_actors", 0),
                     ("federation_name", "'fed'"), ("progress", True)):
            ip.run_cell(f"%config Fedbench.{k} = {v}")


def test_an_actor_dying_mid_training_is_a_dropped_party(cluster, files):
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = make_fed(backend=RayBackend(address=cluster, timeout=30))
    for name in ("north", "south", "east"):
        f.add_party(name, files / f"{name}.csv")

    def kill_east_in_round_2(party: str, rnd: int) -> bool:
        if rnd == 2 and party == "north":
            ray.kill(f["east"].actor)  # the node holding east goes away between two rounds' calls
        return False

    run = f.fit(make_pipeline(StandardScaler(), SGDRegressor(random_state=0)), target="chol", features=["age"],
                strategy="fedavg", rounds=3, min_parties=2, failure=kill_east_in_round_2, evaluate_every=0,
                party_metrics=False)
    assert {(x.party, x.round, x.kind) for x in run.failures} == {("east", 2, "error"), ("east", 3, "error")}
    assert all("party 'east' is unavailable" in x.reason for x in run.failures)
    assert np.isfinite(run.model[-1].coef_).all()
    f.close()


def _failing_init(monkeypatch, exc: Exception) -> tuple[list, list]:
    """Replace ray.init by one that records its options and fails; no Ray instance starts."""
    calls: list = []
    shutdowns: list = []

    def init(*args, **kwargs):
        calls.append(kwargs)
        raise exc

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    return calls, shutdowns


def test_a_local_node_that_fails_to_start_is_a_clear_error_with_a_retry_hint(monkeypatch, tmp_path):
    from fedbench.errors import BackendStartError

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    calls, shutdowns = _failing_init(monkeypatch, Exception(
        "The current node timed out during startup. This could happen because some of the raylet failed "
        "to startup or the GCS has become overloaded.\n" + "raw traceback line\n" * 60))
    csv = tmp_path / "north.csv"
    csv.write_text("age\n40\n")
    fed = fb.Federation(backend=RayBackend())
    with pytest.raises(BackendStartError, match=r"could not start a local Ray instance \(Exception: The current "
                       r"node timed out during startup.*run the cell again.*ray stop --force") as err:
        fed.add_party("north", csv)
    assert isinstance(err.value, fb.FedbenchError)
    assert "raw traceback line" not in str(err.value) and err.value.__suppress_context__
    assert err.value.__cause__ is None and "raw traceback line" in err.value.detail
    assert shutdowns, "a half-started instance is shut down so that the retry can start afresh"
    assert fed.party_names == []  # nothing changed
    # Quiet start-up: errors only from Ray's driver logger, no worker logs, no dashboard, no usage report.
    assert calls[0]["logging_level"] == logging.ERROR and calls[0]["log_to_driver"] is False
    assert calls[0]["include_dashboard"] is False
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_an_unreachable_cluster_names_its_address(monkeypatch, tmp_path):
    from fedbench.errors import BackendStartError

    _failing_init(monkeypatch, ConnectionError("Could not find any running Ray instance."))
    csv = tmp_path / "north.csv"
    csv.write_text("age\n40\n")
    fed = fb.Federation(backend=RayBackend(address="head-node:6379"))
    with pytest.raises(BackendStartError, match=r"could not connect to the Ray cluster at 'head-node:6379' "
                       r"\(ConnectionError: .*ray status --address=head-node:6379.*retry"):
        fed.add_party("north", csv)
