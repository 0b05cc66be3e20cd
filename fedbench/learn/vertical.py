"""Vertical logistic regression after PSI alignment (Hardy et al. 2017; FATE hetero-LR).

Two parties hold different columns of the same people: the **guest** holds the
label and some features, the **host** holds other features.  After
``fed.intersect(on=..., mode="align")`` both know which of their rows are
shared and in which common order, and nothing else about each other's rows.
The federation's **key holder** (the arbiter of Hardy et al.) holds the
Paillier private key and decrypts only masked values.

Model and loss
--------------
``z = x_guest . w_guest + x_host . w_host + b`` with labels ``t = ±1``; the
logistic loss is replaced by its second-order Taylor expansion at ``z = 0``,
``log 2 - t z / 2 + z^2 / 8``, whose gradient in ``z`` is ``d = z / 4 - t / 2``:
linear in ``z``, so it can be computed under additively homomorphic
encryption.  The objective is ``C * sum loss + ||w||^2 / 2`` like
scikit-learn's ``LogisticRegression`` (intercept unpenalised), minimised by
full-batch Nesterov-accelerated gradient descent with step ``1/L``, where
``L`` bounds the curvature: each party sends the largest eigenvalue of its own
standardised columns' Gram matrix (a PSD block matrix's largest eigenvalue is
at most the sum of its diagonal blocks').

Set-up: the guest sends the host the held-out mask (derived from shared
identifiers only); each party sends the coordinator its curvature bound and
receives the step size ``1 / (C/4 (lam_guest + lam_host) + 1/m)`` (or the
given ``learning_rate``, which reveals nothing); the key
holder sends both its public key (``n`` and, with fast encryption, ``h_s``).

One iteration (all values in fixed point, ``[[.]]`` = encrypted under the key holder's key)::

    host  -> guest   [[u_h]] = [[X_h w_h]] per row, [[sum u_h^2]]
    guest -> host    [[4 d]] = [[u_h]] + (u_g - 2 t)  per row, re-randomised      (labels stay inside)
    host  -> keyholder  [[X_h' 4d + R_h]]   (R_h uniform mod n: a one-time pad, freshly encrypted)
    guest -> keyholder  [[X_g' 4d + R_g]], [[8 * Taylor loss]] (re-randomised)
    keyholder -> host   X_h' 4d + R_h;  -> guest  X_g' 4d + R_g;  -> both: the loss
    host, guest      remove their pads, update their own weights

Every ciphertext a party computes from another party's ciphertexts is
multiplied by a fresh encryption of zero (or by a freshly encrypted pad)
before it leaves (:meth:`~fedbench.crypto.paillier.FastEncryptor.rerandomize`):
otherwise the host, dividing the returned ``[[4 d]]`` by the ``[[u_h]]`` it
sent, would read ``u_g - 2 t`` in the clear, i.e. every label at the first
iteration (where ``u_g = 0``).

What each party learns (honest-but-curious, no collusion with the key holder):

* **guest** (label holder): its own gradient ``X_g' d`` (and ``sum d``) each
  iteration, the loss, the step size (from which, knowing its own bound, it
  derives the host's curvature bound) and, at the end, the host's
  intercept offset ``sum_j w_j mean_j / scale_j`` (one number computed from
  the host's weights and column statistics); never the host's features or
  partial scores (they arrive encrypted).
* **host**: its own gradient ``X_h' d`` each iteration, the loss, the step
  size (hence the guest's curvature bound, which depends on the guest's
  features only) and the held-out mask; never a label, a residual or the
  guest's partial scores (they arrive encrypted and re-randomised).
* **key holder**: the loss each iteration, and pad-masked gradients, which are
  uniformly random.
* **coordinator**: both curvature bounds (largest eigenvalue of each party's
  standardised Gram matrix).
* both parties: the PSI output (which of their rows are shared).

Known leakage of this protocol family: a party's own gradient sequence
``X_k' d_t`` is a linear function of the residuals ``d_t = u_t / 4 - t / 2``;
at the first iteration ``d = -t / 2``, so the host learns ``X_h' t`` (as many
linear combinations of the labels as it has columns) and, over iterations and
with few rows relative to columns, could solve for more; the loss sequence is
public.  Collusion of the key holder with either party breaks the protocol (it
can decrypt the other's messages).  Prediction on new rows is also a joint
computation; the fitted ``VerticalRun.model`` over all columns exists only in
this simulation.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from html import escape
from itertools import count
from typing import Any

import gmpy2
import numpy as np
import polars as pl

from ..crypto.paillier import FastEncryptor
from ..errors import (
    ConfigurationError,
    MissingColumnError,
    NonNumericColumnError,
    NullValuesError,
    TooFewPartiesError,
    UnsupportedEstimatorError,
)
from ..party import column_kind
from ..results import render_card
from ..transcript import Transcript, _fmt_bytes
from ..wire import bytes_to_ints, ints_to_bytes
from .data import is_id_column
from .models import quiet

__all__ = ["VerticalRun", "fit_vertical"]

LEAKAGE = (
    "guest (label holder) and host each learn their own gradient per iteration (at the first iteration the "
    "host's is -X_h' t / 2, linear in the labels), the (Taylor) loss and the step size (hence the other's curvature "
    "bound); the guest also learns the host's intercept offset; labels, residuals and partial scores only ever "
    "cross encrypted, and every ciphertext a party returns is re-randomised; the key holder decrypts "
    "one-time-padded gradients (uniformly random to it) and the loss; both parties learn which of their rows are "
    "shared (PSI). Collusion of the key holder with a party breaks the protocol."
)

#: Party-side memory of running protocols: ``{(run token, party): state}``.  The functions that read and
#: write it run inside the party (``Party.compute``), so on a distributed backend it lives with the party.
_MEMORY: dict[tuple[int, str], dict[str, Any]] = {}
_tokens = count(1)


# -- inside a party --------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _encryptor(n: int, h_s: int | None) -> FastEncryptor:
    return FastEncryptor(n, h_s)  # its fixed-base table takes ~0.2 s to build at 2048 bits: build it once


def _encode(v: int, n: int) -> int:
    return v % n


def _decode(v: int, n: int) -> int:
    v %= n
    return v - n if v > n // 2 else v


def _weighted_product(cts: list[Any], inv: list[Any], exps: np.ndarray, n2: Any, window: int = 5) -> Any:
    """``prod_i cts[i] ** exps[i] mod n^2``, i.e. the encryption of ``sum_i exps[i] * plaintext_i``.

    Pippenger's bucket method: for each ``window``-bit digit position, multiply
    each base into the bucket of its digit, then combine the buckets with two
    running products; about 5x fewer multiplications than one exponentiation
    per row.  Negative exponents use the inverse ciphertexts.
    """
    e = np.asarray(exps, dtype=np.int64)
    bases = [c if v >= 0 else ci for c, ci, v in zip(cts, inv, e.tolist(), strict=True)]
    mag = np.abs(e)
    bits = int(mag.max()).bit_length() if mag.size else 0
    mask = (1 << window) - 1
    acc = gmpy2.mpz(1)
    for k in range(-(-bits // window) - 1, -1, -1):
        for _ in range(window):
            acc = acc * acc % n2
        buckets: list[Any] = [None] * (mask + 1)
        for b, d in zip(bases, ((mag >> (k * window)) & mask).tolist(), strict=True):
            if d:
                cur = buckets[d]
                buckets[d] = b if cur is None else cur * b % n2
        running, total = gmpy2.mpz(1), gmpy2.mpz(1)
        for d in range(mask, 0, -1):  # total = prod_d bucket_d ** d
            if buckets[d] is not None:
                running = running * buckets[d] % n2
            total = total * running % n2
        acc = acc * total % n2
    return acc


def v_split(df: pl.DataFrame, *, rows: np.ndarray, on: list[str], seed: int, test_size: float) -> bytes:
    """Guest: the held-out mask of the aligned rows, from a seeded hash of each row's identifier.

    Hashing the identifiers (rather than drawing from the PSI's fresh random
    order) makes the split reproducible for a given seed.  The mask depends on
    nothing but identifiers both parties share, so sending it to the host
    reveals nothing new.
    """
    ids = df.select(on)[rows.tolist()].rows()
    salt = int(seed).to_bytes(8, "big", signed=True)
    u = np.array([int.from_bytes(hashlib.blake2b(repr(k).encode(), digest_size=8, salt=salt).digest(), "big")
                  for k in ids], dtype=np.float64) / 2.0**64
    return np.packbits(u < test_size).tobytes()


def v_setup(df: pl.DataFrame, *, token: int, party: str, rows: np.ndarray, test: np.ndarray, features: list[str],
            steps: list[Any], target: str | None) -> dict[str, Any]:
    """Align, split, fit this party's own preprocessing and standardise (inside the party).

    Keeps the standardised training matrix (and labels) in party memory and
    returns only this party's column statistics and its curvature bound.
    """
    from sklearn.base import clone

    x = df.select(features)[rows.tolist()]
    train = ~test
    xt = x.filter(pl.Series(train))
    fitted = []
    for s in steps:
        f = quiet(clone(s).fit, xt)
        fitted.append(f)
        xt = f.transform(xt)
    m = np.asarray(xt.cast(pl.Float64).to_numpy() if isinstance(xt, pl.DataFrame) else xt, dtype=float)
    if np.isnan(m).any():
        col = features[int(np.flatnonzero(np.isnan(m).any(axis=0))[0])]
        raise NullValuesError(f"feature {col!r} has missing values; put SimpleImputer() in the pipeline", column=col)
    mean = m.mean(axis=0)
    scale = m.std(axis=0)
    scale[scale < 1e-12] = 1.0
    z = (m - mean) / scale
    state: dict[str, Any] = {"z": z, "w": np.zeros(z.shape[1]), "w_prev": np.zeros(z.shape[1]), "b": 0.0,
                             "b_prev": 0.0}
    gram_cols = z
    if target is not None:
        y = df.get_column(target)[rows.tolist()].to_numpy()[train]
        classes = np.unique(y)
        if classes.size != 2:
            raise ConfigurationError(
                f"vertical logistic regression needs a binary target; {target!r} does not have exactly two "
                "classes in the aligned training rows"
            )
        state["t"] = np.where(y == classes[1], 1.0, -1.0)
        state["classes"] = classes
        gram_cols = np.hstack([z, np.ones((z.shape[0], 1))])
    lam = float(np.linalg.eigvalsh(gram_cols.T @ gram_cols / max(1, z.shape[0]))[-1]) if gram_cols.shape[1] else 0.0
    _MEMORY[(token, party)] = state
    return {"fitted": fitted, "mean": mean, "scale": scale, "lam": lam,
            "classes": state.get("classes")}


def v_host_forward(df: pl.DataFrame, *, token: int, party: str, n: int, h_s: int | None, beta: float,
                   scale: int) -> tuple[list[int], int]:
    """Host: encrypted partial scores at the look-ahead point, and their encrypted sum of squares."""
    st = _MEMORY[(token, party)]
    st["y"] = st["w"] + beta * (st["w"] - st["w_prev"])
    u = st["z"] @ st["y"]
    enc = _encryptor(n, h_s)
    cts = enc.encrypt_many([_encode(round(v * scale), n) for v in u.tolist()])
    usq = enc.encrypt_many([_encode(round(float(u @ u) * scale * scale), n)])[0]
    return cts, usq


def v_guest_residual(df: pl.DataFrame, *, token: int, party: str, n: int, h_s: int | None, beta: float, scale: int,
                     u_host: list[int], usq_host: int) -> tuple[list[int], int]:
    """Guest: encrypted ``4 d = u_host + u_guest - 2 t`` per row, and the encrypted ``8 * loss`` (scaled)."""
    st = _MEMORY[(token, party)]
    st["y"] = st["w"] + beta * (st["w"] - st["w_prev"])
    st["yb"] = st["b"] + beta * (st["b"] - st["b_prev"])
    u = st["z"] @ st["y"] + st["yb"]
    t = st["t"]
    n2 = gmpy2.mpz(n) ** 2
    nn = gmpy2.mpz(n)
    enc = _encryptor(n, h_s)
    out = []
    for c, add in zip(u_host, (np.rint((u - 2 * t) * scale)).astype(np.int64).tolist(), strict=True):
        # [[a]] * (1 + k n) = [[a + k]].  Re-randomised because these go back to the host, who sent [[a]]:
        # without fresh randomness it divides by its own ciphertext and reads k (the labels, at w = 0).
        out.append(enc.rerandomize(int(gmpy2.mpz(c) * ((1 + _encode(int(add), n) * nn) % n2) % n2)))
    # 8 L = 8 m log 2 + sum u_g^2 - 4 sum t u_g + sum (2 u_g - 4 t) u_h + sum u_h^2, at scale^2.
    cts = [gmpy2.mpz(c) for c in u_host]
    inv = [gmpy2.invert(c, n2) for c in cts]
    cross = _weighted_product(cts, inv, np.rint((2 * u - 4 * t) * scale).astype(np.int64), n2)
    known = 8 * len(t) * math.log(2) + float(u @ u) - 4 * float(t @ u)
    loss = cross * gmpy2.mpz(usq_host) % n2
    loss = loss * ((1 + _encode(round(known * scale * scale), n) * nn) % n2) % n2
    # Built from the host's ciphertexts and powers of them: fresh randomness before it leaves the guest.
    return out, enc.rerandomize(int(loss))


def v_masked_gradient(df: pl.DataFrame, *, token: int, party: str, n: int, h_s: int | None, xscale: int,
                      residuals: list[int], intercept: bool) -> list[int]:
    """Encrypted ``X' (4 d)`` of this party's columns (and intercept), one-time padded before it leaves."""
    st = _MEMORY[(token, party)]
    n2 = gmpy2.mpz(n) ** 2
    cts = [gmpy2.mpz(c) for c in residuals]
    inv = [gmpy2.invert(c, n2) for c in cts]
    xq = np.rint(st["z"] * xscale).astype(np.int64)
    cols = [xq[:, j] for j in range(xq.shape[1])]
    if intercept:
        cols.append(np.full(xq.shape[0], xscale, dtype=np.int64))
    pads = [secrets.randbelow(n) for _ in cols]
    st["pads"] = pads
    enc = _encryptor(n, h_s)
    # Each pad is encrypted freshly here, so each outgoing product carries fresh randomness: it is already
    # re-randomised (and its plaintext is uniformly random to the key holder).
    enc_pads = enc.encrypt_many(pads)
    return [int(_weighted_product(cts, inv, col, n2) * gmpy2.mpz(p) % n2) for col, p in zip(cols, enc_pads,
                                                                                             strict=True)]


def v_update(df: pl.DataFrame, *, token: int, party: str, n: int, padded: list[int], scale: int, xscale: int,
             step: float, c: float, intercept: bool) -> None:
    """Remove the pads, form this party's own gradient and take the accelerated step (inside the party)."""
    st = _MEMORY[(token, party)]
    m = st["z"].shape[0]
    g = np.array([_decode(v - p, n) for v, p in zip(padded, st.pop("pads"), strict=True)], dtype=float)
    g /= 4.0 * scale * xscale  # sum_i d_i x_i
    gw = (c * g[: st["z"].shape[1]] + st["y"]) / m  # gradient of the mean objective (C sum loss + |w|^2/2) / m
    w_new = st["y"] - step * gw
    st["w_prev"], st["w"] = st["w"], w_new
    if intercept:
        gb = c * g[-1] / m
        b_new = st["yb"] - step * gb
        st["b_prev"], st["b"] = st["b"], b_new


def v_result(df: pl.DataFrame, *, token: int, party: str) -> dict[str, Any]:
    """Return the party's final weights (joined into one model only in the simulation) and forget the run."""
    st = _MEMORY.pop((token, party))
    return {"w": st["w"].copy(), "b": float(st["b"])}


def v_forget(df: pl.DataFrame, *, token: int, party: str) -> None:
    """Drop the run's party memory (after an error)."""
    _MEMORY.pop((token, party), None)


def v_rows(df: pl.DataFrame, *, rows: np.ndarray, features: list[str], target: str | None) -> tuple[pl.DataFrame,
                                                                                                      Any]:
    """Aligned raw rows, for the simulation-only comparison."""
    x = df.select(features)[rows.tolist()]
    y = df.get_column(target)[rows.tolist()].to_numpy() if target is not None else None
    return x, y


# -- the run result ---------------------------------------------------------------------------------------
@dataclass(repr=False)
class VerticalRun:
    """The outcome of :func:`fit_vertical`.

    Attributes
    ----------
    model : estimator
        A fitted ``LogisticRegression`` (or pipeline) over the guest's then the
        host's feature columns.  Simulation only: in a deployment each party
        keeps its own coefficients and prediction is joint.
    coef_by_party : dict of str to numpy.ndarray
        Each party's coefficients (original feature scale).
    intercept : float
        Held by the guest.
    features_by_party : dict of str to list of str
    guest, host : str
        Label holder and feature-only party.
    history : polars.DataFrame
        One row per iteration: ``round, loss`` (Taylor loss per row), ``seconds, bytes``.
    psi : PSIResult
        The alignment.
    n_aligned, n_train, n_test : int
    transcript : Transcript
    leakage : str
        Who learns what.
    elapsed : float
    """

    model: Any
    coef_by_party: dict[str, np.ndarray]
    intercept: float
    features_by_party: dict[str, list[str]]
    guest: str
    host: str
    target: str
    history: pl.DataFrame
    psi: Any
    n_aligned: int
    n_train: int
    n_test: int
    transcript: Transcript
    key_bits: int
    leakage: str
    elapsed: float
    seed: int
    test_size: float
    _fed: Any = field(default=None, repr=False)
    _template: Any = field(default=None, repr=False)
    _test: np.ndarray | None = field(default=None, repr=False)
    _comparison: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes sent by the training protocol (PSI excluded)."""
        return self.transcript.nbytes

    @property
    def test_mask(self) -> np.ndarray:
        """Which aligned rows (in the PSI's common order) are held out (public: both parties know it)."""
        assert self._test is not None
        return self._test

    @property
    def features(self) -> list[str]:
        """All feature columns, guest's first (the model's input order)."""
        return [*self.features_by_party[self.guest], *self.features_by_party[self.host]]

    def _aligned(self) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, pl.DataFrame]:
        fed = self._fed
        if fed is None:
            raise ConfigurationError("the comparison needs the federation; this run was unpickled without it")
        if fed[self.guest].remote or fed[self.host].remote:
            raise ConfigurationError(
                "the vertical comparison joins both parties' raw columns (simulation only); with parties on "
                "other nodes (the Ray backend) rows never leave them: compare on a local federation instead"
            )
        # The PSI order is fresh per run; the baselines use the guest's row order so that solvers that stop
        # early (row-order dependent) give the same baselines for the same seed.
        order = np.argsort(self.psi.positions[self.guest], kind="stable")
        pos = {p: v[order] for p, v in self.psi.positions.items()}
        xg, y = fed[self.guest].compute(partial(v_rows, rows=pos[self.guest], features=self.features_by_party[
            self.guest], target=self.target))
        xh, _ = fed[self.host].compute(partial(v_rows, rows=pos[self.host], features=self.features_by_party[self.host],
                                               target=None))
        return pl.concat([xg, xh], how="horizontal"), y, self.test_mask[order], xg

    def compare(self) -> pl.DataFrame:
        """Guest-only, vertical federated and centralized (joined) models on the aligned held-out rows.

        Simulation only: scoring the joined rows pools both parties' columns.
        """
        if self._comparison is not None:
            return self._comparison
        from sklearn.base import clone

        x, y, test, xg = self._aligned()
        tr, te = pl.Series(~test), pl.Series(test)
        rows = []
        local = clone(self._template)
        gcols = self.features_by_party[self.guest]
        try:
            quiet(local.fit, xg.filter(tr), y[~test])
            rows.append((f"local:{self.guest}", f"{self.guest}'s columns only", float(local.score(xg.filter(te),
                                                                                                 y[test])), ""))
        except Exception as exc:
            rows.append((f"local:{self.guest}", f"{self.guest}'s columns only", None, str(exc)[:120]))
        rows.append((f"local:{self.host}", f"{self.host}'s columns only", None, "holds no labels: cannot train alone"))
        rows.append(("federated", "both parties' columns, vertical protocol (Taylor loss)",
                     float(self.model.score(x.filter(te), y[test])), "scored on joined rows (simulation only)"))
        central = clone(self._template)
        quiet(central.fit, x.filter(tr), y[~test])
        rows.append(("centralized", "joined rows (simulation only)", float(central.score(x.filter(te), y[test])),
                     "simulation only: joins raw rows"))
        del x, xg, gcols
        self._comparison = pl.DataFrame(rows, schema={"model": pl.String, "trained_on": pl.String,
                                                      "score": pl.Float64, "note": pl.String}, orient="row")
        return self._comparison

    def plot(self, kind: str = "compare") -> Any:
        """Plotly figure: ``"compare"`` (accuracy per model) or ``"history"`` (loss per iteration)."""
        import plotly.graph_objects as go

        if kind == "compare":
            tab = self.compare()
            fig = go.Figure(go.Bar(x=tab["model"].to_list(), y=tab["score"].to_list(),
                                   hovertext=tab["trained_on"].to_list()))
            fig.update_layout(title="Vertical logistic regression: accuracy on aligned held-out rows "
                              "(local and centralized are simulation-only baselines)", yaxis_title="accuracy")
            return fig
        if kind == "history":
            fig = go.Figure(go.Scatter(x=self.history["round"].to_list(), y=self.history["loss"].to_list(),
                                       mode="lines+markers"))
            fig.update_layout(title="Taylor loss per iteration", xaxis_title="iteration", yaxis_title="loss")
            return fig
        raise ConfigurationError(f"kind must be 'compare' or 'history', got {kind!r}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fed"] = None
        return state

    def __repr__(self) -> str:
        last = self.history["loss"].drop_nulls()
        lines = [
            f"VerticalRun: logistic regression of {self.target!r} (guest {self.guest!r}, "
            f"{len(self.features_by_party[self.guest])} features) with host {self.host!r} "
            f"({len(self.features_by_party[self.host])} features)",
            f"  PSI: {self.n_aligned} shared rows ({self.n_train} train, {self.n_test} held out)",
            f"  {self.history.height} iterations, {self.key_bits}-bit Paillier, {len(self.transcript)} messages, "
            f"{_fmt_bytes(self.nbytes)}, {self.elapsed:.2f} s; final Taylor loss "
            + (f"{float(last[-1]):.4f}" if len(last) else "—"),
        ]
        if self._comparison is not None:
            lines.append("  accuracy on held-out rows: " + ", ".join(
                f"{m}={'—' if s is None else f'{s:.4f}'}" for m, s in zip(self._comparison["model"],
                                                                        self._comparison["score"], strict=True)))
        else:
            lines.append("  .compare() for guest-only and centralized baselines (simulation only)")
        lines.append(f"  leakage: {self.leakage}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        last = self.history["loss"].drop_nulls()
        rows = [
            ("guest (labels)", escape(f"{self.guest}: {len(self.features_by_party[self.guest])} features")),
            ("host", escape(f"{self.host}: {len(self.features_by_party[self.host])} features")),
            ("aligned rows", f"{self.n_aligned} ({self.n_train} train, {self.n_test} held out)"),
            ("training", f"{self.history.height} iterations, Taylor loss "
                         + (f"{float(last[-1]):.4f}" if len(last) else "—")),
            ("cost", f"{self.elapsed:.2f} s, {_fmt_bytes(self.nbytes)}, {self.key_bits}-bit Paillier"),
            ("who learns what", escape(self.leakage)),
        ]
        body = ""
        if self._comparison is not None:
            body = "<table><tr><th>model</th><th>accuracy</th><th>note</th></tr>" + "".join(
                f"<tr><td>{escape(m)}</td><td>{'—' if s is None else f'{s:.4f}'}</td><td>{escape(n)}</td></tr>"
                for m, s, n in self._comparison.select("model", "score", "note").iter_rows()) + "</table>"
        return render_card("Vertical federated logistic regression", rows, body)


# -- orchestration ---------------------------------------------------------------------------------------
def _split_estimator(estimator: Any) -> tuple[list[Any], Any]:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    msg = ("vertical training supports LogisticRegression (L2 penalty or none), optionally in a Pipeline after "
           "SimpleImputer / StandardScaler steps (fitted by each party on its own columns)")
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    final = steps[-1]
    if not isinstance(final, LogisticRegression):
        raise UnsupportedEstimatorError(f"{type(final).__name__}: {msg}")
    from .glm import _penalty_of

    if _penalty_of(final) in ("l1", "elasticnet"):
        raise UnsupportedEstimatorError(f"LogisticRegression with an L1/elastic-net penalty: {msg}")
    for s in steps[:-1]:
        if not isinstance(s, SimpleImputer | StandardScaler):
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


def fit_vertical(
    fed: Any,
    estimator: Any,
    *,
    label_party: str,
    target: str,
    on: str | Sequence[str],
    parties: Sequence[str] | None = None,
    features: dict[str, Sequence[str]] | None = None,
    rounds: int = 30,
    learning_rate: float | None = None,
    tol: float = 1e-7,
    test_size: float = 0.25,
    seed: int = 0,
    frac_bits: int = 16,
    feature_bits: int = 12,
    psi_options: dict[str, Any] | None = None,
) -> VerticalRun:
    """Vertical logistic regression of ``target`` (held by ``label_party``) with another party's columns.

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
    features : dict, optional
        ``{party: [columns]}``; default: each party's numeric non-identifier columns.
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

    Returns
    -------
    VerticalRun

    Raises
    ------
    UnsupportedEstimatorError, MissingColumnError, NonNumericColumnError, TooFewPartiesError, ConfigurationError
    """
    from sklearn.base import clone

    t_start = time.perf_counter()
    pre_steps, lr = _split_estimator(estimator)
    names = list(parties) if parties is not None else fed.party_names
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
    keys = [on] if isinstance(on, str) else list(on)
    for p in (guest, host):
        p.require_columns(keys)
    exclude = set(keys) | {target}
    feats = {p.name: _party_features(p, (features or {}).get(p.name), exclude) for p in (guest, host)}
    if not feats[host.name]:
        raise ConfigurationError(f"party {host.name!r} has no usable feature column")
    if not 0 <= test_size < 1:
        raise ConfigurationError(f"test_size must be in [0, 1), got {test_size!r}")
    psi = fed.intersect(on=on, parties=[guest.name, host.name], mode="align", **(psi_options or {}))
    m_all = int(psi.size)
    if m_all < 4:
        raise ConfigurationError(f"only {m_all} shared rows after PSI: too few to train")
    keys_ = fed.keys
    n, h_s = keys_.n, (keys_.h_s if fed.fast_encryption else None)
    ct_width = (2 * n.bit_length() + 7) // 8
    pt_width = (n.bit_length() + 7) // 8
    channel = fed._channel("vertical_lr")
    transcript = Transcript(keep_payloads=fed.audit)
    token = next(_tokens)
    scale, xscale = 1 << frac_bits, 1 << feature_bits
    unpenalised = np.isinf(float(lr.C)) or getattr(lr, "penalty", "deprecated") is None
    c = 1e12 if unpenalised else float(lr.C)
    rows_hist: list[dict[str, Any]] = []
    bits = guest.compute(partial(v_split, rows=psi.positions[guest.name], on=keys, seed=seed, test_size=test_size))
    bits = channel.send(guest.name, host.name, "split-mask", bits, encrypted=False)
    test = np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:m_all].astype(bool)
    if (~test).sum() < 2:
        raise ConfigurationError(f"only {int((~test).sum())} aligned training rows; lower test_size")
    try:
        setups = {}
        for p in (guest, host):
            channel.send("keyholder", p.name, "public-key",
                         n.to_bytes(pt_width, "big") + (h_s.to_bytes(ct_width, "big") if h_s else b""),
                         encrypted=False)
            setups[p.name] = p.compute(partial(v_setup, token=token, party=p.name, rows=psi.positions[p.name],
                                               test=test, features=feats[p.name], steps=pre_steps,
                                               target=target if p is guest else None))
            channel.send(p.name, "coordinator", "curvature-bound", np.float64(setups[p.name]["lam"]).tobytes(),
                         encrypted=False)
        m = int((~test).sum())
        # Mean objective (C * sum loss + |w|^2 / 2) / m: Hessian C/4 Z'Z/m + I/m, bounded by the block sum.
        curvature = 0.25 * c * (setups[guest.name]["lam"] + setups[host.name]["lam"]) + 1.0 / m
        step = learning_rate if learning_rate is not None else 1.0 / curvature
        for p in (guest, host):
            # Each party needs the step; recorded because it reveals the other's curvature bound.
            channel.send("coordinator", p.name, "step-size", np.float64(step).tobytes(), encrypted=False)
        prev_loss: float | None = None
        for it in range(1, int(rounds) + 1):
            t0 = time.perf_counter()
            b0 = channel.run.nbytes
            beta = (it - 1) / (it + 2)
            u_h, usq = host.compute(partial(v_host_forward, token=token, party=host.name, n=n, h_s=h_s, beta=beta,
                                            scale=scale))
            data = channel.send(host.name, guest.name, "encrypted-partial-scores",
                                ints_to_bytes([*u_h, usq], ct_width), encrypted=True)
            recv = bytes_to_ints(data, ct_width)
            resid, loss_ct = guest.compute(partial(v_guest_residual, token=token, party=guest.name, n=n, h_s=h_s,
                                                   beta=beta, scale=scale, u_host=recv[:-1], usq_host=recv[-1]))
            data = channel.send(guest.name, host.name, "encrypted-residuals", ints_to_bytes(resid, ct_width),
                                encrypted=True)
            resid_h = bytes_to_ints(data, ct_width)
            padded = {}
            for p, res, icpt in ((host, resid_h, False), (guest, resid, bool(lr.fit_intercept))):
                g = p.compute(partial(v_masked_gradient, token=token, party=p.name, n=n, h_s=h_s, xscale=xscale,
                                      residuals=res, intercept=icpt))
                extra = [loss_ct] if p is guest else []
                data = channel.send(p.name, "keyholder", "padded-gradient", ints_to_bytes([*g, *extra], ct_width),
                                    encrypted=True)
                padded[p.name] = bytes_to_ints(data, ct_width)
            sk = keys_.private_key
            loss8 = None
            for p, icpt in ((host, False), (guest, bool(lr.fit_intercept))):
                cts = padded[p.name]
                if p is guest:
                    loss8 = _decode(int(sk.raw_decrypt(cts[-1])), n)
                    cts = cts[:-1]
                plain = [int(sk.raw_decrypt(v)) for v in cts]
                data = channel.send("keyholder", p.name, "padded-gradient-plain", ints_to_bytes(plain, pt_width),
                                    encrypted=True)  # still one-time padded: unreadable without the pads
                p.compute(partial(v_update, token=token, party=p.name, n=n, padded=bytes_to_ints(data, pt_width),
                                  scale=scale, xscale=xscale, step=step, c=c, intercept=icpt))
            assert loss8 is not None
            loss = loss8 / (8.0 * scale * scale * m)
            for p in (guest, host):
                channel.send("keyholder", p.name, "loss", np.float64(loss).tobytes(), encrypted=False)
            rows_hist.append({"round": it, "loss": loss, "seconds": time.perf_counter() - t0,
                              "bytes": channel.run.nbytes - b0, "status": "ok"})
            if prev_loss is not None and abs(prev_loss - loss) < tol * max(1.0, abs(loss)):
                rows_hist[-1]["status"] = "converged"
                break
            prev_loss = loss
        res = {p.name: p.compute(partial(v_result, token=token, party=p.name)) for p in (guest, host)}
    except BaseException:
        for p in (guest, host):
            p.compute(partial(v_forget, token=token, party=p.name))
        raise
    transcript.extend(channel.run)
    # Simulation only: assemble the joint model over both parties' columns on the original scale.
    coef_by_party, offsets = {}, {}
    for p in (guest, host):
        s = setups[p.name]
        w = res[p.name]["w"] / s["scale"]
        coef_by_party[p.name] = w
        offsets[p.name] = float(w @ s["mean"])
    # Returning to the original feature scale moves the intercept by the host's sum w_j * mean_j / scale_j.
    channel2 = fed._channel("vertical_lr")
    channel2.send(host.name, guest.name, "intercept-offset", np.float64(offsets[host.name]).tobytes(),
                  encrypted=False)
    transcript.extend(channel2.run)
    intercept = res[guest.name]["b"] - offsets[guest.name] - offsets[host.name]
    model = _assemble(estimator, lr, pre_steps, setups, guest.name, host.name, feats, coef_by_party, intercept,
                      rows_hist)
    history = pl.DataFrame(rows_hist, schema={"round": pl.Int64, "loss": pl.Float64, "seconds": pl.Float64,
                                              "bytes": pl.Int64, "status": pl.String})
    run = VerticalRun(
        model=model, coef_by_party=coef_by_party, intercept=float(intercept), features_by_party=feats,
        guest=guest.name, host=host.name, target=target, history=history, psi=psi, n_aligned=m_all,
        n_train=int((~test).sum()), n_test=int(test.sum()), transcript=transcript, key_bits=keys_.key_bits,
        leakage=LEAKAGE, elapsed=time.perf_counter() - t_start, seed=int(seed), test_size=float(test_size),
        _fed=fed, _template=clone(estimator), _test=test,
    )
    fed.history.append(run)
    return run


def _assemble(estimator: Any, lr: Any, pre_steps: list[Any], setups: dict[str, Any], guest: str, host: str,
              feats: dict[str, list[str]], coef_by_party: dict[str, np.ndarray], intercept: float,
              history: list[dict[str, Any]]) -> Any:
    """One scikit-learn model over ``guest + host`` columns (simulation only)."""
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    cols = [*feats[guest], *feats[host]]
    classes = setups[guest]["classes"]
    fitted_steps = []
    for i, step in enumerate(pre_steps):
        parts = [setups[guest]["fitted"][i], setups[host]["fitted"][i]]
        fitted_steps.append(_merge_step(step, parts, cols if i == 0 else None))
    width = len(cols)
    model = clone(lr)
    x0 = np.zeros((2, width)) + np.arange(2)[:, None]
    x_in: Any = pl.DataFrame({c: x0[:, j] for j, c in enumerate(cols)}) if not pre_steps else x0
    quiet(model.fit, x_in, classes)
    model.coef_ = np.concatenate([coef_by_party[guest], coef_by_party[host]])[None, :]
    model.intercept_ = np.array([intercept])
    model.n_iter_ = np.array([len(history)], dtype=np.int32)
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
    x0 = np.zeros((2, width)) + np.arange(2)[:, None]
    quiet(merged.fit, pl.DataFrame({c: x0[:, j] for j, c in enumerate(cols)}) if cols else x0)
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
