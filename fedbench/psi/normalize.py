"""Canonical forms of identifiers before they are hashed.

Two parties match a record only if they produce *exactly* the same bytes for it,
so messy identifiers (``" Alice@Example.com"`` vs ``"alice@example.com"``) must
be brought to one canonical form first.  A normalisation *spec* is, per call:

- ``None``: identifiers are used as they are;
- a step name (``"strip"``, ``"casefold"``, ``"lower"``, ``"nfkc"``, ``"nfc"``,
  ``"collapse_whitespace"``, ``"email"``, ``"phone"``, ``"digits"``, or the
  preset ``"standard"`` = NFKC, collapse whitespace, case-fold);
- a callable ``str -> str | None`` (a hook; ``None`` or ``""`` marks the value
  as missing, which then follows the call's null policy);
- a list of steps, applied in order;
- a mapping ``{column: spec}`` for composite keys, e.g.
  ``{"email": "email", "name": "standard"}``; unlisted columns are left as they are.

Steps apply to string identifiers only.  A spec that is not a mapping skips
numeric, boolean and temporal columns; a mapping that names one of those is an
error (use ``cast="string"`` to normalise their text).  Every party applies the
same spec, locally, before anything is hashed.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError

__all__ = ["STEPS", "NormalizeSpec", "Normalizer", "compile_spec", "normalize_email", "normalize_phone"]

Normalizer = Callable[[str], "str | None"]
NormalizeSpec = Any  # None | str | Normalizer | Sequence[str | Normalizer] | Mapping[str, ...]

_GMAIL = {"gmail.com", "googlemail.com"}


def normalize_email(value: str, *, subaddress: bool = True, gmail_dots: bool = True) -> str | None:
    """Canonical form of an e-mail address, or ``None`` if it is not one.

    Applies NFKC, strips whitespace, a ``mailto:`` prefix and surrounding
    angle brackets, case-folds the whole address (mailbox names are case-
    insensitive at every large provider, although RFC 5321 allows otherwise),
    converts an internationalised domain to its IDNA (punycode) form and drops a
    trailing dot.

    Parameters
    ----------
    value : str
        The raw address.
    subaddress : bool, default True
        Drop a ``+tag`` from the mailbox (``jo+news@x.org`` -> ``jo@x.org``).
    gmail_dots : bool, default True
        For gmail.com / googlemail.com, drop dots from the mailbox and use gmail.com,
        as Google delivers those variants to the same mailbox.

    Returns
    -------
    str or None
        ``local@domain``, or ``None`` when there is no ``@`` with text on both sides.

    Examples
    --------
    >>> normalize_email("  <J.Doe+Bank@GoogleMail.com> ")
    'jdoe@gmail.com'
    """
    s = unicodedata.normalize("NFKC", value).strip()
    if s[:7].casefold() == "mailto:":
        s = s[7:].strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1].strip()
    local, at, domain = s.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in s):
        return None
    local = local.casefold()
    domain = domain.casefold().rstrip(".")
    with contextlib.suppress(UnicodeError):  # not a valid IDN label: keep the case-folded text
        domain = domain.encode("idna").decode("ascii")
    if subaddress and "+" in local:
        local = local.split("+", 1)[0]
    if gmail_dots and domain in _GMAIL:
        local, domain = local.replace(".", ""), "gmail.com"
    if not local or not domain:
        return None
    return f"{local}@{domain}"


_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)


def normalize_phone(value: str, *, default_country_code: str | None = None) -> str | None:
    """Canonical form of a telephone number, or ``None`` if it has too few digits.

    Keeps the digits (any Unicode decimal digit, so full-width or Arabic-Indic
    digits count), drops separators and an extension (``x123``, ``ext. 12``),
    turns an international ``00`` prefix into ``+``.

    Parameters
    ----------
    value : str
        The raw number.
    default_country_code : str, optional
        Country calling code (``"44"``, ``"+1"``) for numbers written without an
        international prefix; one national trunk ``0`` is then dropped
        (``"020 7946 0000"`` -> ``"+442079460000"``).  Without it such numbers keep
        their national digits and no ``+``.

    Returns
    -------
    str or None
        ``"+<digits>"`` (E.164 shape) or the national digits; ``None`` for fewer
        than 3 digits or more than 15 after the ``+``.

    Examples
    --------
    >>> normalize_phone("+1 (415) 555-0100 ext. 7")
    '+14155550100'
    >>> normalize_phone("020 7946 0000", default_country_code="44")
    '+442079460000'
    """
    s = unicodedata.normalize("NFKC", value).strip()
    s = _EXTENSION.sub("", s)
    digits = "".join(str(unicodedata.decimal(c)) for c in s if unicodedata.decimal(c, None) is not None)
    international = s.startswith("+")
    if not international and digits.startswith("00"):
        digits, international = digits[2:], True
    if len(digits) < 3:
        return None
    if not international and default_country_code is not None:
        cc = "".join(c for c in default_country_code if c.isdigit())
        if not cc:
            raise ConfigurationError(f"default_country_code {default_country_code!r} holds no digits")
        digits = cc + (digits[1:] if digits.startswith("0") else digits)
        international = True
    if international and len(digits) > 15:
        return None
    return "+" + digits if international else digits


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s)


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _digits(s: str) -> str:
    return "".join(str(unicodedata.decimal(c)) for c in s if unicodedata.decimal(c, None) is not None)


def _standard(s: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", s).split()).casefold()


#: Named normalisation steps.
STEPS: dict[str, Normalizer] = {
    "strip": str.strip,
    "casefold": str.casefold,
    "lower": str.lower,
    "nfkc": _nfkc,
    "nfc": _nfc,
    "collapse_whitespace": _collapse,
    "digits": _digits,
    "email": normalize_email,
    "phone": normalize_phone,
    "standard": _standard,
}


def _step(step: object) -> tuple[str, Normalizer]:
    if isinstance(step, str):
        try:
            return step, STEPS[step]
        except KeyError:
            raise ConfigurationError(
                f"unknown normalisation step {step!r}; use one of {sorted(STEPS)} or a callable"
            ) from None
    if callable(step):
        return getattr(step, "__name__", type(step).__name__), step
    raise ConfigurationError(f"a normalisation step must be a name or a callable, got {type(step).__name__}")


def _chain(spec: object) -> tuple[str, Normalizer] | None:
    if spec is None:
        return None
    if isinstance(spec, str) or callable(spec):
        return _step(spec)
    if isinstance(spec, Sequence):
        steps = [_step(s) for s in spec]
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]
        fns = [f for _, f in steps]

        def chained(value: str) -> str | None:
            out: str | None = value
            for f in fns:
                if out is None:
                    return None
                out = f(out)
            return out

        return "+".join(n for n, _ in steps), chained
    raise ConfigurationError(
        f"normalize must be None, a step name, a callable, a list of steps or a "
        f"{{column: steps}} mapping, got {type(spec).__name__}"
    )


def compile_spec(spec: NormalizeSpec, columns: Sequence[str]) -> tuple[dict[str, tuple[str, Normalizer]], bool]:
    """Resolve a normalisation spec into one function per key column.

    Parameters
    ----------
    spec : NormalizeSpec
        See the module documentation.
    columns : sequence of str
        The key columns.

    Returns
    -------
    (dict, bool)
        ``{column: (label, function)}`` for the columns to normalise, and whether
        the columns were named explicitly (a mapping), in which case a non-string
        column is an error rather than skipped.

    Raises
    ------
    ConfigurationError
        Unknown step, wrong type, or a mapping naming a column that is not a key.
    """
    if isinstance(spec, Mapping):
        out: dict[str, tuple[str, Normalizer]] = {}
        for col, sub in spec.items():
            if col not in columns:
                raise ConfigurationError(
                    f"normalize names column {col!r}, which is not a key column ({', '.join(columns)})"
                )
            fn = _chain(sub)
            if fn is not None:
                out[col] = fn
        return out, True
    fn = _chain(spec)
    return ({c: fn for c in columns} if fn is not None else {}), False
