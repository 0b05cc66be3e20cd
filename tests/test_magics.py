"""The %%federate / %fedbench magics, driven through a real IPython InteractiveShell."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import fedbench as fb
from fedbench.errors import NoFederationError
from fedbench.notebook import REGISTRY
from fedbench.notebook.cards import PartiesResult, StatsResult

REPO = Path(__file__).resolve().parents[1]
HOSPITALS = REPO / "data_samples" / "hospitals"
PARTIES_CELL = f"north: {HOSPITALS / 'north.csv'}\nsouth: {HOSPITALS / 'south.csv'}\neast: {HOSPITALS / 'east.csv'}\n"


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    ip = InteractiveShell.instance()
    ip.run_cell("%load_ext fedbench")
    return ip


@pytest.fixture
def ip(shell: InteractiveShell):
    """The shell with test settings (512-bit keys, static figures) and no federation."""
    if "federate" not in shell.magics_manager.magics["line"]:
        fb.load_ipython_extension(shell)
    for line in ("key_bits = 512", "allow_insecure_key_size = True", "figure_backend = 'static'",
                 "verbosity = 'normal'", "federation_name = 'fed'", "progress = True"):
        shell.run_cell(f"%config Fedbench.{line}")
    yield shell
    for name, fed in zip(REGISTRY.names, REGISTRY.clear(), strict=True):
        shell.user_ns.pop(name, None)
        fed.close()
    for var in ("fed", "_federate", "banks", "n", "res", "a", "b", "c", "model"):
        shell.user_ns.pop(var, None)


def run(ip: InteractiveShell, cell: str):
    return ip.run_cell(textwrap.dedent(cell))


def ok(ip: InteractiveShell, cell: str):
    res = run(ip, cell)
    assert res.success, res.error_in_exec or res.error_before_exec
    return res.result


def usage_error(ip: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str) -> str:
    """Run ``cell``, check it failed with one plain UsageError line and no traceback; return the message."""
    capsys.readouterr()
    res = run(ip, cell)
    err = res.error_in_exec or res.error_before_exec
    assert type(err) is UsageError, repr(err)  # a subclass would get a traceback (ipython#14024)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines == [f"UsageError: {err}"], lines
    return str(err)


def declare(ip: InteractiveShell) -> fb.Federation:
    ok(ip, "%%federate\n" + PARTIES_CELL)
    return ip.user_ns["fed"]


# -- the extension ---------------------------------------------------------------------------
def test_load_is_idempotent_and_keeps_settings(ip):
    fb.load_ipython_extension(ip)
    fb.load_ipython_extension(ip)
    instances = [c for c in ip.configurables if type(c).__name__ == "Fedbench"]
    assert len(instances) == 1
    assert instances[0].key_bits == 512  # the settings of the replaced instance survive
    ok(ip, "%reload_ext fedbench")
    assert [c.key_bits for c in ip.configurables if type(c).__name__ == "Fedbench"] == [512]
    assert "federate" in ip.magics_manager.magics["cell"]
    assert {"federate", "fedbench"} <= set(ip.magics_manager.magics["line"])


def test_unload_removes_the_magics(ip, capsys):
    fb.unload_ipython_extension(ip)
    assert "federate" not in ip.magics_manager.magics["line"]
    assert not [c for c in ip.configurables if type(c).__name__ == "Fedbench"]
    fb.load_ipython_extension(ip)
    assert "federate" in ip.magics_manager.magics["line"]


def test_config_traits(ip, caplog):
    ok(ip, "%config Fedbench.backend = 'process'")
    magics = next(c for c in ip.configurables if type(c).__name__ == "Fedbench")
    assert magics.backend == "process"
    ok(ip, "%config Fedbench.backend = 'inprocess'")
    run(ip, "%config Fedbench.key_bits = 1001")  # %config logs the one-line validation error
    assert "Fedbench.key_bits must be an even integer >= 256, got 1001" in caplog.text
    assert magics.key_bits == 512
    run(ip, "%config Fedbench.ray_timeout = 0")
    run(ip, "%config Fedbench.ray_max_actors = -1")
    assert "Fedbench.ray_timeout must be positive, got 0" in caplog.text
    assert "Fedbench.ray_max_actors must be 0 (one actor per party) or more, got -1" in caplog.text
    assert (magics.ray_timeout, magics.ray_max_actors) == (120.0, 0)
    # Choosing Ray builds the backend from the ray_* settings; Ray itself starts with the first party.
    ok(ip, "%config Fedbench.backend = 'ray'")
    ok(ip, "%config Fedbench.ray_address = 'head-node:6379'")
    ok(ip, "%config Fedbench.ray_max_actors = 3")
    backend = magics.federation_options()["backend"]
    assert (type(backend).__name__, backend.address, backend.max_actors) == ("RayBackend", "head-node:6379", 3)
    for line in ("backend = 'inprocess'", "ray_address = ''", "ray_max_actors = 0"):
        ok(ip, f"%config Fedbench.{line}")
    ok(ip, "%config Fedbench")  # lists the settings with their help


def test_insecure_key_size_without_opt_in_is_one_line(ip, capsys):
    ok(ip, "%config Fedbench.allow_insecure_key_size = False")
    msg = usage_error(ip, capsys, "%%federate\n" + PARTIES_CELL)
    assert "InsecureParameterError" in msg and "%config Fedbench" in msg
    assert "fed" not in ip.user_ns and REGISTRY.current is None


# -- parties ---------------------------------------------------------------------------------
def test_parties_cell_creates_then_rerun_is_harmless(ip):
    fed = declare(ip)
    assert isinstance(fed, fb.Federation) and fed.party_names == ["north", "south", "east"]
    assert fed.key_bits == 512
    result = ip.user_ns["_federate"]
    assert isinstance(result, PartiesResult) and result.added == ["north", "south", "east"]
    assert "3 added" in repr(result) and "<table>" in result._repr_html_()
    assert fb.magics.current_federation() is fed
    ok(ip, "%%federate parties\n" + PARTIES_CELL)  # re-running the cell changes nothing
    assert ip.user_ns["_federate"].unchanged == ["north", "south", "east"]
    assert ip.user_ns["fed"] is fed


def test_parties_extend_replace_and_dataframes(ip, capsys):
    fed = declare(ip)
    ip.user_ns["a"] = pl.DataFrame({"age": [30, 40], "chol": [1.0, 2.0]})
    ok(ip, "%%federate\nclinic: a  # a DataFrame variable\n")
    assert fed.party_names[-1] == "clinic" and fed["clinic"].n_rows == 2
    ok(ip, "%%federate\nclinic: a\n")  # same object again: unchanged
    assert ip.user_ns["_federate"].unchanged == ["clinic"]
    ip.user_ns["b"] = pl.DataFrame({"age": [1, 2, 3]})
    msg = usage_error(ip, capsys, "%%federate\nclinic: b\n")
    assert "already exists" in msg and "--replace" in msg
    assert fed["clinic"].n_rows == 2
    ok(ip, "%%federate --replace\nclinic: b\n")
    assert fed["clinic"].n_rows == 3 and ip.user_ns["_federate"].replaced == ["clinic"]
    assert ip.user_ns["_federate"].notes == []


def test_parties_from_dir_line_form_and_named_federation(ip):
    ok(ip, f"%federate parties --dir {HOSPITALS} --fed hosp --out res")
    hosp = ip.user_ns["hosp"]
    assert hosp.party_names == ["east", "north", "south", "west"]
    assert ip.user_ns["res"] is ip.user_ns["_federate"]
    assert REGISTRY.current_name == "hosp"
    ip.user_ns.pop("hosp")


def test_parties_errors_change_nothing(ip, capsys):
    fed = declare(ip)
    msg = usage_error(ip, capsys, "%%federate\nwest: /no/such/file.csv\nother: also/missing.csv\n")
    assert "DataLoadError" in msg and "west" in msg
    assert fed.party_names == ["north", "south", "east"]
    msg = usage_error(ip, capsys, "%%federate\nx = 1\n")
    assert "not 'name: path'" in msg and "%%federate run" in msg
    msg = usage_error(ip, capsys, "%%federate\nwest: a.csv\nwest: b.csv\n")
    assert "declared twice" in msg
    msg = usage_error(ip, capsys, "%%federate\nanalyst: a.csv\n")
    assert "reserved" in msg
    assert "no 'name: path' line" in usage_error(ip, capsys, "%%federate\n# only a comment\n")


def test_parties_name_clash_with_a_variable(ip, capsys):
    ip.user_ns["fed"] = 3
    msg = usage_error(ip, capsys, "%%federate\n" + PARTIES_CELL)
    assert "already holds a int" in msg and "--fed" in msg
    assert ip.user_ns["fed"] == 3


def test_federation_made_in_python_is_adopted(ip):
    fed = fb.Federation(512, allow_insecure_key_size=True)
    fed.add_party("x", pl.DataFrame({"v": [1.0, 2.0]}))
    fed.add_party("y", pl.DataFrame({"v": [3.0]}))
    ip.user_ns["fed"] = fed
    res = ok(ip, "%federate stats v")
    assert res.table["sum"][0] == pytest.approx(6.0)
    assert fb.magics.current_federation() is fed


def test_current_federation_raises_without_one(ip):
    with pytest.raises(NoFederationError):
        fb.magics.current_federation()


# -- run -------------------------------------------------------------------------------------
def test_run_sums_the_last_expression_of_every_party(ip):
    fed = declare(ip)
    res = ok(ip, """\
        %%federate run --out n
        old = df.filter(pl.col("age") > 65)
        {"n": old.height, "rows": df.height, "ages": np.array([old["age"].sum(), 1.0])}
    """)
    frames = [pl.read_csv(HOSPITALS / f"{p}.csv") for p in fed.party_names]
    expected = sum(f.filter(pl.col("age") > 65).height for f in frames)
    assert res.value["n"] == pytest.approx(expected)
    assert res.value["rows"] == pytest.approx(sum(f.height for f in frames))
    assert res.value["ages"][1] == pytest.approx(3.0)
    assert ip.user_ns["n"] is res and ip.user_ns["_federate"] is res
    assert "old" not in ip.user_ns  # assignments stay inside the parties


def test_run_parties_subset_and_user_helpers(ip):
    declare(ip)
    ip.user_ns["threshold"] = 70
    res = ok(ip, '%%federate run --parties north,south\n{"n": df.filter(pl.col("age") > threshold).height}\n')
    assert res.parties == ["north", "south"]
    ip.user_ns.pop("threshold")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ('%%federate run\nx = 1\ny = 1 / 0\n{"x": x}\n', "line 2: ZeroDivisionError"),
        ("%%federate run\nx = 1\n", "must be an expression"),
        ("%%federate run\n{'a': (}\n", "SyntaxError"),
        ("%%federate run\ndf.height\n", "gave a int"),
        ("%%federate run\n   \n", "needs code"),
        ("%federate run", "needs code"),
        ("%%federate run --parties north,nowhere\n{'n': 1}\n", "unknown party 'nowhere'"),
        ("%%federate run --parties north\n{'n': 1}\n", "TooFewPartiesError"),
        ("%%federate run --epsilon 1\n{'n': 1}\n", "--sensitivity"),
        ("%%federate run --delta 0.1\n{'n': 1}\n", "only applies to a DP run"),
        ("%%federate run --epsilon -1 --sensitivity 1\n{'n': 1}\n", "must be positive"),
        ("%%federate run\n{'n': df['sex'].sum()}\n", "party 'north': line 1: InvalidOperationError"),
        ("%%federate run\n{'n': 'many'}\n", "ProtocolError"),
    ],
)
def test_run_errors_are_one_line(ip, capsys, cell, expected):
    declare(ip)
    msg = usage_error(ip, capsys, cell)
    assert expected in msg


def test_dp_run_charges_the_budget_and_refusals_show_in_the_panel(ip, capsys):
    fed = declare(ip)
    msg = usage_error(ip, capsys, "%%federate run --epsilon 0.5 --sensitivity 1\n{'n': df.height}\n")
    assert "BudgetNotSetError" in msg and "%fedbench budget --epsilon" in msg
    panel = ok(ip, "%fedbench budget --epsilon 1 --delta 1e-6")
    assert sorted(fed.budget.parties) == sorted(fed.party_names)
    res = ok(ip, "%%federate run --epsilon 0.6 --sensitivity 1\n{'n': df.height}\n")
    assert res.privacy["epsilon"] == 0.6 and res.value["n"] == pytest.approx(509, abs=60)
    assert fed.budget.spent("north")[0] == pytest.approx(0.6)
    assert panel.figures["spent"].data[0].y[0] == pytest.approx(0.6)  # the open panel refreshed itself
    # A failing cell is caught by the local dry run: no budget is spent.
    usage_error(ip, capsys, "%%federate run --epsilon 0.1 --sensitivity 1\n{'n': 1 / 0}\n")
    assert fed.budget.spent("north")[0] == pytest.approx(0.6)
    msg = usage_error(ip, capsys, "%%federate run --epsilon 0.6 --sensitivity 1\n{'n': df.height}\n")
    assert "BudgetExceededError" in msg and "remaining" in msg
    assert len(fed.budget.refusals) == 1
    assert "Refused requests (1)" in panel.refused.value


# -- stats -----------------------------------------------------------------------------------
def test_stats_matches_plaintext(ip):
    fed = declare(ip)
    res = ok(ip, "%federate stats age mean_radius --out s")
    assert isinstance(res, StatsResult) and ip.user_ns["s"] is res
    pooled = pl.concat([pl.read_csv(HOSPITALS / f"{p}.csv").select("age", "mean_radius") for p in fed.party_names])
    assert res["mean"][0] == pytest.approx(pooled["age"].mean(), rel=1e-9)
    assert res.to_polars()["std"][1] == pytest.approx(pooled["mean_radius"].std(), rel=1e-6)
    assert len(res.runs) == 2 and res.nbytes > 0
    mixed = ok(ip, "%federate stats --parties north,south age --nulls skip mean_radius")
    assert mixed.parties == ["north", "south"] and mixed.table["column"].to_list() == ["age", "mean_radius"]
    assert "Secure statistics" in res._repr_html_() and "age" in repr(res)
    ip.user_ns.pop("s")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%federate stats agee", "MissingColumnError: party 'north' has no column 'agee'"),
        ("%federate stats sex", "NonNumericColumnError"),
        ("%federate stats age --parties north,mars", "unknown party 'mars'"),
        ("%federate stats age --bogus", "unrecognized arguments: --bogus"),
        ("%federate stats age --nulls maybe", "invalid choice"),
        ("%federate stats age --target x", "--target is not an option of 'stats' (it is for: fit)"),
        ("%federate stat age", "did you mean 'stats'"),
        ("%federate stats age --parties a,,b", "empty item"),
        ("%%federate stats age\n1\n", "takes no cell body"),
        ("%federate", "nothing to do"),
        ('%federate stats "age', "check the quotes"),
    ],
)
def test_stats_and_parser_errors_are_one_line(ip, capsys, cell, expected):
    declare(ip)
    assert expected in usage_error(ip, capsys, cell)


def test_empty_cell_body_is_refused_with_a_hint(ip, capsys):
    msg = usage_error(ip, capsys, "%%federate parties\n")
    assert "cell body is empty" in msg and "%federate" in msg


def test_no_federation_yet(ip, capsys):
    msg = usage_error(ip, capsys, "%federate stats age")
    assert "NoFederationError" in msg and "%%federate" in msg
    assert "no federation called 'zz'" in usage_error(ip, capsys, "%federate stats age --fed zz")


# -- psi -------------------------------------------------------------------------------------
@pytest.fixture
def banks(ip):
    ip.user_ns["a"] = pl.DataFrame({"id": [f"c{i}" for i in range(0, 50)], "x": list(range(50))})
    ip.user_ns["b"] = pl.DataFrame({"id": [f"C{i} " for i in range(30, 90)], "x": list(range(60))})
    ip.user_ns["c"] = pl.DataFrame({"id": [f"c{i}" for i in range(40, 120)], "x": list(range(80))})
    ok(ip, "%%federate --fed banks\na: a\nb: b\nc: c\n")
    return ip.user_ns["banks"]


def test_psi_forms(ip, banks, capsys):
    res = ok(ip, "%federate psi --on id --normalize strip,casefold --dashboard")
    assert res.size == 10 and res.mode == "cardinality"
    assert ip.user_ns["_federate"] is res
    res = ok(ip, "%federate psi --on id --mode reveal --receiver a --parties a,b --normalize strip,casefold --out r")
    assert res.size == 20 and res.receiver == "a" and ip.user_ns["r"] is res
    assert ok(ip, "%federate psi --on id --parties a,c").size == 10  # no normalisation needed
    assert "needs the identifier column" in usage_error(ip, capsys, "%federate psi")
    assert "MissingColumnError" in usage_error(ip, capsys, "%federate psi --on nope")
    assert "invalid choice" in usage_error(ip, capsys, "%federate psi --on id --mode everything")
    ip.user_ns.pop("r")


def test_dp_unavailable_degrades_to_one_line(ip, capsys, monkeypatch):
    from fedbench.notebook import availability

    declare(ip)
    monkeypatch.setitem(availability.FEATURES, "dp", ("fedbench._no_dp", "differential privacy budgets"))
    for cell in ("%fedbench budget", "%%federate run --epsilon 1 --sensitivity 1\n{'n': 1}\n"):
        assert "differential privacy budgets is not available" in usage_error(ip, capsys, cell)


def test_psi_unavailable_degrades_to_one_line(ip, banks, capsys, monkeypatch):
    from fedbench.notebook import availability

    monkeypatch.setitem(availability.FEATURES, "psi", ("fedbench._no_such_module", "private set intersection"))
    msg = usage_error(ip, capsys, "%federate psi --on id")
    assert "FeatureUnavailableError: private set intersection is not available" in msg


# -- fit -------------------------------------------------------------------------------------
def _fake_learn(monkeypatch, *, with_fit: bool = True, hook: bool = True) -> types.ModuleType:
    mod = types.ModuleType("fedbench.learn")
    mod.__spec__ = importlib.machinery.ModuleSpec("fedbench.learn", None)
    mod.calls = []

    class Run:
        def __init__(self, history):
            self.history = history
            self.model = "fitted"

        def __repr__(self):
            return "<Run>"

    def rows(rounds):
        for r in range(1, rounds + 1):
            yield {"round": r, "party": "<global>", "loss": 1 / r, "metric": 0.5 + r / 100, "seconds": 0.1,
                   "bytes": 1000 * r}
            yield {"round": r, "party": "north", "loss": 1.5 / r, "metric": 0.4 + r / 100}

    if hook:
        def fit(fed, estimator, *, target, rounds=3, parties=None, callback=None):
            mod.calls.append({"target": target, "rounds": rounds, "estimator": estimator, "parties": parties})
            hist = list(rows(rounds))
            for i in range(0, len(hist), 2):
                if callback is not None:
                    callback({**hist[i], "metric@north": hist[i + 1]["metric"]})
            return Run(pl.DataFrame(hist))
    else:
        def fit(fed, estimator, *, target, rounds=3):
            mod.calls.append({"target": target, "rounds": rounds})
            return Run(pl.DataFrame(list(rows(rounds))))

    if with_fit:
        mod.fit = fit
    monkeypatch.setitem(sys.modules, "fedbench.learn", mod)
    return mod


def test_fit_with_a_per_round_hook_updates_the_dashboard_live(ip, monkeypatch):
    learn = _fake_learn(monkeypatch)
    declare(ip)
    run_ = ok(ip, "%federate fit --target diagnosis --model logistic --rounds 4 --parties north,south --out model")
    assert run_.model == "fitted" and ip.user_ns["model"] is run_
    call = learn.calls[-1]
    assert call["target"] == "diagnosis" and call["rounds"] == 4 and call["parties"] == ["north", "south"]
    assert [type(s).__name__ for _, s in call["estimator"].steps] == [
        "SimpleImputer", "StandardScaler", "LogisticRegression"]
    dash = ip.user_ns["_federate_dashboard"]
    assert len(dash.records) == 4 and dash.progress.value == 4 and dash.progress.bar_style == "success"
    assert list(dash.figures["metric"].data[0].y) == pytest.approx([0.51, 0.52, 0.53, 0.54])
    ip.user_ns.pop("_federate_dashboard")


def test_fit_without_hook_replays_the_history(ip, monkeypatch, capsys):
    _fake_learn(monkeypatch, hook=False)
    declare(ip)
    ip.user_ns["est"] = types.SimpleNamespace(fit=lambda *a: None)
    ok(ip, "%federate fit --target diagnosis --model est --rounds 2")
    dash = ip.user_ns["_federate_dashboard"]
    assert [r.round for r in dash.records] == [1, 2]
    assert dash.records[1].parties["north"]["loss"] == pytest.approx(0.75)
    msg = usage_error(ip, capsys, "%federate fit --target diagnosis --parties north,south")
    assert "takes no 'parties'" in msg
    assert "unknown model 'forest'" in usage_error(ip, capsys, "%federate fit --target d --model forest")
    assert "needs the label column" in usage_error(ip, capsys, "%federate fit")
    ip.user_ns.pop("est")
    ip.user_ns.pop("_federate_dashboard")


@pytest.mark.filterwarnings("ignore:federated newton did not converge")
def test_fit_with_fedbench_learn(ip, capsys):
    declare(ip)
    run_ = ok(ip, "%federate fit --target diagnosis --model logistic --rounds 4")
    assert run_.model is not None and ip.user_ns["_federate"] is run_
    dash = ip.user_ns["_federate_dashboard"]
    assert dash.records and dash.metric.value == run_.metric  # the model's rounds, not the scaler's
    names = [t.name for t in dash.figures["metric"].data]
    assert names[0] == "federated" and {"centralized (baseline)", "local-only (baseline)"} <= set(names)
    assert "Held-out" in dash.comparison.value
    assert not dash.records[-1].parties  # per-party values stay inside the parties by default (audit item 7)
    usage_error(ip, capsys, "%federate fit --target sex --model linear")  # any trainer error: one line
    ip.user_ns.pop("_federate_dashboard")


def test_fit_unavailable_degrades_to_one_line(ip, monkeypatch, capsys):
    declare(ip)
    _fake_learn(monkeypatch, with_fit=False)
    assert "fedbench.learn has no fit()" in usage_error(ip, capsys, "%federate fit --target diagnosis")
    monkeypatch.delitem(sys.modules, "fedbench.learn")
    from fedbench.notebook import availability

    monkeypatch.setitem(availability.FEATURES, "learn", ("fedbench._no_learn", "federated learning"))
    msg = usage_error(ip, capsys, "%federate fit --target diagnosis")
    assert "federated learning is not available" in msg


# -- %fedbench -------------------------------------------------------------------------------
def test_fedbench_status_and_help(ip):
    status = ok(ip, "%fedbench")
    assert "no federation yet" in repr(status)
    declare(ip)
    status = ok(ip, "%fedbench status")
    assert "* fed: 3 parties, 509 rows" in repr(status) and "key_bits=512" in repr(status)
    assert "Fedbench.key_bits" in status._repr_html_()
    helpcard = ok(ip, "%fedbench help")
    for form in ("parties", "run", "stats", "psi", "fit"):
        assert form in repr(helpcard) and form in helpcard._repr_html_()


def test_fedbench_dashboards(ip, capsys):
    fed = declare(ip)
    panel = ok(ip, "%fedbench parties")
    assert list(panel.figures["rows"].data[0].x) == ["north", "south", "east"]
    ip.user_ns["a"] = pl.DataFrame({"age": [50]})
    ok(ip, "%%federate\nclinic: a\n")
    assert list(panel.figures["rows"].data[0].x)[-1] == "clinic"  # watched panels refresh after each magic
    ok(ip, "%federate stats age")
    viewer = ok(ip, "%fedbench transcript --party north --kind ciphertexts")
    assert viewer.filtered.height == 2 and set(viewer.filtered["sender"]) == {"north"}
    keys = ok(ip, "%fedbench keys --static")
    assert keys.figure_backend == "static" and "512-bit Paillier" in keys.header.value
    msg = usage_error(ip, capsys, "%fedbench transcript --kind nonsense")
    assert "ConfigurationError: no message with kind 'nonsense'" in msg
    assert "did you mean 'budget'" in usage_error(ip, capsys, "%fedbench budgte")
    assert "--party is not an option of '%fedbench keys'" in usage_error(ip, capsys, "%fedbench keys --party x")
    assert "--delta needs --epsilon" in usage_error(ip, capsys, "%fedbench budget --delta 0.1")
    assert fed.transcript.nbytes > 0


def test_fedbench_reset(ip):
    fed = declare(ip)
    notice = ok(ip, "%fedbench reset")
    assert "forgot fed" in repr(notice) and "fed" not in ip.user_ns and REGISTRY.current is None
    assert fed.party_names  # the object itself is untouched
    declare(ip)
    ok(ip, f"%federate parties --dir {HOSPITALS} --fed hosp")
    ok(ip, "%fedbench reset --all")
    assert REGISTRY.names == [] and "hosp" not in ip.user_ns


def test_quiet_verbosity_stores_without_showing(ip):
    declare(ip)
    ok(ip, "%config Fedbench.verbosity = 'quiet'")
    res = run(ip, "%federate stats age")
    assert res.success and res.result is None
    assert isinstance(ip.user_ns["_federate"], StatsResult)


def test_verbose_shows_the_run_transcript(ip, capsys):
    declare(ip)
    ok(ip, "%config Fedbench.verbosity = 'verbose'")
    capsys.readouterr()
    ok(ip, "%%federate run\n{'n': df.height}\n")
    assert "<Transcript:" in capsys.readouterr().out


def test_import_fedbench_stays_light():
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import fedbench\n"
        "elapsed = time.perf_counter() - t\n"
        "heavy = ('ipywidgets', 'plotly', 'IPython', 'sklearn', 'anywidget', 'traitlets')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "import fedbench.magics, fedbench.widgets, fedbench.notebook\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "print(elapsed)\n"
    )
    # Deterministic: which modules got imported, not how long it took (the time is only printed).
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    after_fedbench, after_front_end, elapsed = out.stdout.splitlines()
    assert after_fedbench == "[]" and after_front_end == "[]", out.stdout
    print(f"import fedbench: {float(elapsed) * 1000:.1f} ms")
