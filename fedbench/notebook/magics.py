"""The ``%%federate`` and ``%fedbench`` magics (``%load_ext fedbench``).

``%%federate`` declares parties, runs code inside every party, and maps the
``stats``, ``psi`` and ``fit`` forms onto the Python API; ``%fedbench`` shows
the dashboards and the session's state.  Run ``%fedbench help`` for the
grammar and ``%federate?`` for every option.

Errors: every fedbench error (and every mistake in a magic line) is shown as
one ``UsageError`` line without a traceback.  IPython hides tracebacks only for
``UsageError`` itself, not its subclasses (ipython#14024), so the conversion
produces plain ``UsageError`` objects; the Python API keeps raising the
original exceptions.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..backend import run_local_function
from ..errors import (
    BudgetNotSetError,
    ConfigurationError,
    DataLoadError,
    FedbenchError,
    InsecureParameterError,
    LocalComputationError,
    SchemaWarning,
)
from .availability import FEATURES, available, require
from .cards import HelpCard, Notice, PartiesResult, StatsResult, StatusCard
from .command import FORMS, SUBCOMMANDS, FedbenchCommand, FederateCommand, compile_cell, parse_parties_body
from .config import FedbenchConfig
from .registry import REGISTRY

if TYPE_CHECKING:
    from ..federation import Federation

__all__ = ["EXAMPLES", "MODELS", "Fedbench", "load_ipython_extension", "unload_ipython_extension"]

F = TypeVar("F", bound=Callable[..., Any])

#: One example per form (shown by ``%fedbench help``).
EXAMPLES: dict[str, str] = {
    "parties": "%%federate  ⏎  north: data_samples/hospitals/north.csv  ⏎  south: data_samples/hospitals/south.csv",
    "run": "%%federate run --out n_old  ⏎  old = df.filter(pl.col('age') > 65)  ⏎  {'n': old.height}",
    "stats": "%federate stats age mean_radius",
    "psi": "%federate psi --on customer_id --mode cardinality",
    "fit": "%federate fit --target diagnosis --model logistic --rounds 20",
}

#: ``--model`` names: (module, class, keyword arguments); each is trained after a mean imputer and a
#: standard scaler (``fedbench.learn`` fits both federatedly), so files with missing cells work as they are.
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "logistic": ("sklearn.linear_model", "LogisticRegression", {"max_iter": 1000}),
    "sgd": ("sklearn.linear_model", "SGDClassifier", {"loss": "log_loss"}),
    "linear": ("sklearn.linear_model", "LinearRegression", {}),
    "ridge": ("sklearn.linear_model", "Ridge", {}),
    "sgd-regressor": ("sklearn.linear_model", "SGDRegressor", {}),
    "mlp": ("sklearn.neural_network", "MLPClassifier", {"max_iter": 500}),
}

_RUN_FILE = "<%%federate run>"
# Names of a per-round hook the trainer may accept, most specific first.
_HOOKS = ("callback", "on_round", "progress")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(line.rstrip(".;") if i < len(lines) - 1 else line for i, line in enumerate(lines))


def explain(exc: FedbenchError) -> str:
    """One line for a fedbench error shown by a magic: the error's message plus how to fix it in a notebook."""
    if isinstance(exc, BudgetNotSetError):
        party = f"party {exc.party!r}" if exc.party else "a party"
        return (f"BudgetNotSetError: {party} has no privacy budget; set one with "
                "%fedbench budget --epsilon 1 --delta 1e-6")
    text = _one_line(exc)
    if isinstance(exc, InsecureParameterError):
        text += " (in a notebook: %config Fedbench.key_bits = 2048, or %config Fedbench.allow_insecure_key_size = True)"
    return f"{type(exc).__name__}: {text}"


def _usage_errors(method: F) -> F:
    """Turn fedbench errors into one plain ``UsageError`` line, and refresh live dashboards either way."""

    @functools.wraps(method)
    def wrapper(self: Fedbench, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FedbenchError as exc:
            raise UsageError(explain(exc)) from None
        finally:
            # Also after a failure: a refused DP request must show up in an open budget panel.
            REGISTRY.refresh(REGISTRY.current)

    return wrapper  # type: ignore[return-value]


def _cell_line(exc: BaseException) -> int | None:
    """Line of the run cell where ``exc`` was raised (innermost frame of the cell)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _RUN_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _local_function(head: CodeType | None, tail: CodeType, base: Mapping[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """The function run inside each party: the cell's statements, then its last expression."""
    import numpy as np
    import polars as pl

    def local(df: Any) -> dict[str, Any]:
        # A fresh copy of the namespace per party: assignments stay inside the party.
        ns = {"pl": pl, "np": np, **base, "df": df}
        failure: LocalComputationError | None = None
        try:
            if head is not None:
                exec(head, ns)
            value = eval(tail, ns)
        except FedbenchError:
            raise
        except Exception as exc:
            # Line and type only: the exception's own text may quote the party's data, and it leaves the party.
            where = _cell_line(exc)
            failure = LocalComputationError(
                f"{'line ' + str(where) + ': ' if where else ''}{type(exc).__name__}",
                original_type=type(exc).__name__,
            )
        if failure is not None:
            raise failure
        if not isinstance(value, Mapping):
            raise LocalComputationError(
                f"the last expression gave a {type(value).__name__}; end the cell with a dict of numbers or "
                "arrays, e.g. {'n': df.height}"
            )
        return dict(value)

    return local


def _source_key(source: Any) -> str:
    return source if isinstance(source, str) else f"<object {id(source)}>"


@magics_class
class Fedbench(Magics, FedbenchConfig):
    """The fedbench magics: ``%%federate`` (line twin ``%federate``) and ``%fedbench``.

    Settings are traits of this class: ``%config Fedbench`` lists them,
    ``%config Fedbench.key_bits = 2048`` sets one.

    Parameters
    ----------
    shell : InteractiveShell
        The IPython shell to register on.
    """

    # -- namespace and federations --------------------------------------------------------
    @property
    def user_ns(self) -> dict[str, Any]:
        """The user namespace of the shell."""
        if self.shell is None:  # only a hand-built instance lacks one; load_ipython_extension always passes it
            raise ConfigurationError("the fedbench magics are not attached to an IPython shell; run %load_ext fedbench")
        return self.shell.user_ns

    def _resolve(self, name: str | None, *, create: bool = False) -> tuple[str, Federation | None]:
        """(name, federation) for ``--fed name`` (default: the current one); ``None`` if it must be created."""
        from ..federation import Federation

        ns = self.user_ns
        REGISTRY.sync(ns, self.federation_name)
        explicit = name is not None
        if name is None:
            if REGISTRY.current is not None:
                return REGISTRY.current_name, REGISTRY.current  # type: ignore[return-value]
            name = self.federation_name
        if name in REGISTRY:
            return name, REGISTRY.use(name)
        value = ns.get(name)
        if isinstance(value, Federation):
            REGISTRY.set(name, value)
            return name, value
        if not create:
            REGISTRY.get(name if explicit else None)  # raises NoFederationError saying what to do
        if value is not None:
            raise UsageError(
                f"variable {name!r} already holds a {type(value).__name__}; choose another name with --fed NAME"
            )
        return name, None

    def _federation(self, name: str | None) -> Federation:
        fed = self._resolve(name)[1]
        assert fed is not None  # _resolve raises when there is none and create is False
        return fed

    def _finish(self, result: Any, out: str | None) -> Any:
        """Store ``result`` as ``_federate`` (and ``out``) and return what the cell should show."""
        self.user_ns["_federate"] = result
        if out is not None:
            self.user_ns[out] = result
        if self.verbosity == "quiet":
            return None
        if self.verbosity == "verbose":
            run = getattr(result, "transcript", None)  # secure sums, PSI and training runs carry theirs
            if run is not None:
                from IPython.display import display

                display(run)
        return result

    def _progress(self, total: int, description: str) -> Any:
        from ..widgets.progress import Progress

        return Progress(total, description, enabled=None if self.progress else False)

    # -- %%federate -----------------------------------------------------------------------
    @line_cell_magic
    @magic_arguments()
    @argument("form", nargs="?", default=None, help="What to do: " + "; ".join(f"{k}: {v}" for k, v in FORMS.items()))
    @argument("items", nargs="*", help="stats: the columns (default: every shared numeric column).")
    @argument("--fed", metavar="NAME", help="Federation (a variable name) to use or create; default: the current "
              "one, else Fedbench.federation_name ('fed').")
    @argument("--parties", metavar="A,B", help="run/stats/psi/fit: the parties taking part (default: all).")
    @argument("--out", metavar="NAME", help="Also store the result in this variable (it is always in _federate).")
    @argument("--dir", metavar="FOLDER", help="parties: one party per data file of FOLDER (name = file stem).")
    @argument("--replace", action="store_true", default=False,
              help="parties: re-read parties that already exist instead of refusing.")
    @argument("--null-values", metavar="A,B", help="parties: cell texts that mean 'missing' in every file "
              "(e.g. ?,NA), read as nulls so that numeric columns stay numeric.")
    @argument("--epsilon", type=float, metavar="E",
              help="run: release the sums with epsilon-DP noise (needs --sensitivity and a budget); "
              "fit: DP training, if the trainer supports it.")
    @argument("--sensitivity", type=float, metavar="S",
              help="run with --epsilon: how much one person's row can change the summed outputs (L1 norm). "
              "Declared, not checked.")
    @argument("--delta", type=float, metavar="D", help="run with --epsilon and --mechanism gaussian: the delta.")
    @argument("--mechanism", choices=["laplace", "gaussian"], help="run with --epsilon: noise distribution "
              "(default laplace; the sensitivity is L1 for Laplace, L2 for Gaussian).")
    @argument("--noise", choices=["distributed", "central"], help="run with --epsilon: each party adds a share of "
              "the noise before encrypting (default), or the key holder adds it after decrypting.")
    @argument("--max-abs", type=float, metavar="X",
              help="run: largest magnitude of any party's local result (fixed-point range).")
    @argument("--nulls", choices=["skip", "error"], help="stats: skip and count nulls (default), or fail on one.")
    @argument("--on", metavar="COL[,COL]", help="psi: identifier column(s); several form a composite key.")
    @argument("--mode", choices=["cardinality", "reveal", "align"],
              help="psi: what parties learn: the size only (default), the shared ids (receiver), or row pairs.")
    @argument("--receiver", metavar="PARTY", help="psi: the party that learns the shared identifiers (reveal).")
    @argument("--normalize", metavar="STEPS", help="psi: normalisation steps of string ids, e.g. strip,casefold "
              "or email.")
    @argument("--cast", choices=["string"], help="psi: compare the key columns' text across differing types.")
    @argument("--target", metavar="COL", help="fit: the label column.")
    @argument("--model", metavar="NAME", help="fit: " + ", ".join(MODELS) + " (default logistic), or a variable "
              "holding a scikit-learn estimator.")
    @argument("--rounds", type=int, metavar="N", help="fit: training rounds.")
    @argument("--features", metavar="A,B", help="fit: feature columns (default: the trainer's choice).")
    @argument("--dashboard", action=argparse.BooleanOptionalAction, default=None,
              help="parties/psi: also show the dashboard; fit: live training dashboard (on by default).")
    @_usage_errors
    def federate(self, line: str = "", cell: str | None = None) -> Any:
        """Declare parties, run code inside every party, or run a protocol across them.

        See ``%fedbench help`` for the forms, with examples.
        """
        cmd = FederateCommand.parse(self.federate, line, cell)
        return getattr(self, f"_form_{cmd.form}")(cmd)

    def _form_parties(self, cmd: FederateCommand) -> Any:
        from ..federation import Federation
        from ..party import FORMATS

        entries: list[tuple[str, Any]] = []
        if cmd.args.dir is not None:
            folder = Path(cmd.args.dir).expanduser()
            if not folder.is_dir():
                raise DataLoadError(f"no such folder: {folder}")
            files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FORMATS)
            if not files:
                raise DataLoadError(f"no data files ({', '.join(sorted(FORMATS))}) in {folder}")
            entries += [(f.stem, str(f)) for f in files]
        for line in parse_parties_body(cmd.body):
            # 'name: variable' takes a polars/pandas DataFrame from the namespace; anything else is a path.
            value = self.user_ns.get(line.source) if line.source.isidentifier() else None
            is_frame = type(value).__name__ == "DataFrame" and type(value).__module__.split(".")[0] in (
                "polars", "pandas")
            entries.append((line.name, value if is_frame else str(Path(line.source).expanduser())))
        names = [n for n, _ in entries]
        if not names:
            raise UsageError("no 'name: path' line in the cell (e.g. north: data/north.csv)")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UsageError(f"party {dup!r} is declared twice (in the cell and in --dir); rename one")

        fed_name, fed = self._resolve(cmd.args.fed, create=True)
        new = fed is None
        if fed is None:
            fed = Federation(**self.federation_options())
        result = PartiesResult(fed_name, fed)
        sources = REGISTRY.sources(fed)  # re-running a parties cell must be harmless
        nulls = cmd.list_option("null_values")
        reading = {"null_values": nulls} if nulls else {}
        # Phase 1: read and check every party; nothing changes if one fails.
        loaded: list[tuple[str, Any, bool]] = []
        # The backend creates each party where its data lives (a Ray actor on its node, or here).
        with self._progress(len(entries), "loading") as bar, self._released_on_error(fed, loaded):
            for name, source in entries:
                key = _source_key(source)
                if name in fed:
                    known = sources.get(name, fed[name].source)
                    if known == key:
                        result.unchanged.append(name)
                        bar.advance(note=name)
                        continue
                    if not cmd.args.replace:
                        raise UsageError(
                            f"party {name!r} already exists (from {fed[name].source}); add --replace to re-read it, "
                            "or use another name"
                        )
                loaded.append((name, fed.backend.make_party(name, source, **reading), name in fed))
                bar.advance(note=name)
        # Phase 2: insert.  Federation._insert is what add_party does after reading; using it avoids reading
        # every file twice.  Fallback: add_party (reads again).
        insert = getattr(fed, "_insert", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SchemaWarning)
            for name, party, exists in loaded:
                if exists:
                    fed.remove_party(name)
                    result.replaced.append(name)
                else:
                    result.added.append(name)
                if insert is not None:
                    insert(party)
                else:
                    fed.add_party(name, dict(entries)[name])
                sources[name] = _source_key(dict(entries)[name])
        result.notes = [str(w.message) for w in caught if issubclass(w.category, SchemaWarning)]
        if new or REGISTRY.current is not fed:
            REGISTRY.set(fed_name, fed)
        self.user_ns[fed_name] = fed
        if cmd.args.dashboard:
            self._show(self._federation_panel(fed))
        return self._finish(result, cmd.args.out)

    def _form_run(self, cmd: FederateCommand) -> Any:
        fed = self._federation(cmd.args.fed)
        names = cmd.list_option("parties") or fed.party_names
        for n in names:
            fed[n]  # UnknownPartyError before anything runs
        head, tail = compile_cell(cmd.body, _RUN_FILE)
        local = _local_function(head, tail, dict(self.user_ns))
        if cmd.args.epsilon is not None:
            return self._finish(self._dp_run(fed, names, local, cmd), cmd.args.out)
        with self._progress(len(names) + 1, "parties") as bar:

            def counted(df: Any) -> dict[str, Any]:
                out = local(df)
                bar.advance(note=f"{bar.value + 1}/{len(names)} parties computed")
                return out

            result = fed.secure_sum(counted, parties=names, max_abs=cmd.args.max_abs)
        return self._finish(result, cmd.args.out)

    def _dp_run(self, fed: Federation, names: list[str], local: Callable[[Any], dict[str, Any]],
                cmd: FederateCommand) -> Any:
        """DP release of a run cell through ``Federation.secure_sum(fn, epsilon=..., sensitivity=...)``."""
        import numpy as np

        require("dp")
        params = inspect.signature(fed.secure_sum).parameters
        if "epsilon" not in params or "sensitivity" not in params:
            raise UsageError("this Federation.secure_sum has no DP release yet (epsilon=, sensitivity=)")
        # Dry run inside each party first: nothing leaves the parties, and a cell that fails or returns
        # mismatched entries then fails before the budget is charged (check-then-spend charges first).
        shapes: dict[str, tuple[int, ...]] | None = None
        for n in names:
            dry = functools.partial(run_local_function, fn=local, timeout=getattr(fed, "local_timeout", None))
            mine = {k: np.shape(v) for k, v in fed[n].compute(dry).items()}
            if shapes is not None and mine != shapes:
                # Names and shapes are not quoted: the cell can make them depend on the party's data.
                raise LocalComputationError(
                    f"party {n!r} returned entries that differ from {names[0]!r}'s in names or shapes; every "
                    "party must return the same names and shapes", party=n,
                )
            shapes = mine
        options = {k: v for k, v in (("delta", cmd.args.delta), ("mechanism", cmd.args.mechanism),
                                     ("noise", cmd.args.noise)) if v is not None}
        return fed.secure_sum(local, parties=names, max_abs=cmd.args.max_abs, epsilon=cmd.args.epsilon,
                              sensitivity=cmd.args.sensitivity, **options)

    def _form_stats(self, cmd: FederateCommand) -> Any:
        fed = self._federation(cmd.args.fed)
        names = cmd.list_option("parties")
        res = fed.stats(cmd.items or None, parties=names, nulls=cmd.args.nulls or "skip")
        result = StatsResult(table=res.to_polars(), parties=res.parties, runs=list(res.runs))
        return self._finish(result, cmd.args.out)

    def _form_psi(self, cmd: FederateCommand) -> Any:
        require("psi")
        fed = self._federation(cmd.args.fed)
        on = cmd.list_option("on") or []
        options: dict[str, Any] = {}
        steps = cmd.list_option("normalize")
        if steps is not None:
            options["normalize"] = steps[0] if len(steps) == 1 else steps
        if cmd.args.cast is not None:
            options["cast"] = cmd.args.cast
        result = fed.intersect(on[0] if len(on) == 1 else on, parties=cmd.list_option("parties"),
                               mode=cmd.args.mode or "cardinality", receiver=cmd.args.receiver, **options)
        if cmd.args.dashboard:
            from ..widgets.psi import PSIOverlapView

            self._show(PSIOverlapView(result, figure_backend=self.figure_backend))
        return self._finish(result, cmd.args.out)

    def _model(self, spec: str) -> Any:
        value = self.user_ns.get(spec) if spec.isidentifier() else None
        if value is not None and hasattr(value, "fit"):
            return value
        if spec not in MODELS:
            raise UsageError(f"unknown model {spec!r}: use one of {', '.join(MODELS)}, or a variable holding an "
                             "estimator")
        module, cls, kwargs = MODELS[spec]
        try:
            from sklearn.impute import SimpleImputer
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            model = getattr(importlib.import_module(module), cls)(**kwargs)
        except ImportError as exc:
            raise UsageError(f"--model {spec} needs scikit-learn: {exc}") from None
        return make_pipeline(SimpleImputer(), StandardScaler(), model)

    def _form_fit(self, cmd: FederateCommand) -> Any:
        learn = require("learn")
        fed = self._federation(cmd.args.fed)
        fit = getattr(learn, "fit", None)
        if fit is None:
            raise UsageError("federated training is not usable yet: fedbench.learn has no fit()")
        params = inspect.signature(fit).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs: dict[str, Any] = {"target": cmd.args.target}
        for dest, value in (("rounds", cmd.args.rounds), ("features", cmd.list_option("features")),
                            ("parties", cmd.list_option("parties")), ("epsilon", cmd.args.epsilon)):
            if value is not None:
                kwargs[dest] = value
        for key in kwargs:
            if key not in params and not takes_any:
                raise UsageError(f"this fedbench.learn.fit() takes no {key!r}; drop --{key}")
        estimator = self._model(cmd.args.model or "logistic")
        dash = None
        if cmd.args.dashboard is not False and self.verbosity != "quiet":
            from ..widgets.training import TrainingDashboard

            dash = TrainingDashboard(rounds=cmd.args.rounds, figure_backend=self.figure_backend,
                                     title=f"Federated training of {cmd.args.target}")
        hook = next((h for h in _HOOKS if h in params), None)
        shown = False
        if dash is not None and hook is not None:
            live = dash

            def on_round(*args: Any, **kw: Any) -> Any:
                # Shown on the first round, so that a refused or failing fit prints only its error line.
                nonlocal shown
                if not shown:
                    self._show(live)
                    shown = True
                return live(*args, **kw)

            kwargs[hook] = on_round
        run = fit(fed, estimator, **kwargs)  # the fit whose parameters were checked above
        if dash is not None:
            if not shown:
                self._show(dash)
            self._fill_dashboard(dash, run, replay=hook is None)
        self.user_ns["_federate_dashboard"] = dash
        return self._finish(run, cmd.args.out)

    def _fill_dashboard(self, dash: Any, run: Any, *, replay: bool) -> None:
        """Replay a finished run's history (when the trainer had no per-round hook) and add its baselines."""
        label = getattr(run, "metric", None)  # e.g. "accuracy": the history's generic "metric" column
        history = getattr(run, "history", None)
        if replay and history is not None:
            columns = getattr(history, "columns", [])
            if isinstance(label, str) and "metric" in columns and label not in columns and hasattr(history, "rename"):
                history = history.rename({"metric": label})
            dash.replay(history)
        compare = getattr(run, "compare", None)
        if callable(compare):
            try:
                dash.set_comparison(compare(), metric=label if isinstance(label, str) else None)
            except FedbenchError as exc:  # baselines are a bonus: say why they are missing, keep the run
                dash.log.append_stderr(f"no local-only/centralized baselines: {_one_line(exc)}\n")
        if replay:
            self._show(dash)

    # -- %fedbench ------------------------------------------------------------------------
    @line_magic
    @magic_arguments()
    @argument("command", nargs="?", default=None,
              help="; ".join(f"{k}: {v}" for k, v in SUBCOMMANDS.items()) + " (default status).")
    @argument("--fed", metavar="NAME", help="Federation to show (default: the current one).")
    @argument("--epsilon", type=float, metavar="E", help="budget: set every party's epsilon budget.")
    @argument("--delta", type=float, metavar="D", help="budget: delta budget (default 1e-6).")
    @argument("--parties", metavar="A,B", help="budget: only these parties.")
    @argument("--increase-reason", metavar="WHY",
              help="budget: allow raising a budget after spending; the raise and WHY are recorded in the ledger.")
    @argument("--party", metavar="P", help="transcript: messages sent or received by P.")
    @argument("--kind", metavar="K", help="transcript: messages of kind K (e.g. ciphertexts).")
    @argument("--run", type=int, metavar="N", help="transcript/keys: run N only.")
    @argument("--static", action="store_true", default=False,
              help="Draw this dashboard with static figures (as with %%config Fedbench.figure_backend = 'static').")
    @argument("--all", action="store_true", default=False, help="reset: forget every federation.")
    @_usage_errors
    def fedbench(self, line: str = "") -> Any:
        """Show the dashboards and the state of the session.

        See ``%fedbench help``.
        """
        cmd = FedbenchCommand.parse(self.fedbench, line)
        return getattr(self, f"_sub_{cmd.command}")(cmd)

    def _backend(self, cmd: FedbenchCommand) -> str:
        return "static" if cmd.args.static else self.figure_backend

    def _show(self, obj: Any) -> None:
        from IPython.display import display

        display(obj)

    @staticmethod
    @contextlib.contextmanager
    def _released_on_error(fed: Federation, loaded: list[tuple[str, Any, bool]]) -> Iterator[None]:
        """If a party fails to load, free those already created (their actors on Ray): nothing changes."""
        try:
            yield
        except BaseException:
            for _name, party, _exists in loaded:
                fed.backend.release_party(party)
            raise

    def _federation_panel(self, fed: Federation, backend: str | None = None) -> Any:
        from ..widgets.federation import FederationPanel

        panel = FederationPanel(fed, figure_backend=backend or self.figure_backend)
        REGISTRY.watch(fed, panel)
        return panel

    def _sub_status(self, cmd: FedbenchCommand) -> Any:
        REGISTRY.sync(self.user_ns, self.federation_name)
        feds = [(n, len(REGISTRY.get(n)), sum(p.n_rows for p in REGISTRY.get(n)), n == REGISTRY.current_name)
                for n in REGISTRY.names]
        return StatusCard(settings=self.settings(), federations=feds,
                          features={k: available(k) for k in FEATURES})

    def _sub_help(self, cmd: FedbenchCommand) -> Any:
        return HelpCard(forms=FORMS, examples=EXAMPLES, subcommands=SUBCOMMANDS)

    def _sub_parties(self, cmd: FedbenchCommand) -> Any:
        return self._federation_panel(self._federation(cmd.args.fed), self._backend(cmd))

    def _sub_budget(self, cmd: FedbenchCommand) -> Any:
        from ..widgets.budget import BudgetPanel

        require("dp")
        fed = self._federation(cmd.args.fed)
        budget = REGISTRY.budget(fed)
        if cmd.args.epsilon is not None:
            delta = cmd.args.delta if cmd.args.delta is not None else 1e-6
            parties = cmd.list_option("parties")
            setter = getattr(fed, "set_budget", None)
            reason = cmd.args.increase_reason
            if reason and len(reason) >= 2 and reason[0] == reason[-1] and reason[0] in "\"'":
                reason = reason[1:-1]  # IPython keeps the quotes of a quoted argument
            extra = {"allow_increase": True, "description": reason} if reason else {}
            if setter is not None:
                setter(epsilon=cmd.args.epsilon, delta=delta, **({"parties": parties} if parties else {}), **extra)
            else:
                budget.set_budget(cmd.args.epsilon, delta, parties=parties, **extra)
        panel = BudgetPanel(budget, figure_backend=self._backend(cmd))
        REGISTRY.watch(fed, panel)
        return panel

    def _sub_transcript(self, cmd: FedbenchCommand) -> Any:
        from ..widgets.transcript import TranscriptViewer

        fed = self._federation(cmd.args.fed)
        viewer = TranscriptViewer(fed, party=cmd.args.party, kind=cmd.args.kind, run=cmd.args.run,
                                  figure_backend=self._backend(cmd))
        REGISTRY.watch(fed, viewer)
        return viewer

    def _sub_keys(self, cmd: FedbenchCommand) -> Any:
        from ..widgets.transcript import CryptoCostPanel

        fed = self._federation(cmd.args.fed)
        panel = CryptoCostPanel(fed, run=cmd.args.run, figure_backend=self._backend(cmd))
        REGISTRY.watch(fed, panel)
        return panel

    def _sub_reset(self, cmd: FedbenchCommand) -> Any:
        REGISTRY.sync(self.user_ns, self.federation_name)
        if cmd.args.all:
            gone = list(zip(REGISTRY.names, REGISTRY.clear(), strict=True))
        else:
            name = cmd.args.fed or REGISTRY.current_name
            fed = REGISTRY.remove(name)
            assert name is not None  # remove(None) raised NoFederationError: no federation is current
            gone = [(name, fed)]
        for name, fed in gone:
            if self.user_ns.get(name) is fed:
                del self.user_ns[name]
            fed.close()
        what = ", ".join(n for n, _ in gone) or "nothing"
        return Notice(f"forgot {what}; declare parties again with %%federate")


def _registered(shell: Any) -> list[Any]:
    return [c for c in getattr(shell, "configurables", []) if type(c).__name__ == "Fedbench"]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython``; loading again replaces the previous instance, keeping its settings."""
    old = _registered(ipython)
    for c in old:
        ipython.configurables.remove(c)
    magics = Fedbench(shell=ipython)
    if old:  # %reload_ext: keep what %config set
        for name, value in old[-1].settings().items():
            # A setting renamed or re-validated across versions keeps its default.
            with contextlib.suppress(Exception):
                setattr(magics, name, value)
    ipython.register_magics(magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics (federations stay in :data:`~fedbench.notebook.REGISTRY`)."""
    for c in _registered(ipython):
        ipython.configurables.remove(c)
    manager = ipython.magics_manager
    for kind, names in (("line", ("federate", "fedbench")), ("cell", ("federate",))):
        table = manager.magics[kind]
        for name in names:
            fn = table.get(name)
            if fn is not None and type(getattr(fn, "__self__", None)).__name__ == "Fedbench":
                del table[name]
    manager.registry.pop("Fedbench", None)
