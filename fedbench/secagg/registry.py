"""Secure-aggregation protocols by name: register one, look one up, list them."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import SecAggProtocol

__all__ = ["available_protocols", "get_protocol", "register_protocol", "unregister_protocol"]

_PROTOCOLS: dict[str, SecAggProtocol] = {}


def register_protocol(protocol: SecAggProtocol, *, replace: bool = False) -> SecAggProtocol:
    """Make ``protocol`` available under ``protocol.name``.

    Parameters
    ----------
    protocol : SecAggProtocol
        An instance of a protocol class.
    replace : bool, default False
        Replace a protocol registered under the same name (otherwise an error).

    Returns
    -------
    SecAggProtocol
        ``protocol``, so that the call can wrap a module-level instance.

    Raises
    ------
    ConfigurationError
        ``protocol`` is not a :class:`SecAggProtocol`, has no name, or the name is taken.
    """
    if not isinstance(protocol, SecAggProtocol):
        raise ConfigurationError(
            f"a secure-aggregation protocol must be a SecAggProtocol instance, got {type(protocol).__name__}"
        )
    name = getattr(protocol, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{type(protocol).__name__} has no protocol name (set the class attribute 'name')")
    if name in _PROTOCOLS and not replace:
        raise ConfigurationError(
            f"a secure-aggregation protocol named {name!r} is already registered; pass replace=True to replace it"
        )
    _PROTOCOLS[name] = protocol
    return protocol


def unregister_protocol(name: str) -> None:
    """Remove the protocol registered as ``name`` (no error if there is none)."""
    _PROTOCOLS.pop(name, None)


def get_protocol(name: str) -> SecAggProtocol:
    """The protocol registered as ``name``.

    Raises
    ------
    ConfigurationError
        No protocol has that name; the message lists the known ones.
    """
    try:
        return _PROTOCOLS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(n) for n in available_protocols()) or "none"
        raise ConfigurationError(
            f"unknown secure-aggregation protocol {name!r}; available protocols: {known}"
        ) from None


def available_protocols() -> list[str]:
    """Names of the registered protocols, sorted."""
    return sorted(_PROTOCOLS)
