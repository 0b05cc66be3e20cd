"""OpenFHE engine process for the ``"ckks-multiparty"`` protocol (runs under the OpenFHE interpreter).

This file is executed by a *separate* Python (CPython 3.10, where OpenFHE's
wheel imports; see :mod:`fedbench.secagg.openfhe_engine`), never imported by
fedbench itself: it uses only the standard library and ``openfhe``.  One
process acts for one role of one run: a party (it holds that party's secret
key share, which never leaves the process) or the aggregator (public key
material and ciphertexts only).

Protocol: like :func:`fedbench.psi._kernels.serve`, length-prefixed pickles
``(task_id, op, args)`` on stdin, ``(task_id, ok, result)`` on stdout.  The
parent is the only peer, so unpickling its messages is safe.  An error reply
carries the exception type and OpenFHE's message, never a value of the data.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
import sys
from array import array
from typing import Any

import openfhe as fhe  # type: ignore[import-not-found]  # only in the CPython 3.10 engine interpreter

#: Largest total modulus bits per ring dimension at 128-bit classical security (HE standard, Table 1):
#: the same table as fedbench.secagg.ckks_params.HE_STANDARD_128, repeated because this process
#: cannot import fedbench.  Checked again here against the modulus OpenFHE actually built.
_HE_STANDARD_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}

_state: dict[str, Any] = {}


def _ser(obj: Any) -> bytes:
    return bytes(fhe.Serialize(obj, fhe.BINARY))


def _context(ring: int, first_bits: int, scale_bits: int, depth: int, estimate: float | None) -> Any:
    p = fhe.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(depth)
    p.SetScalingModSize(scale_bits)
    p.SetFirstModSize(first_bits)
    p.SetBatchSize(ring // 2)
    # The ring dimension is fixed by fedbench's parameter check (both phases of noise flooding must use
    # the same one), so OpenFHE's own table is switched off and the modulus is checked below instead.
    p.SetSecurityLevel(fhe.HEStd_NotSet)
    p.SetRingDim(ring)
    p.SetScalingTechnique(fhe.FIXEDMANUAL)
    p.SetSecretKeyDist(fhe.UNIFORM_TERNARY)
    # OpenFHE's countermeasure to Li-Micciancio key recovery: phase 1 (EXEC_NOISE_ESTIMATION) measures the
    # noise of the computation under a throw-away key, phase 2 (EXEC_EVALUATION) floods decryptions with it.
    p.SetDecryptionNoiseMode(fhe.NOISE_FLOODING_DECRYPT)
    if estimate is None:
        p.SetExecutionMode(fhe.EXEC_NOISE_ESTIMATION)
    else:
        p.SetExecutionMode(fhe.EXEC_EVALUATION)
        p.SetNoiseEstimate(estimate)
    cc = fhe.GenCryptoContext(p)
    # No KEYSWITCH: a sum needs no evaluation keys, so a secret key is only ever used modulo Q.
    for feature in (fhe.PKESchemeFeature.PKE, fhe.PKESchemeFeature.LEVELEDSHE, fhe.PKESchemeFeature.MULTIPARTY):
        cc.Enable(feature)
    bits = math.log2(cc.GetModulus())
    # GetModulus is a double: its log2 of a product of primes below 2**109 can print as 109.0000000001.
    if cc.GetRingDimension() != ring or bits > _HE_STANDARD_128[ring] + 1e-6:
        raise ValueError(f"OpenFHE built ring dimension {cc.GetRingDimension()} with a {bits:.0f}-bit modulus, "
                         f"beyond 128-bit security for ring dimension {ring}")
    return cc


def _sum_and_decrypt(cc: Any, n: int, values: list[float]) -> Any:
    """Phase-1/calibration computation on public values: n parties' key chain, n encryptions, one sum."""
    kps = [cc.KeyGen()]
    for _ in range(n - 1):
        kps.append(cc.MultipartyKeyGen(kps[-1].publicKey))
    pk = kps[-1].publicKey
    total = None
    for _ in range(n):
        ct = cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext(values))
        total = ct if total is None else cc.EvalAdd(total, ct)
    parts = [cc.MultipartyDecryptLead([total], kps[0].secretKey)[0]]
    parts += [cc.MultipartyDecryptMain([total], kp.secretKey)[0] for kp in kps[1:]]
    out = cc.MultipartyDecryptFusion(parts)
    out.SetLength(len(values))
    return out


def op_calibrate(ring: int, first_bits: int, scale_bits: int, depth: int, n: int) -> tuple[float, float, float]:
    """Aggregator only, public inputs only: the noise estimate and the flooded error's standard deviation.

    Phase 1 runs the run's computation (n key shares, n fresh ciphertexts, one sum, a multiparty decryption)
    on zero vectors under throw-away keys and reads OpenFHE's noise estimate; a phase-2 context with that
    estimate then decrypts the same computation, and the standard deviation of its slot errors (all slots
    of one ciphertext) calibrates the reported bound.  No party's data is involved.
    """
    zeros = [0.0] * (ring // 2)
    estimate = _sum_and_decrypt(_context(ring, first_bits, scale_bits, depth, None), n, zeros).GetLogError()
    out = _sum_and_decrypt(_context(ring, first_bits, scale_bits, depth, estimate), n, zeros).GetRealPackedValue()
    std = math.sqrt(sum(v * v for v in out) / len(out))
    return estimate, std, max(abs(v) for v in out)


def op_setup(ring: int, first_bits: int, scale_bits: int, depth: int, estimate: float) -> float:
    """Build this process's evaluation context; returns the modulus bits."""
    cc = _context(ring, first_bits, scale_bits, depth, estimate)
    _state.clear()
    _state["cc"] = cc
    return math.log2(cc.GetModulus())


def op_keygen(previous: bytes | None) -> bytes:
    """Party: make this party's key share; returns the joint public key so far (serialized).

    The first party starts the chain (``KeyGen``), every other one extends the public key it received
    (``MultipartyKeyGen``).  The secret share stays in ``_state``.
    """
    cc = _state["cc"]
    kp = cc.KeyGen() if previous is None else cc.MultipartyKeyGen(_load(fhe.DeserializePublicKeyString, previous))
    _state["secret"] = kp.secretKey
    return _ser(kp.publicKey)


def _load(fn: Any, data: bytes) -> Any:
    out = fn(data, fhe.BINARY)
    if isinstance(out, tuple):  # some openfhe-python releases return (object, ok)
        out, ok = out
        if not ok:
            raise ValueError("a message does not deserialize")
    return out


def _load_ct(data: bytes) -> Any:
    return _load(fhe.DeserializeCiphertextString, data)


def op_encrypt(public: bytes, values: bytes, slots: int) -> list[bytes]:
    """Party: encrypt float64 values (native byte order) under the joint public key, ``slots`` per ciphertext."""
    cc = _state["cc"]
    pk = _load(fhe.DeserializePublicKeyString, public)
    vec = array("d")
    vec.frombytes(values)
    out = []
    for i in range(0, max(1, len(vec)), slots):
        block = vec[i : i + slots].tolist() or [0.0]
        out.append(_ser(cc.Encrypt(pk, cc.MakeCKKSPackedPlaintext(block))))
    del vec
    return out


def op_add(uploads: list[list[bytes]]) -> list[bytes]:
    """Aggregator: add the parties' ciphertexts block by block."""
    cc = _state["cc"]
    total = [_load_ct(c) for c in uploads[0]]
    for cts in uploads[1:]:
        total = [cc.EvalAdd(a, _load_ct(b)) for a, b in zip(total, cts, strict=True)]
    return [_ser(c) for c in total]


def op_partial(cts: list[bytes], lead: bool) -> list[bytes]:
    """Party: its partial decryption of each aggregate ciphertext (the lead party's differs in form)."""
    cc = _state["cc"]
    loaded = [_load_ct(c) for c in cts]
    fn = cc.MultipartyDecryptLead if lead else cc.MultipartyDecryptMain
    return [_ser(c) for c in fn(loaded, _state["secret"])]


def op_fuse(partials: list[list[bytes]], length: int, slots: int) -> bytes:
    """Aggregator: combine every party's partial decryptions; returns the real parts as float64 bytes."""
    cc = _state["cc"]
    out = array("d")
    for k in range(len(partials[0])):
        pt = cc.MultipartyDecryptFusion([_load_ct(p[k]) for p in partials])
        pt.SetLength(min(slots, length - k * slots))
        out.extend(pt.GetRealPackedValue())
    return out.tobytes()


def op_export_secret() -> bytes:
    """Tests only (refused unless the engine was started with FEDBENCH_OPENFHE_TEST_EXPORT=1)."""
    if os.environ.get("FEDBENCH_OPENFHE_TEST_EXPORT") != "1":
        raise PermissionError("secret export is disabled")
    return _ser(_state["secret"])


_OPS: dict[str, Any] = {
    "calibrate": op_calibrate, "setup": op_setup, "keygen": op_keygen, "encrypt": op_encrypt, "add": op_add,
    "partial": op_partial, "fuse": op_fuse, "export_secret": op_export_secret,
    "exit": lambda code: os._exit(code),  # tests: an engine that dies mid-run
}


def serve() -> None:
    """Main loop; stdout is kept for replies and fd 1 points at stderr so a stray print cannot corrupt it."""
    stdin = os.fdopen(os.dup(0), "rb")
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return  # parent closed the pipe: the secret share dies with the process
        (n,) = struct.unpack("<Q", head)
        task_id, op, args = pickle.loads(stdin.read(n))
        try:
            reply = (task_id, True, _OPS[op](*args))
        except Exception as exc:  # reported to the parent, which raises a fedbench error
            reply = (task_id, False, f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(struct.pack("<Q", len(data)))
        stdout.write(data)
        stdout.flush()


if __name__ == "__main__":
    serve()
    sys.exit(0)
