"""``fed.fit_vertical``: vertical logistic regression of one party's label with another party's columns."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ...errors import (
    ConfigurationError,
    MissingColumnError,
    NonNumericColumnError,
    ProtocolError,
    TooFewPartiesError,
    UnsupportedEstimatorError,
)
from ...party import column_kind
from ...transcript import Transcript
from ..data import is_id_column
from ..glm import penalty_of
from ..registry import vertical_entry
from ..stages import quiet, surrogate_input
from .protocol import LEAKAGE, Exchange
from .result import VerticalRun

if TYPE_CHECKING:
    from ...coordinator import FederationView

__all__ = ["fit_vertical"]


def _split_estimator(estimator: Any) -> tuple[list[Any], Any]:
    from sklearn.pipeline import Pipeline

    msg = ("vertical training supports LogisticRegression (L2 penalty or none), optionally in a Pipeline after "
           "SimpleImputer / StandardScaler steps (fitted by each party on its own columns)")
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    final = steps[-1]
    entry = vertical_entry(final)
    if entry is None or entry.vertical != "model":
        raise UnsupportedEstimatorError(f"{type(final).__name__}: {msg}")
    if penalty_of(final) in ("l1", "elasticnet"):
        raise UnsupportedEstimatorError(f"LogisticRegression with an L1/elastic-net penalty: {msg}")
    for s in steps[:-1]:
        step_entry = vertical_entry(s)
        if step_entry is None or step_entry.vertical != "preprocess":
            raise UnsupportedEstimatorError(f"{type(s).__name__}: {msg}")
    return steps[:-1], final


def _party_features(party: Any, features: Sequence[str] | None, exclude: set[str]) -> list[str]:
    if features is None:
        feats = [c for c, t in party.schema.items()
                 if c not in exclude and not is_id_column(c) and column_kind(t) in ("numeric", "boolean")]
    else:
        feats = list(features)
        party.require_columns(feats)
    for c in feats:
        if column_kind(party.schema[c]) not in ("numeric", "boolean"):
            raise NonNumericColumnError(
                f"party {party.name!r}: feature {c!r} is {party.schema[c]}, not numeric (vertical training takes "
                "numeric columns)", party=party.name, column=c)
    return feats


def _features_arg(party_features: Mapping[str, Sequence[str]] | None,
                  features: Mapping[str, Sequence[str]] | None) -> Mapping[str, Sequence[str]]:
    """``party_features``, or the deprecated ``features`` spelling of it."""
    if features is not None:
        if party_features is not None:
            raise ConfigurationError("pass party_features= only (features= is its deprecated spelling)")
        warnings.warn("fit_vertical(features=...) is deprecated and will be removed in the next release; "
                      "use party_features={party: [columns]}", FutureWarning, stacklevel=3)
        party_features = features
    if party_features is None:
        return {}
    if not isinstance(party_features, Mapping):
        raise ConfigurationError(
            "party_features maps each party to its columns, e.g. party_features={'hospital': ['age'], "
            f"'lab': ['crp']}}; got {type(party_features).__name__} (in vertical training columns belong to parties)")
    return party_features


def _roles(fed: FederationView, names: list[str], label_party: str, target: str) -> tuple[Any, Any]:
    if len(names) != 2:
        raise TooFewPartiesError(
            f"vertical training runs between exactly two parties, got {len(names)} ({', '.join(names)}); "
            "pass parties=[label_party, other]"
        )
    if label_party not in names:
        raise ConfigurationError(f"label_party {label_party!r} is not one of the parties {names}")
    guest = fed[label_party]
    host = fed[next(n for n in names if n != label_party)]
    if target not in guest.columns:
        raise MissingColumnError(f"party {guest.name!r} has no target column {target!r}", party=guest.name,
                                 column=target)
    return guest, host


def fit_vertical(
    fed: FederationView,
    estimator: Any,
    *,
    label_party: str,
    target: str,
    on: str | Sequence[str],
    parties: Sequence[str] | None = None,
    party_features: Mapping[str, Sequence[str]] | None = None,
    rounds: int = 30,
    learning_rate: float | None = None,
    tol: float = 1e-7,
    test_size: float = 0.25,
    seed: int = 0,
    frac_bits: int = 16,
    feature_bits: int = 12,
    psi_options: dict[str, Any] | None = None,
    features: Mapping[str, Sequence[str]] | None = None,
) -> VerticalRun:
    """Vertical logistic regression of ``target`` (held by ``label_party``) with another party's columns.

    The two parties hold different columns of the same people: the **guest**
    holds the labels (and some features), the **host** holds only features.
    Expect about 1 s per iteration at 2048-bit keys on the bundled samples
    (``data_samples/vertical``: about 28 s for the default 30 iterations on two cores).

    Parameters
    ----------
    fed : Federation
        The two parties (and the key holder).
    estimator : LogisticRegression or Pipeline
        ``LogisticRegression`` (its ``C`` and ``fit_intercept`` are used),
        optionally after ``SimpleImputer``/``StandardScaler`` steps.
    label_party : str
        The guest: holds the label column.
    target : str
        Binary label column of ``label_party``.
    on : str or list of str
        Identifier column(s) for the PSI alignment.
    parties : list of str, optional
        The two parties (default: the federation's two parties).
    party_features : dict of str to list of str, optional
        Each party's own feature columns, ``{party: [columns]}`` (in vertical
        training columns belong to parties, so this is a mapping where
        :func:`~fedbench.learn.fit` takes a list); a party left out uses its
        numeric non-identifier columns, the default for both.
    rounds : int, default 30
        Iterations (each is one encrypted gradient exchange).
    learning_rate : float, optional
        Step size; default ``1/L`` from the parties' curvature bounds.
    tol : float, default 1e-7
        Stop when the loss per row changes by less than this.
    test_size : float, default 0.25
        Fraction of the aligned rows held out: the guest draws the mask from a
        seeded hash of the shared identifiers (reproducible) and sends it to the
        host.
    seed : int, default 0
        Seed of the split.
    frac_bits, feature_bits : int
        Fixed-point precision of partial scores and of standardised features.
    psi_options : dict, optional
        Passed to ``fed.intersect`` (``normalize``, ``cast``...).
    features : dict, optional
        Deprecated spelling of ``party_features`` (a ``FutureWarning``; removed in the next release).

    Returns
    -------
    VerticalRun

    Raises
    ------
    UnsupportedEstimatorError, MissingColumnError, NonNumericColumnError, TooFewPartiesError, ConfigurationError
    """
    from sklearn.base import clone

    t_start = time.perf_counter()
    chosen = _features_arg(party_features, features)
    pre_steps, lr = _split_estimator(estimator)
    guest, host = _roles(fed, list(parties) if parties is not None else fed.party_names, label_party, target)
    keys = [on] if isinstance(on, str) else list(on)
    for p in (guest, host):
        p.require_columns(keys)
    unknown = sorted(set(chosen) - {guest.name, host.name})
    if unknown:
        raise ConfigurationError(f"party_features names {unknown}, not among the parties {[guest.name, host.name]}")
    feats = {p.name: _party_features(p, chosen.get(p.name), set(keys) | {target}) for p in (guest, host)}
    if not feats[host.name]:
        raise ConfigurationError(f"party {host.name!r} has no usable feature column")
    if not 0 <= test_size < 1:
        raise ConfigurationError(f"test_size must be in [0, 1), got {test_size!r}")
    psi = fed.intersect(on=on, parties=[guest.name, host.name], mode="align", **(psi_options or {}))
    m_all = int(psi.size)
    if m_all < 4:
        raise ConfigurationError(f"only {m_all} shared rows after PSI: too few to train")
    positions = psi.positions
    if positions is None:  # mode="align" always returns them
        raise ProtocolError("the aligning PSI returned no row positions")
    coord = fed.coordinator
    unpenalised = np.isinf(float(lr.C)) or getattr(lr, "penalty", "deprecated") is None
    ex = Exchange(coord, guest, host, c=1e12 if unpenalised else float(lr.C), intercept=bool(lr.fit_intercept),
                  frac_bits=frac_bits, feature_bits=feature_bits)
    test = ex.split(positions[guest.name], keys, seed, test_size, m_all)
    m = int((~test).sum())
    if m < 2:
        raise ConfigurationError(f"only {m} aligned training rows; lower test_size")
    rows_hist: list[dict[str, Any]] = []
    try:
        setups = ex.setup(positions, test, feats, pre_steps, target, bounds=learning_rate is None)
        step = ex.step_size(setups, m, learning_rate)
        _iterate(ex, step, m, int(rounds), tol, rows_hist)
        res = ex.weights()
    except BaseException:
        ex.forget()
        raise
    transcript = Transcript(keep_payloads=coord.audit)
    transcript.extend(ex.channel.run)
    coef_by_party = {p: res[p]["w"] / setups[p]["scale"] for p in (guest.name, host.name)}
    offsets = {p: float(w @ setups[p]["mean"]) for p, w in coef_by_party.items()}
    # Returning to the original feature scale moves the intercept by the host's sum w_j * mean_j / scale_j.
    channel2 = coord.channel("vertical_lr")
    channel2.send(host.name, guest.name, "intercept-offset", np.float64(offsets[host.name]).tobytes(),
                  encrypted=False)
    transcript.extend(channel2.run)
    intercept = res[guest.name]["b"] - offsets[guest.name] - offsets[host.name]
    model = _assemble(estimator, lr, pre_steps, setups, guest.name, host.name, feats, coef_by_party, intercept,
                      len(rows_hist))
    history = pl.DataFrame(rows_hist, schema={"round": pl.Int64, "loss": pl.Float64, "seconds": pl.Float64,
                                              "bytes": pl.Int64, "status": pl.String})
    run = VerticalRun(
        model=model, coef_by_party=coef_by_party, intercept=float(intercept), features_by_party=feats,
        guest=guest.name, host=host.name, target=target, history=history, psi=psi, n_aligned=m_all,
        n_train=m, n_test=int(test.sum()), transcript=transcript, key_bits=coord.key_bits,
        leakage=LEAKAGE, elapsed=time.perf_counter() - t_start, seed=int(seed), test_size=float(test_size),
        _fed=fed, _template=clone(estimator), _test=test,
    )
    coord.history.append(run)
    return run


def _iterate(ex: Exchange, step: float, m: int, rounds: int, tol: float, rows_hist: list[dict[str, Any]]) -> None:
    """Run up to ``rounds`` exchanges, one history row each, stopping once the loss settles."""
    prev_loss: float | None = None
    for it in range(1, rounds + 1):
        t0, b0 = time.perf_counter(), ex.channel.run.nbytes
        loss = ex.iterate(it, step, m)
        rows_hist.append({"round": it, "loss": loss, "seconds": time.perf_counter() - t0,
                          "bytes": ex.channel.run.nbytes - b0, "status": "ok"})
        if prev_loss is not None and abs(prev_loss - loss) < tol * max(1.0, abs(loss)):
            rows_hist[-1]["status"] = "converged"
            break
        prev_loss = loss


def _assemble(estimator: Any, lr: Any, pre_steps: list[Any], setups: dict[str, Any], guest: str, host: str,
              feats: dict[str, list[str]], coef_by_party: dict[str, np.ndarray], intercept: float,
              n_iter: int) -> Any:
    """One scikit-learn model over ``guest + host`` columns (simulation only)."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    cols = [*feats[guest], *feats[host]]
    classes = setups[guest]["classes"]
    fitted_steps = []
    for i, step in enumerate(pre_steps):
        parts = [setups[guest]["fitted"][i], setups[host]["fitted"][i]]
        fitted_steps.append(_merge_step(step, parts, cols if i == 0 else None))
    model = clone(lr)
    quiet(model.fit, surrogate_input(2, n_features=len(cols), feature_names=None if pre_steps else cols,
                                     distinct=True), classes)
    model.coef_ = np.concatenate([coef_by_party[guest], coef_by_party[host]])[None, :]
    model.intercept_ = np.array([intercept])
    model.n_iter_ = np.array([n_iter], dtype=np.int32)
    if not pre_steps:
        return model
    out = clone(estimator)
    out.steps = [(name, f) for (name, _), f in zip(estimator.steps[:-1], fitted_steps, strict=True)]
    out.steps.append((estimator.steps[-1][0], model))
    return out if isinstance(out, Pipeline) else model


def _merge_step(step: Any, parts: list[Any], cols: list[str] | None) -> Any:
    """Concatenate two parties' column-wise fitted steps (imputer statistics, scaler moments)."""
    from sklearn.base import clone
    from sklearn.impute import SimpleImputer

    width = sum(int(p.n_features_in_) for p in parts)
    merged = clone(step)
    quiet(merged.fit, surrogate_input(2, n_features=width, feature_names=cols, distinct=True))
    if isinstance(step, SimpleImputer):
        merged.statistics_ = np.concatenate([p.statistics_ for p in parts])
        return merged
    for attr in ("mean_", "var_", "scale_"):
        if getattr(merged, attr, None) is not None:
            setattr(merged, attr, np.concatenate([getattr(p, attr) for p in parts]))
    seen = [np.broadcast_to(np.asarray(p.n_samples_seen_), (int(p.n_features_in_),)) for p in parts]
    allseen = np.concatenate(seen)
    merged.n_samples_seen_ = allseen[0] if np.ptp(allseen) == 0 else allseen
    return merged
