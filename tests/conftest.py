from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, settings

import fedbench as fb

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.load_profile("ci")

#: Small keys keep the suite fast; production code refuses them without this explicit opt-in.
TEST_KEY_BITS = 512


@pytest.fixture(autouse=True, scope="session")
def _ledger_key_outside_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # The ledger key and head records go to a throw-away folder, never the user's ~/.config.
    old = os.environ.get("FEDBENCH_CONFIG_DIR")
    os.environ["FEDBENCH_CONFIG_DIR"] = str(tmp_path_factory.mktemp("fedbench-config"))
    yield
    if old is None:
        os.environ.pop("FEDBENCH_CONFIG_DIR", None)
    else:
        os.environ["FEDBENCH_CONFIG_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def _openfhe_interpreter() -> None:
    # The README's test command must work on a fresh machine: the multiparty CKKS tests (and tutorial 02)
    # need a CPython 3.10 with OpenFHE; make it once (~/.fedbench-openfhe) if none is found. Without any
    # CPython 3.10 those tests fail with fedbench's set-up instructions.
    from fedbench.errors import FeatureUnavailableError
    from fedbench.secagg import openfhe_engine

    try:
        openfhe_engine.openfhe_python()
    except FeatureUnavailableError:
        if openfhe_engine.find_python310() is not None and not os.environ.get(openfhe_engine.ENV_VAR):
            with contextlib.suppress(FeatureUnavailableError):  # then those tests fail, naming the cause
                openfhe_engine.install_openfhe()


@pytest.fixture(autouse=True)
def _default_ledgers_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Federations made without ledger_path persist by default: one fresh folder per test, not the repo.
    monkeypatch.setenv("FEDBENCH_LEDGER_DIR", str(tmp_path_factory.mktemp("ledgers")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # nbmake's notebook items carry no marks of their own: mark them slow so that the quick loop
    # `pytest -m "not slow"` skips the notebooks while the plain `pytest` (CI) still runs them.
    for item in items:
        if type(item).__name__ == "NotebookItem" or str(getattr(item, "path", "")).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)


class _NotebooksRunInTheBrowser:
    """Leave out nbmake's run of a notebook that a selected browser test runs in full anyway.

    A browser test marked ``@pytest.mark.notebook(name)`` runs every cell of that
    tutorial in JupyterLab and fails on the first error output, so nbmake's second
    run of it only costs time (minutes of the CI budget).  Runs after ``-m``/``-k``
    deselection (``trylast``): with the browser tests left out, nbmake runs every
    notebook.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        in_browser = {m.args[0] for item in items for m in item.iter_markers("notebook")}
        if not in_browser:
            return
        kept, dropped = [], []
        for item in items:
            nb = type(item).__name__ == "NotebookItem" and getattr(item, "path", None)
            (dropped if nb and nb.name in in_browser else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_NotebooksRunInTheBrowser(), "fedbench-notebooks-run-in-the-browser")


def make_fed(**kwargs) -> fb.Federation:
    kwargs.setdefault("allow_insecure_key_size", True)
    kwargs.setdefault("ledger_path", ":memory:")  # tests that care about persistence pass their own
    return fb.Federation(kwargs.pop("key_bits", TEST_KEY_BITS), **kwargs)


@pytest.fixture
def hospitals() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(7)
    out = {}
    for name, n in [("north", 40), ("south", 25), ("east", 60)]:
        df = pl.DataFrame(
            {
                "age": rng.integers(18, 95, n),
                "chol": rng.normal(240, 45, n).round(1),
                "sex": rng.choice(["f", "m"], n),
                "smoker": rng.random(n) < 0.3,
            }
        )
        # A few missing cholesterol readings, as in real hospital files.
        df = df.with_columns(pl.when(pl.col("age") % 11 == 0).then(None).otherwise(pl.col("chol")).alias("chol"))
        out[name] = df
    return out


@pytest.fixture
def fed(hospitals) -> fb.Federation:
    f = make_fed(audit=True)
    for name, df in hospitals.items():
        f.add_party(name, df)
    return f
