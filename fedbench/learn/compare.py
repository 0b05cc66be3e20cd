"""'Is collaboration worth it?': local-only, federated and centralized models side by side.

For the comparison the simulation trains, next to the federated model,

* ``local:<party>``: each party's model on its own training rows only (what
  it could do alone; trained inside the party);
* ``centralized``: one model on the *pooled* training rows of every party, the
  upper bound a real federation can never compute.  Pooling raw rows is only
  possible because this is a simulation; the row is labelled as such and the
  pooled rows are discarded right after fitting.  With parties on other nodes
  (the Ray backend) rows never leave them, so this row is left empty, with a note.

Every model is scored on each party's held-out rows (inside the party, from
additive statistics) and on the pooled held-out rows (the sum of those
statistics).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .data import DataSpec, local_rows, local_xy
from .stages import combine_scores, local_scores
from .table import FullTextFrame

if TYPE_CHECKING:
    from ..coordinator import Coordinator

__all__ = ["compare_models", "failure_note", "local_baseline"]


def local_baseline(df: pl.DataFrame, *, spec: DataSpec, estimator: Any) -> Any:
    """Fit a copy of ``estimator`` on this party's training rows only (inside the party)."""
    from sklearn.base import clone, is_classifier
    from sklearn.exceptions import ConvergenceWarning

    from ..errors import EmptyPartyError

    x, y = local_xy(df, spec, "train")
    model = clone(estimator)
    if y is not None and is_classifier(model) and np.unique(np.asarray(y)).size < 2:
        # Said here, in fedbench's words: scikit-learn's own message quotes the class, and errors leave the party.
        raise EmptyPartyError("its training rows hold a single class; a classifier needs two")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if y is None:
            model.fit(x)
        else:
            model.fit(x, y)
    return model


def _sum(stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in stats:
        for k, v in s.items():
            out[k] = out[k] + np.asarray(v) if k in out else np.asarray(v, dtype=float)
    return out


def failure_note(exc: Exception) -> str:
    """Why a baseline could not be trained, for the comparison's note column (first line, in full)."""
    msg = str(exc).split("\n")[0]
    if "class" in msg and ("one" in msg or "single" in msg or "1 class" in msg):
        return "cannot train: its training rows hold a single class"
    return f"cannot train: {type(exc).__name__}: {msg}"


def _centralized(chosen: Sequence[Any], spec: DataSpec, estimator: Any) -> tuple[str, str, Any, str]:
    from sklearn.base import clone

    # Simulation only: the pooled rows exist just long enough to fit the centralized model.
    pooled = [p.compute(partial(local_rows, spec=spec, part="train")) for p in chosen]
    xs = pl.concat([x for x, _ in pooled], how="vertical_relaxed")
    central = clone(estimator)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if spec.target is None:
                central.fit(xs)
            else:
                central.fit(xs, np.concatenate([y for _, y in pooled]))
    except Exception as exc:
        return ("centralized", "pooled rows (simulation only)", None, failure_note(exc))
    return ("centralized", "pooled rows (simulation only)", central, "simulation only: pools raw rows")


def compare_models(coord: Coordinator, parties: Sequence[str], spec: DataSpec, estimator: Any, federated: Any,
                   metric: str, classes: Sequence[Any] | None) -> pl.DataFrame:
    """The comparison table (see the module docstring)."""
    chosen = coord.select(list(parties))
    part = "test" if spec.test_size > 0 else "train"
    rows: list[tuple[str, str, Any, str]] = []
    for p in chosen:
        try:
            model = p.compute(partial(local_baseline, spec=spec, estimator=estimator))
            rows.append((f"local:{p.name}", f"{p.name}'s rows only", model, ""))
        except Exception as exc:  # e.g. a single-class party: the row stays, with the reason
            rows.append((f"local:{p.name}", f"{p.name}'s rows only", None, failure_note(exc)))
    rows.append(("federated", "all parties, federated", federated, ""))
    if any(p.remote for p in chosen):
        rows.append(("centralized", "pooled rows (simulation only)", None,
                     "not computed: the parties are on other nodes and their raw rows never leave them"))
    else:
        rows.append(_centralized(chosen, spec, estimator))
    cls = None if classes is None else list(classes)
    out: dict[str, list[Any]] = {"model": [], "trained_on": [], "score": []}
    for p in chosen:
        out[p.name] = []
    out["note"] = []
    for name, trained_on, model, note in rows:
        out["model"].append(name)
        out["trained_on"].append(trained_on)
        out["note"].append(note)
        if model is None:
            out["score"].append(None)
            for p in chosen:
                out[p.name].append(None)
            continue
        stats = [p.compute(partial(local_scores, spec=spec, model=model, prefix=None, metric=metric, classes=cls,
                                   part=part)) for p in chosen]
        for p, s in zip(chosen, stats, strict=True):
            out[p.name].append(combine_scores(metric, s))
        out["score"].append(combine_scores(metric, _sum(stats)))
    schema: dict[str, Any] = {"model": pl.String, "trained_on": pl.String, "score": pl.Float64}
    schema |= {p.name: pl.Float64 for p in chosen}
    schema["note"] = pl.String
    return FullTextFrame(out, schema=schema)
