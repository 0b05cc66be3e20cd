"""The vertical logistic-regression protocol: what each party computes (Hardy et al. 2017; FATE hetero-LR).

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
receives the step size ``1 / (C/4 (lam_guest + lam_host) + 1/m)``, or, with a
given ``learning_rate``, computes and sends no bound and receives that rate; the key
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
before it leaves (:meth:`~fedbench.crypto.paillier.FastEncryptor.rerandomize`; the ciphertext
arithmetic is in :mod:`fedbench.crypto.arithmetic`):
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
  standardised Gram matrix), unless ``learning_rate`` is given.
* **whoever receives the fitted model** (the analyst: :mod:`fedbench.learn.vertical.api`
  assembles one scikit-learn model, a simulation convenience): both parties'
  coefficients, fitted preprocessing (imputer values, scaler means, variances
  and counts of each party's columns) and the label set.
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

import contextlib
import hashlib
import math
import secrets
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np
import polars as pl

from ...crypto.arithmetic import add_plain, cached_encryptor, decode_signed, encode_signed, inverses, weighted_product
from ...crypto.paillier import PaillierKeys
from ...errors import ConfigurationError, NullValuesError, ProtocolError
from ...party import recall_in_party, remember_in_party
from ...wire import bytes_to_ints, ints_to_bytes
from ..stages import quiet

if TYPE_CHECKING:
    from ...coordinator import Coordinator

__all__ = ["LEAKAGE", "Exchange", "v_forget", "v_guest_residual", "v_host_forward", "v_masked_gradient", "v_result",
           "v_rows", "v_setup", "v_split", "v_update"]

LEAKAGE = (
    "guest (label holder) and host each learn their own gradient per iteration (at the first iteration the "
    "host's is -X_h' t / 2, linear in the labels), the (Taylor) loss and the step size (hence, unless "
    "learning_rate is given, the other's curvature bound); the guest also learns the host's intercept offset; "
    "labels, residuals and partial scores only ever cross encrypted, and every ciphertext a party returns is "
    "re-randomised; the key holder decrypts one-time-padded gradients (uniformly random to it) and the loss; "
    "the coordinator receives both curvature bounds unless learning_rate is given; the assembled model holds "
    "both parties' coefficients, fitted preprocessing (imputer values, scaler means, variances and counts) and "
    "the label set; both parties learn which of their rows are shared (PSI). Collusion of the key holder with "
    "a party breaks the protocol."
)


_tokens = count(1)


def _key(token: int) -> str:
    return f"fedbench.vertical_lr/{token}"


def _state(df: pl.DataFrame, token: int) -> dict[str, Any]:
    """The run's state, kept in the party's own memory (:func:`fedbench.party.remember_in_party`)."""
    return recall_in_party(df, key=_key(token), keep=True)


# -- inside a party --------------------------------------------------------------------------------------
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


def v_setup(df: pl.DataFrame, *, token: int, rows: np.ndarray, test: np.ndarray, features: list[str],
            steps: list[Any], target: str | None, bound: bool = True) -> dict[str, Any]:
    """Align, split, fit this party's own preprocessing and standardise (inside the party).

    Keeps the standardised training matrix (and labels) in party memory and
    returns only this party's column statistics and, if ``bound``, its curvature
    bound (``None`` otherwise: a given learning rate needs none).
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
    lam = None
    if bound:
        lam = float(np.linalg.eigvalsh(gram_cols.T @ gram_cols / max(1, z.shape[0]))[-1]) if gram_cols.shape[1] else 0.0
    remember_in_party(df, key=_key(token), fn=lambda _df: state)
    return {"fitted": fitted, "mean": mean, "scale": scale, "lam": lam,
            "classes": state.get("classes")}


def v_host_forward(df: pl.DataFrame, *, token: int, n: int, h_s: int | None, beta: float,
                   scale: int) -> tuple[list[int], int]:
    """Host: encrypted partial scores at the look-ahead point, and their encrypted sum of squares."""
    st = _state(df, token)
    st["y"] = st["w"] + beta * (st["w"] - st["w_prev"])
    u = st["z"] @ st["y"]
    enc = cached_encryptor(n, h_s)
    cts = enc.encrypt_many([encode_signed(round(v * scale), n) for v in u.tolist()])
    usq = enc.encrypt_many([encode_signed(round(float(u @ u) * scale * scale), n)])[0]
    return cts, usq


def v_guest_residual(df: pl.DataFrame, *, token: int, n: int, h_s: int | None, beta: float, scale: int,
                     u_host: list[int], usq_host: int) -> tuple[list[int], int]:
    """Guest: encrypted ``4 d = u_host + u_guest - 2 t`` per row, and the encrypted ``8 * loss`` (scaled)."""
    st = _state(df, token)
    st["y"] = st["w"] + beta * (st["w"] - st["w_prev"])
    st["yb"] = st["b"] + beta * (st["b"] - st["b_prev"])
    u = st["z"] @ st["y"] + st["yb"]
    t = st["t"]
    n2 = gmpy2.mpz(n) ** 2
    enc = cached_encryptor(n, h_s)
    # [[a]] * (1 + k n) = [[a + k]].  Re-randomised because these go back to the host, who sent [[a]]:
    # without fresh randomness it divides by its own ciphertext and reads k (the labels, at w = 0).
    out = [enc.rerandomize(int(add_plain(c, k, n)))
           for c, k in zip(u_host, (np.rint((u - 2 * t) * scale)).astype(np.int64).tolist(), strict=True)]
    # 8 L = 8 m log 2 + sum u_g^2 - 4 sum t u_g + sum (2 u_g - 4 t) u_h + sum u_h^2, at scale^2.
    cts = [gmpy2.mpz(c) for c in u_host]
    cross = weighted_product(cts, inverses(cts, n), np.rint((2 * u - 4 * t) * scale).astype(np.int64), n2)
    known = 8 * len(t) * math.log(2) + float(u @ u) - 4 * float(t @ u)
    loss = add_plain(cross * gmpy2.mpz(usq_host) % n2, round(known * scale * scale), n)
    # Built from the host's ciphertexts and powers of them: fresh randomness before it leaves the guest.
    return out, enc.rerandomize(int(loss))


def v_masked_gradient(df: pl.DataFrame, *, token: int, n: int, h_s: int | None, xscale: int,
                      residuals: list[int], intercept: bool) -> list[int]:
    """Encrypted ``X' (4 d)`` of this party's columns (and intercept), one-time padded before it leaves."""
    st = _state(df, token)
    n2 = gmpy2.mpz(n) ** 2
    cts = [gmpy2.mpz(c) for c in residuals]
    inv = inverses(cts, n)
    xq = np.rint(st["z"] * xscale).astype(np.int64)
    cols = [xq[:, j] for j in range(xq.shape[1])]
    if intercept:
        cols.append(np.full(xq.shape[0], xscale, dtype=np.int64))
    pads = [secrets.randbelow(n) for _ in cols]
    st["pads"] = pads
    enc = cached_encryptor(n, h_s)
    # Each pad is encrypted freshly here, so each outgoing product carries fresh randomness: it is already
    # re-randomised (and its plaintext is uniformly random to the key holder).
    enc_pads = enc.encrypt_many(pads)
    return [int(weighted_product(cts, inv, col, n2) * gmpy2.mpz(p) % n2)
            for col, p in zip(cols, enc_pads, strict=True)]


def v_update(df: pl.DataFrame, *, token: int, n: int, padded: list[int], scale: int, xscale: int,
             step: float, c: float, intercept: bool) -> None:
    """Remove the pads, form this party's own gradient and take the accelerated step (inside the party)."""
    st = _state(df, token)
    m = st["z"].shape[0]
    g = np.array([decode_signed(v - p, n) for v, p in zip(padded, st.pop("pads"), strict=True)], dtype=float)
    g /= 4.0 * scale * xscale  # sum_i d_i x_i
    gw = (c * g[: st["z"].shape[1]] + st["y"]) / m  # gradient of the mean objective (C sum loss + |w|^2/2) / m
    w_new = st["y"] - step * gw
    st["w_prev"], st["w"] = st["w"], w_new
    if intercept:
        gb = c * g[-1] / m
        b_new = st["yb"] - step * gb
        st["b_prev"], st["b"] = st["b"], b_new


def v_result(df: pl.DataFrame, *, token: int) -> dict[str, Any]:
    """Return the party's final weights (joined into one model only in the simulation) and forget the run."""
    st = recall_in_party(df, key=_key(token))
    return {"w": st["w"].copy(), "b": float(st["b"])}


def v_forget(df: pl.DataFrame, *, token: int) -> None:
    """Drop the run's party memory (after an error)."""
    with contextlib.suppress(ProtocolError):  # nothing kept (the set-up failed first) is fine
        recall_in_party(df, key=_key(token))


def v_rows(df: pl.DataFrame, *, rows: np.ndarray, features: list[str], target: str | None
           ) -> tuple[pl.DataFrame, Any]:
    """Aligned raw rows, for the simulation-only comparison."""
    x = df.select(features)[rows.tolist()]
    y = df.get_column(target)[rows.tolist()].to_numpy() if target is not None else None
    return x, y


# -- the message flow (run by the coordinator) -------------------------------------------------------------
@dataclass
class Exchange:
    """One run of the protocol between ``guest`` and ``host``: its channel, keys and fixed-point scales."""

    coord: Coordinator
    guest: Any
    host: Any
    c: float
    intercept: bool
    frac_bits: int
    feature_bits: int
    token: int = field(default_factory=lambda: next(_tokens))

    def __post_init__(self) -> None:
        keys = self.coord.keys
        if not isinstance(keys, PaillierKeys):
            raise ConfigurationError(
                "vertical training decrypts padded gradients at a key holder; it needs keys='single', "
                "not a threshold key")
        self.keys = keys
        self.n = keys.n
        self.h_s = keys.h_s if self.coord.fast_encryption else None
        self.ct_width = (2 * self.n.bit_length() + 7) // 8
        self.pt_width = (self.n.bit_length() + 7) // 8
        self.scale, self.xscale = 1 << self.frac_bits, 1 << self.feature_bits
        self.channel = self.coord.channel("vertical_lr")

    def send_ints(self, sender: str, receiver: str, kind: str, values: list[int], *, plain: bool = False) -> list[int]:
        """Send integers (ciphertexts, or padded plaintexts with ``plain``) and return what the receiver got."""
        width = self.pt_width if plain else self.ct_width
        return bytes_to_ints(self.channel.send(sender, receiver, kind, ints_to_bytes(values, width), encrypted=True),
                             width)

    def send_float(self, sender: str, receiver: str, kind: str, value: float) -> None:
        """A public float in the clear (curvature bound, step size, loss)."""
        self.channel.send(sender, receiver, kind, np.float64(value).tobytes(), encrypted=False)

    def split(self, rows: np.ndarray, on: list[str], seed: int, test_size: float, m_all: int) -> np.ndarray:
        """The guest draws the held-out mask and sends it to the host."""
        bits = self.guest.compute(partial(v_split, rows=rows, on=on, seed=seed, test_size=test_size))
        bits = self.channel.send(self.guest.name, self.host.name, "split-mask", bits, encrypted=False)
        return np.unpackbits(np.frombuffer(bits, dtype=np.uint8))[:m_all].astype(bool)

    def setup(self, positions: dict[str, np.ndarray], test: np.ndarray, feats: dict[str, list[str]],
              steps: list[Any], target: str, *, bounds: bool = True) -> dict[str, dict[str, Any]]:
        """Public key out, each party's preprocessing and curvature bound in (kept state stays in the parties).

        With ``bounds=False`` (a learning rate was given) no party computes or sends its curvature bound.
        """
        n, h_s = self.n, self.h_s
        setups = {}
        for p in (self.guest, self.host):
            self.channel.send("keyholder", p.name, "public-key",
                              n.to_bytes(self.pt_width, "big") + (h_s.to_bytes(self.ct_width, "big") if h_s else b""),
                              encrypted=False)
            setups[p.name] = p.compute(partial(v_setup, token=self.token, rows=positions[p.name], test=test,
                                               features=feats[p.name], steps=steps,
                                               target=target if p is self.guest else None, bound=bounds))
            if bounds:
                self.send_float(p.name, "coordinator", "curvature-bound", setups[p.name]["lam"])
        return setups

    def step_size(self, setups: dict[str, dict[str, Any]], m: int, learning_rate: float | None) -> float:
        """``1/L`` of the mean objective (or the given rate), sent to both parties."""
        # Mean objective (C * sum loss + |w|^2 / 2) / m: Hessian C/4 Z'Z/m + I/m, bounded by the block sum.
        if learning_rate is not None:
            step = learning_rate
        else:
            step = 1.0 / (0.25 * self.c * sum(s["lam"] for s in setups.values()) + 1.0 / m)
        for p in (self.guest, self.host):
            # Each party needs the step; recorded because it reveals the other's curvature bound.
            self.send_float("coordinator", p.name, "step-size", step)
        return step

    def iterate(self, it: int, step: float, m: int) -> float:
        """One encrypted gradient exchange (Nesterov look-ahead at ``beta``); returns the public loss."""
        guest, host, token, n, h_s = self.guest, self.host, self.token, self.n, self.h_s
        beta = (it - 1) / (it + 2)
        u_h, usq = host.compute(partial(v_host_forward, token=token, n=n, h_s=h_s, beta=beta, scale=self.scale))
        recv = self.send_ints(host.name, guest.name, "encrypted-partial-scores", [*u_h, usq])
        resid, loss_ct = guest.compute(partial(v_guest_residual, token=token, n=n, h_s=h_s, beta=beta,
                                               scale=self.scale, u_host=recv[:-1], usq_host=recv[-1]))
        resid_h = self.send_ints(guest.name, host.name, "encrypted-residuals", resid)
        padded = {}
        for p, res, icpt in ((host, resid_h, False), (guest, resid, self.intercept)):
            g = p.compute(partial(v_masked_gradient, token=token, n=n, h_s=h_s, xscale=self.xscale, residuals=res,
                                  intercept=icpt))
            padded[p.name] = self.send_ints(p.name, "keyholder", "padded-gradient",
                                            [*g, *([loss_ct] if p is guest else [])])
        sk = self.keys.private_key
        loss8 = decode_signed(int(sk.raw_decrypt(padded[guest.name].pop())), n)
        for p, icpt in ((host, False), (guest, self.intercept)):
            plain = [int(sk.raw_decrypt(v)) for v in padded[p.name]]
            # Still one-time padded: unreadable without the pads.
            got = self.send_ints("keyholder", p.name, "padded-gradient-plain", plain, plain=True)
            p.compute(partial(v_update, token=token, n=n, padded=got, scale=self.scale, xscale=self.xscale,
                              step=step, c=self.c, intercept=icpt))
        loss = loss8 / (8.0 * self.scale * self.scale * m)
        for p in (guest, host):
            self.send_float("keyholder", p.name, "loss", loss)
        return loss

    def weights(self) -> dict[str, dict[str, Any]]:
        """Each party's final weights (simulation only: a deployment keeps them apart)."""
        return {p.name: p.compute(partial(v_result, token=self.token)) for p in (self.guest, self.host)}

    def forget(self) -> None:
        """Drop the parties' kept state after an error."""
        for p in (self.guest, self.host):
            p.compute(partial(v_forget, token=self.token))
