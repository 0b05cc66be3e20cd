"""Serialisation of protocol messages: everything that crosses a boundary is bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import ProtocolError

__all__ = ["bytes_to_ints", "dumps", "ints_to_bytes", "loads"]


def ints_to_bytes(values: Sequence[int], width: int) -> bytes:
    """Concatenate non-negative integers as fixed-width big-endian fields."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def bytes_to_ints(data: bytes, width: int) -> list[int]:
    """Inverse of :func:`ints_to_bytes`."""
    if len(data) % width:
        raise ProtocolError(f"message of {len(data)} bytes is not a whole number of {width}-byte fields")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def dumps(obj: Any) -> bytes:
    """Serialise public metadata (shapes, parameters) as canonical JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def loads(data: bytes) -> Any:
    """Inverse of :func:`dumps`."""
    return json.loads(data.decode())
