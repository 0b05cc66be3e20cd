"""The public shape of a local result: names, shapes and integer flags of what every party sums.

Every secure-aggregation protocol flattens a party's local result into one
vector with :class:`VectorSpec` and splits the released sum back with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LocalResultError, ProtocolError

__all__ = ["VectorSpec"]

#: Integers up to this magnitude are exact in float64.
_EXACT_FLOAT = 2**53


@dataclass(frozen=True)
class VectorSpec:
    """Names and shapes of the entries a local function returns (public).

    ``integral`` marks the entries the party returned as integers (Python or
    numpy ints): they are encoded and summed exactly.  It is not part of the
    equality of two specs: parties may disagree (an ``Int64`` column in one,
    ``Float64`` in another) and the entry is then summed as a float.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    integral: tuple[bool, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, local: Mapping[str, Any], party: str) -> VectorSpec:
        """Spec of one party's local result; raises if it is not real-valued.

        Parameters
        ----------
        local : mapping of str to number or array
            What the party's local function returned.
        party : str
            The party's name, for error messages.

        Returns
        -------
        VectorSpec

        Raises
        ------
        ProtocolError
            The result is not a non-empty dict with string keys, or an entry is not numeric.
        LocalResultError
            An entry is complex (its imaginary part would be lost).
        """
        if not isinstance(local, Mapping) or not local:
            raise ProtocolError(
                f"party {party!r}: the local function must return a non-empty dict of numbers or arrays, "
                f"got {type(local).__name__}"
            )
        shapes = []
        integral = []
        for k, v in local.items():
            if not isinstance(k, str):
                raise ProtocolError(f"party {party!r}: result keys must be strings, got {type(k).__name__}")
            try:
                raw = np.asarray(v)
            except (TypeError, ValueError):
                raw = np.asarray(None, dtype=object)
            if raw.dtype.kind == "c" or (raw.dtype == object and any(isinstance(e, complex | np.complexfloating)
                                                                     for e in raw.ravel().tolist())):
                raise LocalResultError(
                    f"party {party!r}: result {k!r} is complex; only real numbers can be aggregated "
                    "(return the real and imaginary parts as two entries)",
                    party=party,
                    column=k,
                )
            exact = raw.dtype.kind in "iub" or (
                raw.dtype == object and raw.size > 0 and all(isinstance(e, int) for e in raw.ravel().tolist())
            )
            try:
                arr = raw if exact else np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise ProtocolError(f"party {party!r}: result {k!r} is not numeric ({type(v).__name__})") from None
            shapes.append(arr.shape)
            integral.append(bool(exact))
        return cls(tuple(local), tuple(shapes), tuple(integral))

    @property
    def size(self) -> int:
        """Total number of scalars."""
        return sum(math.prod(s) for s in self.shapes)

    def entry_names(self) -> list[str]:
        """One label per scalar, for error messages."""
        out = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            out.extend([name] * math.prod(shape))
        return out

    def entry_integral(self) -> np.ndarray:
        """One flag per scalar: whether it was returned as an integer."""
        flags = self.integral or (False,) * len(self.names)
        return np.repeat(np.array(flags, dtype=bool), [math.prod(s) for s in self.shapes]).astype(bool)

    def flatten(self, local: Mapping[str, Any]) -> np.ndarray:
        """Concatenate a local result into one float vector."""
        return np.concatenate([np.asarray(local[k], dtype=np.float64).ravel() for k in self.names])

    def flatten_exact(self, local: Mapping[str, Any]) -> np.ndarray:
        """Like :meth:`flatten`, but integer entries stay exact Python ints (object vector) if there are any."""
        if not any(self.integral):
            return self.flatten(local)
        parts: list[object] = []
        for k, exact in zip(self.names, self.integral, strict=True):
            arr = np.asarray(local[k])
            if exact:
                parts.extend(int(e) for e in arr.ravel().tolist())
            else:
                parts.extend(float(e) for e in np.asarray(arr, dtype=np.float64).ravel().tolist())
        out = np.empty(len(parts), dtype=object)
        out[:] = parts
        return out

    def unflatten(self, vec: np.ndarray) -> dict[str, Any]:
        """Split a vector back into named entries (scalars as float, or int for exact integer entries)."""
        out: dict[str, Any] = {}
        i = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            k = math.prod(shape)
            part = vec[i : i + k]
            if part.dtype == object:
                out[name] = _exact_entry(part, shape)
            else:
                out[name] = float(part[0]) if shape == () else part.reshape(shape).copy()
            i += k
        return out


def _exact_entry(part: np.ndarray, shape: tuple[int, ...]) -> Any:
    values = part.tolist()
    if shape == ():
        v = values[0]
        return v if isinstance(v, int) else float(v)
    if not all(isinstance(v, int) for v in values):
        return np.array(values, dtype=np.float64).reshape(shape)
    if all(abs(v) <= _EXACT_FLOAT for v in values):
        return np.array(values, dtype=np.float64).reshape(shape)  # exact in float64: keep the usual dtype
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)
