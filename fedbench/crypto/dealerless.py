"""Dealerless threshold Paillier keys: the parties generate the key among themselves (TNO's implementation).

The distributed key generation is TNO's ``tno.mpc.protocols.distributed_keygen``
(optional extra ``fedbench[dealerless]``), which implements the semi-honest
protocol of Nishide and Sakurai (*Distributed Paillier cryptosystem without
trusted dealer*, WISA 2010) as described by van Kesteren, van de Kamp, Veugen
and others (*An implementation of the Paillier crypto system with threshold
decryption without a trusted dealer*, IACR ePrint 2019/1136).  Every party runs
its side of the protocol over TNO's own communication pool (HTTP on
``127.0.0.1`` ports inside this process, one asyncio loop in a helper thread);
those messages are TNO's and are not recorded in fedbench's transcript (the
transcript records one ``key-setup`` summary per party, and the public
verification keys).

What fedbench takes from it: the modulus ``n`` (an ordinary Paillier public
key, ``g = n + 1``), each party's integer Shamir share ``s_i`` of the secret
and the public value ``theta``.  TNO's secret is shared with a polynomial of
degree ``2 c`` for ``c`` tolerated corruptions (it is a product of two
degree-``c`` sharings), so decryption needs ``t = 2 c + 1`` parties and ``t``
must be odd.  Decryption then runs fedbench's own
:mod:`fedbench.crypto.threshold` protocol on these shares (partial
decryptions with zero-knowledge proofs against verification keys
``v_i = v^(Delta s_i)``, which each party computes from its own share and
publishes at set-up).

Caveats, stated truthfully: the set-up is secure against honest-but-curious
parties only (TNO's model), the verification keys are not proven correct at
set-up, and ``n`` is not a product of safe primes, so the proofs' soundness
argument of Damgard and Jurik (which uses the safe-prime group structure) does
not carry over in full: a wrong partial decryption is still caught unless its
error lies in a small subgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gmpy2
from phe import paillier

from ..errors import ConfigurationError, FeatureUnavailableError
from .paillier import DEFAULT_KEY_BITS, check_key_bits
from .threshold import KeyShare, ThresholdPaillierKeys, ThresholdPublicParams, check_threshold

__all__ = ["dealerless_threshold_keys"]


def _free_ports(count: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


async def _keygen(n_parties: int, corruption: int, key_bits: int, ports: list[int]) -> list[Any]:
    from tno.mpc.communication import Pool
    from tno.mpc.protocols.distributed_keygen import DistributedPaillier

    pools = []
    for sp in ports:
        pool = Pool()
        pool.add_http_server(sp, addr="127.0.0.1")
        for cp in ports:
            if cp != sp:
                pool.add_http_client(f"party{cp}", "127.0.0.1", cp)
        pools.append(pool)
    try:
        return list(await asyncio.gather(*[
            DistributedPaillier.from_security_parameter(pool, corruption, key_bits, 2000, 40, 40, distributed=False)
            for pool in pools]))
    finally:
        for pool in pools:
            with contextlib.suppress(Exception):
                await pool.shutdown()


def _run_in_thread(coro_fn: Any, timeout: float | None) -> Any:
    # A notebook's kernel already runs an event loop: TNO's protocol gets its own loop in a helper thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = asyncio.run(coro_fn())
        except BaseException as exc:  # re-raised in the caller
            box["err"] = exc

    th = threading.Thread(target=target, name="fedbench-dealerless-keygen", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise TimeoutError(f"dealerless key generation did not finish within {timeout} s")
    if "err" in box:
        raise box["err"]
    return box["out"]


def dealerless_threshold_keys(parties: Sequence[str], threshold: int, key_bits: int = DEFAULT_KEY_BITS, *,
                              allow_insecure_key_size: bool = False,
                              timeout: float | None = None) -> ThresholdPaillierKeys:
    """The parties generate a threshold Paillier key among themselves, with no dealer (TNO's protocol).

    Parameters
    ----------
    parties : sequence of str
        Share holders, in share-index order.
    threshold : int
        Partial decryptions needed: odd (``2 c + 1`` for ``c`` tolerated corruptions), at most ``len(parties)``.
    key_bits : int, default 2048
        Requested modulus size (TNO's ``key_length``; its ``n`` may be a few bits longer).
    allow_insecure_key_size : bool, default False
        Needed below 2048 bits (tests only).
    timeout : float, optional
        Seconds to wait for the protocol (default: no limit; 2048-bit keys take many minutes).

    Returns
    -------
    ThresholdPaillierKeys
        With ``setup="dealerless"``.

    Raises
    ------
    FeatureUnavailableError
        ``tno.mpc.protocols.distributed_keygen`` is not installed (``pip install 'fedbench[dealerless]'``).
    ConfigurationError
        Bad or even threshold, or a party listed twice.
    """
    names = list(parties)
    if len(set(names)) != len(names):
        raise ConfigurationError(f"a party is listed twice among the key-share holders {names}")
    check_threshold(threshold, len(names))
    if threshold % 2 == 0:
        raise ConfigurationError(
            f"threshold={threshold}: dealerless keys (TNO's protocol) share the secret with a polynomial of even "
            f"degree 2c, so the threshold must be odd (2c + 1); use threshold={threshold - 1} or "
            f"{threshold + 1}, or keys='threshold' (dealer)")
    check_key_bits(key_bits, allow_insecure_key_size=allow_insecure_key_size)
    try:
        import tno.mpc.protocols.distributed_keygen  # noqa: F401
    except ImportError as exc:
        raise FeatureUnavailableError(
            "dealerless threshold keys need TNO's distributed key generation: pip install 'fedbench[dealerless]'"
        ) from exc
    t0 = time.perf_counter()
    ports = _free_ports(len(names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TNO warns about small keys and fresh ciphertexts
        logging.getLogger("tno").setLevel(logging.CRITICAL)  # connection retries while the servers start
        schemes = _run_in_thread(lambda: _keygen(len(names), (threshold - 1) // 2, key_bits, ports), timeout)
    schemes = sorted(schemes, key=lambda s: s.index)
    n = int(schemes[0].public_key.n)
    n2 = n * n
    sk0 = schemes[0].secret_key
    delta = int(sk0.share.n_fac)
    # Each party's own share; fedbench's share indices are TNO's (1..N), parties in the given order.
    shares = {name: KeyShare(name, int(s.index), int(s.secret_key.share.shares[s.index]))
              for name, s in zip(names, schemes, strict=True)}
    # A public random square v (any party may draw it); each party publishes v_i = v^(Delta s_i).
    while True:
        r = secrets.randbelow(n2)
        if gmpy2.gcd(r, n) == 1:
            break
    v = int(gmpy2.powmod(r, 2, n2))
    vks = tuple(int(gmpy2.powmod(v, delta * shares[nm].value, n2))
                for nm in sorted(names, key=lambda nm: shares[nm].index))
    params = ThresholdPublicParams(n=n, threshold=threshold, n_shares=len(names), v=v, verification_keys=vks,
                                   theta=_theta(sk0, n),
                                   share_bits=max(abs(s.value).bit_length() for s in shares.values()))
    # DJN fast encryption with h = -x^2 mod n for a random unit x (nobody knows p, q to check its order).
    while True:
        x = secrets.randbelow(n - 2) + 2
        if gmpy2.gcd(x, n) == 1:
            break
    h_s = int(gmpy2.powmod((-x * x) % n, n, n2))
    return ThresholdPaillierKeys(public_key=paillier.PaillierPublicKey(n), h_s=h_s, params=params, shares=shares,
                                 setup="dealerless", seconds=time.perf_counter() - t0)


def _theta(sk: Any, n: int) -> int:
    """The ``theta`` of :class:`~fedbench.crypto.threshold.ThresholdPublicParams` from TNO's key.

    TNO decrypts as ``L(c^(Delta F)) / theta`` where ``F`` is the Lagrange
    interpolation at 0 of the shares, i.e. ``c^(Delta F) = (1 + n)^(theta M)``;
    fedbench's integer coefficients ``Delta lambda_i`` combine the same shares
    to ``c^(4 Delta Delta F) = (1 + n)^(4 Delta theta M)``: the same ``theta``.
    """
    return int(sk.theta) % n
