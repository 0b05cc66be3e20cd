"""The :class:`Federation`: virtual parties plus the protocols that run across them."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from html import escape
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from . import stats as _stats
from .backend import DEFAULT_LOCAL_TIMEOUT, Backend, check_local_timeout, get_backend, run_local_function
from .crypto.packing import DEFAULT_SUM_FRAC_BITS, DEFAULT_SUM_MAX_ABS, WIDE_FRAC_BITS, WIDE_MAX_ABS, Encoding
from .crypto.paillier import DEFAULT_KEY_BITS, PaillierKeys, check_key_bits, generate_keys
from .errors import (
    ConfigurationError,
    DataLoadError,
    DuplicatePartyError,
    EmptyPartyError,
    ProtocolError,
    SchemaWarning,
    TooFewPartiesError,
    UnknownPartyError,
)
from .party import FORMATS, Party, column_kind, validate_party_name
from .results import THREAT_MODEL, HistogramResult, SecureSumResult, render_card
from .schema import SchemaReport, check_numeric_columns
from .secagg import MIN_PARTIES, secure_aggregate
from .transcript import Channel, Transcript, _fmt_bytes
from .wire import dumps

if TYPE_CHECKING:
    import pandas as pd

    from .coordinator import Coordinator
    from .dp import PrivacyBudget
    from .dp.releases import NoisePlan
    from .learn import FitRun, VerticalRun

__all__ = ["Federation"]

LocalFn = Callable[[pl.DataFrame], Mapping[str, Any]]


class Federation:
    """A set of virtual parties and the protocols that compute across them.

    Parameters
    ----------
    key_bits : int, default 2048
        Paillier modulus size.  Fewer than 2048 bits needs ``allow_insecure_key_size``.
    backend : {"inprocess", "process", "ray"} or Backend, default "inprocess"
        Where party-local work and encryption run; ``"process"`` uses every core;
        ``"ray"`` makes every party a Ray actor that loads its own data (see
        :class:`fedbench.ray_backend.RayBackend` for a cluster address).
    allow_insecure_key_size : bool, default False
        Opt in to keys below 2048 bits (for fast tests only).
    fast_encryption : bool, default True
        Damgard-Jurik-Nielsen fixed-base encryption (about 13x faster; extra
        short-exponent assumption, see :mod:`fedbench.crypto.paillier`).  ``False``
        gives textbook Paillier.
    frac_bits : int, optional
        Fixed-point fractional bits of the public encoding.  Default: 16 for
        :meth:`secure_sum` of a function, 24 for column sums, statistics and learning.
    max_abs : float, optional
        Largest magnitude of any *local aggregate* a party may contribute.
        Default: ``2**20`` for :meth:`secure_sum` of a function (fast: 48 values
        per ciphertext for 10 parties; see :mod:`fedbench.crypto.packing`),
        ``2**62`` for column sums, statistics (second moments) and learning.  A value given
        here applies to both.
    audit : bool, default False
        Keep the bytes of every message in the transcript (for audits and tests).
    ledger_path : str or Path, optional
        JSON file persisting the privacy ledger.  By default the ledger is
        persisted next to the notebook, in ``./.fedbench/<hash>.ledger.json``
        named from the parties' names and sources (see
        :func:`fedbench.dp.budget.federation_budget`), so budgets survive a
        kernel restart and a new federation over the same parties.
        ``":memory:"`` keeps it in memory only (not persistent; for tests).
    local_timeout : float or None, default 300
        Seconds a local function passed to :meth:`secure_sum` may run inside a
        party before the call fails with
        :class:`~fedbench.errors.PartyTimeoutError` (``None``: no limit).

    Examples
    --------
    >>> fed = Federation.from_dir("data_samples/hospitals")      # doctest: +SKIP
    >>> fed.secure_sum(["age", "mean_radius"]).value             # doctest: +SKIP
    """

    def __init__(
        self,
        key_bits: int = DEFAULT_KEY_BITS,
        *,
        backend: str | Backend | None = None,
        allow_insecure_key_size: bool = False,
        fast_encryption: bool = True,
        frac_bits: int | None = None,
        max_abs: float | None = None,
        audit: bool = False,
        ledger_path: str | Path | None = None,
        local_timeout: float | None = DEFAULT_LOCAL_TIMEOUT,
    ) -> None:
        self.key_bits = check_key_bits(key_bits, allow_insecure_key_size=allow_insecure_key_size)
        self.local_timeout = check_local_timeout(local_timeout)
        self.allow_insecure_key_size = allow_insecure_key_size
        self.fast_encryption = bool(fast_encryption)
        self.encoding = Encoding.for_range(WIDE_MAX_ABS if max_abs is None else max_abs,
                                           WIDE_FRAC_BITS if frac_bits is None else frac_bits)
        # secure_sum's public default range is much tighter (more values per ciphertext), unless set here.
        self._range_declared = max_abs is not None or frac_bits is not None
        self.sum_encoding = Encoding.for_range(DEFAULT_SUM_MAX_ABS if max_abs is None else max_abs,
                                               DEFAULT_SUM_FRAC_BITS if frac_bits is None else frac_bits)
        self.backend = get_backend(backend)
        self.transcript = Transcript(keep_payloads=audit)
        self.audit = audit
        self.history: list[Any] = []
        self._parties: dict[str, Party] = {}
        self._keys: PaillierKeys | None = None
        self._key_holders: set[str] = set()  # parties that received the current public key
        self._ledger_path = ledger_path
        self._budget: PrivacyBudget | None = None

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | Path, *, pattern: str = "*", read_options: Mapping[str, Any] | None = None,
                 null_values: str | Sequence[str] | None = None, separator: str | None = None,
                 encoding: str = "utf-8", **kwargs: Any) -> Federation:
        """Make one party per data file in a folder (party name = file stem).

        Parameters
        ----------
        path : str or Path
            Folder holding ``.csv``, ``.tsv``, ``.parquet`` or ``.ndjson`` files.
        pattern : str, default "*"
            Glob restricting the files used.
        read_options : mapping, optional
            Passed to the polars reader for every file (e.g. ``{"decimal_comma": True}``).
        null_values : str or list of str, optional
            CSV/TSV cell texts that mean "missing" in every file, declared once
            (e.g. ``["?", "NA"]``), as in polars' and pandas' readers: such
            cells are nulls, so a numeric column stays numeric.  Empty cells
            are always nulls.
        separator : str, optional
            CSV field separator; by default sniffed per file from its header
            line (``,``, ``;`` or tab; see :func:`fedbench.party.load_frame`).
        encoding : str, default "utf-8"
            Text encoding of CSV/TSV files (a UTF-8 byte order mark is
            ignored); e.g. ``"latin-1"``, or ``"utf8-lossy"``.
        **kwargs
            Passed to :class:`Federation`.

        Notes
        -----
        The parties then agree on one type per column from their declared
        schemas (see :mod:`fedbench.schema` and :attr:`schema`): integer and
        float columns unify to a common numeric type, and a column that is
        all-null in one file takes the type of the others.

        Raises
        ------
        DataLoadError
            The folder is missing or holds no data file, or a file cannot be
            read (naming the party, the file and, for encoding errors, the column).
        DuplicatePartyError
            Two files share a stem (``a.csv`` and ``a.parquet``).
        EmptyPartyError, DuplicateColumnError, ConfigurationError
            A file holds no rows, names a column twice, or an option is invalid.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise DataLoadError(f"no such folder: {folder}")
        files = sorted(f for f in folder.glob(pattern) if f.is_file() and f.suffix.lower() in FORMATS)
        if not files:
            raise DataLoadError(f"no data files ({', '.join(sorted(FORMATS))}) in {folder}")
        fed = cls(**kwargs)
        parties: dict[str, Party] = {}
        for f in files:
            if f.stem in parties:
                raise DuplicatePartyError(
                    f"two files give the party name {f.stem!r} in {folder}: rename one", party=f.stem
                )
            parties[f.stem] = fed.backend.make_party(
                f.stem, f, **_reading(read_options, null_values=null_values, separator=separator, encoding=encoding))
        for p in parties.values():
            fed._insert(p)
        return fed

    def add_party(
        self,
        name: str,
        data: str | Path | pl.DataFrame | pd.DataFrame,
        *,
        format: str | None = None,
        null_values: str | Sequence[str] | None = None,
        separator: str | None = None,
        encoding: str = "utf-8",
        **read_options: Any,
    ) -> Party:
        """Add a party over a file path or a polars/pandas DataFrame.

        Parameters
        ----------
        name : str
            Unique party identifier.
        data : str, Path, polars.DataFrame or pandas.DataFrame
            The party's rows or where to read them.
        format : str, optional
            ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"ndjson"`` when the suffix does not say.
        null_values : str or list of str, optional
            CSV/TSV cell texts that mean "missing" (e.g. ``["?", "NA"]``).
        separator : str, optional
            CSV field separator (default: sniffed from the header line).
        encoding : str, default "utf-8"
            CSV/TSV text encoding (e.g. ``"latin-1"``).
        **read_options
            Passed to the polars reader (e.g. ``decimal_comma=True``).

        Returns
        -------
        Party

        Warns
        -----
        SchemaWarning
            When the new party's columns disagree in kind with another party's
            (text against numbers); harmless differences (integer against float,
            a column all-null in one file) are unified instead (see :attr:`schema`).

        Raises
        ------
        DuplicatePartyError, DataLoadError, EmptyPartyError, ConfigurationError
            The federation is left unchanged.
        """
        validate_party_name(name)
        if name in self._parties:
            raise DuplicatePartyError(f"party {name!r} already exists; choose another name", party=name)
        party = self.backend.make_party(
            name, data, format=format,
            **_reading(read_options, null_values=null_values, separator=separator, encoding=encoding))
        self._insert(party)
        return party

    def add_parties(
        self,
        sources: Mapping[str, str | Path | pl.DataFrame | pd.DataFrame],
        *,
        replace: bool = False,
        null_values: str | Sequence[str] | None = None,
        separator: str | None = None,
        encoding: str = "utf-8",
        **read_options: Any,
    ) -> list[Party]:
        """Add several parties at once, all or none.

        Parameters
        ----------
        sources : mapping of name to path or DataFrame
            One entry per party.
        replace : bool, default False
            Replace parties that already exist instead of refusing them.
        null_values, separator, encoding
            CSV/TSV reading options for every file, as in :meth:`add_party`.
        **read_options
            Passed to the polars reader for every file.

        Returns
        -------
        list of Party

        Raises
        ------
        DuplicatePartyError, DataLoadError, EmptyPartyError, ConfigurationError
            Nothing is added if any party fails.
        """
        for name in sources:
            validate_party_name(name)
            if name in self._parties and not replace:
                raise DuplicatePartyError(
                    f"party {name!r} already exists; choose another name or pass replace=True", party=name
                )
        made: list[Party] = []
        try:
            for name, src in sources.items():
                made.append(self.backend.make_party(
                    name, src, **_reading(read_options, null_values=null_values, separator=separator,
                                          encoding=encoding)))
        except BaseException:
            for party in made:  # all or nothing: free the parties already created (their actors on Ray)
                self.backend.release_party(party)
            raise
        for party in made:
            if party.name in self._parties:
                self.remove_party(party.name)
            self._insert(party)
        return made

    def _insert(self, party: Party) -> None:
        self._parties[party.name] = party
        try:
            report = self._agree()
        except BaseException:
            # The new party made an agreement some party cannot cast to: refuse it, restore the others.
            del self._parties[party.name]
            self._agree()
            self.backend.release_party(party)
            raise
        for column, dtypes in report.conflicts.items():
            if party.name in dtypes:
                warnings.warn(
                    f"party {party.name!r}: column {column!r} is {dtypes[party.name]} but "
                    + ", ".join(f"{p} has {t}" for p, t in dtypes.items() if p != party.name)
                    + "; computations on it will fail until the types agree ("
                    + report._conflict_line(column, dtypes).split("; fix: ", 1)[1] + ")",
                    SchemaWarning,
                    stacklevel=3,
                )

    def _agree(self) -> SchemaReport:
        """Agree on one type per column from the declared schemas; each party casts its own columns."""
        report = self.schema
        for p in self._parties.values():
            p.conform(report.agreed_dtypes)
        return report

    def remove_party(self, name: str) -> None:
        """Remove a party (the others' agreed column types are re-derived without it)."""
        party = self._get(name)
        del self._parties[name]
        self._key_holders.discard(name)
        self.backend.release_party(party)
        self._agree()

    # -- inspection -----------------------------------------------------------
    @property
    def parties(self) -> Mapping[str, Party]:
        """Read-only view of the parties by name."""
        return dict(self._parties)

    @property
    def party_names(self) -> list[str]:
        """Names of the parties, in insertion order."""
        return list(self._parties)

    def __getitem__(self, name: str) -> Party:
        return self._get(name)

    def __iter__(self) -> Iterator[Party]:
        return iter(self._parties.values())

    def __len__(self) -> int:
        return len(self._parties)

    def __contains__(self, name: object) -> bool:
        return name in self._parties

    @property
    def schema(self) -> SchemaReport:
        """Columns of every party side by side: declared and agreed types, what was unified and why, conflicts.

        Built from the declared schemas only (column names and dtypes, public
        by design); see :mod:`fedbench.schema` for what a dtype reveals.
        """
        return SchemaReport.of(list(self._parties.values()))

    @property
    def keys(self) -> PaillierKeys:
        """The federation's Paillier keys, generated on first use (held by the key holder)."""
        if self._keys is None:
            self._keys = generate_keys(self.key_bits, allow_insecure_key_size=self.allow_insecure_key_size)
        return self._keys

    @property
    def coordinator(self) -> Coordinator:
        """The typed interface that protocol layers use (see :mod:`fedbench.coordinator`)."""
        return _FederationCoordinator(self)

    def _get(self, name: str) -> Party:
        try:
            return self._parties[name]
        except KeyError:
            known = ", ".join(self._parties) or "none yet"
            raise UnknownPartyError(f"unknown party {name!r} (parties: {known})", party=name) from None

    def _select(self, parties: Sequence[str] | str | None) -> list[Party]:
        if parties is None:
            return list(self._parties.values())
        if isinstance(parties, str):
            parties = [parties]
        chosen = [self._get(p) for p in parties]
        if len({p.name for p in chosen}) != len(chosen):
            raise ConfigurationError(f"parties listed twice in {list(parties)}")
        return chosen

    # -- secure aggregation ---------------------------------------------------
    def _channel(self, protocol: str) -> Channel:
        return Channel(protocol, [self.transcript], keep_payloads=self.audit)

    def _aggregate(self, parties: list[Party], local_fn: LocalFn, *, encoding: Encoding,
                   protocol: str = "secure_sum", plan: NoisePlan | None = None,
                   description: str = "", record_exact: bool = True,
                   integer_encoding: Encoding | None = None) -> tuple[dict[str, Any], SecureSumResult]:
        if len(parties) < MIN_PARTIES:
            # Checked here too so that no key is generated for a refused request.
            raise TooFewPartiesError(
                f"a secure computation needs at least {MIN_PARTIES} parties, got "
                f"{len(parties)} ({', '.join(p.name for p in parties) or 'none'}): over one party the "
                "aggregate is that party's own data"
            )
        keys = self.keys
        names = [p.name for p in parties]
        party_noise = central_noise = before_release = None
        if plan is not None:
            # Refuse, before any data is read, a plan the integer samplers cannot carry.
            plan.check_grid(encoding.frac_bits, len(parties))
            budget = self.budget
            params = plan.record(len(parties), encoding.frac_bits)
            charged: list[bool] = []

            def charge() -> None:
                if not charged:  # atomic check-and-record in the ledger; raises BudgetExceededError
                    budget.charge(names, plan.event, mechanism=plan.mechanism, description=description or protocol,
                                  parameters=params)
                    charged.append(True)

            # Check-then-spend: a request over budget is refused (and logged) before any data is read;
            # the charge itself happens once every party has validated its data, before any message is
            # recorded or released, so a request that fails on bad data spends nothing.
            if not budget.fits(names, plan.event):
                charge()
            before_release = charge
            if plan.noise == "distributed":
                party_noise = plan.sampler(len(parties), share=True)  # each party adds its share, encoded
            else:
                central_noise = plan.sampler(len(parties), share=False)  # the key holder adds it, decrypted
        t0 = time.perf_counter()
        channel = self._channel(protocol)
        recipients = [p.name for p in parties if p.name not in self._key_holders]
        out = secure_aggregate(parties, local_fn, keys=keys, backend=self.backend, channel=channel,
                               encoding=encoding, fast_encryption=self.fast_encryption, key_recipients=recipients,
                               party_noise=party_noise, central_noise=central_noise, before_release=before_release,
                               integer_encoding=integer_encoding)
        self._key_holders.update(recipients)
        result = SecureSumResult(
            value=out.value,
            parties=[p.name for p in parties],
            key_bits=keys.key_bits,
            ciphertexts=out.ciphertexts_per_party * len(parties),
            slots_per_ciphertext=out.layout.slots_per_ciphertext,
            frac_bits=encoding.frac_bits,
            value_bits=encoding.value_bits,
            fast_encryption=out.fast_encryption,
            seconds=out.seconds,
            elapsed=time.perf_counter() - t0,
            transcript=channel.run,
            backend=self.backend.name,
            privacy=None if plan is None else plan.record(len(parties), encoding.frac_bits),
        )
        value = out.value
        if plan is None and record_exact and self.budget.parties:  # also a ledger persisted by an earlier kernel
            # Budgets are in force: exact releases are logged too, flagged as not differentially private.
            self.budget.record_exact(names, mechanism=protocol, description=description or protocol)
        return value, result

    def _encoding(self, max_abs: float | None, frac_bits: int | None, base: Encoding | None = None) -> Encoding:
        base = self.encoding if base is None else base
        if max_abs is None and frac_bits is None:
            return base
        return Encoding.for_range(
            max_abs if max_abs is not None else base.max_abs,
            frac_bits if frac_bits is not None else base.frac_bits,
        )

    def secure_sum(
        self,
        what: str | Sequence[str] | LocalFn,
        *,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        max_abs: float | None = None,
        frac_bits: int | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        bounds: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
        sensitivity: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
        local_timeout: float | EllipsisType | None = ...,
    ) -> SecureSumResult:
        """Securely sum columns, or the named results of a function run inside each party.

        Parameters
        ----------
        what : str, list of str, or callable
            Column name(s) to sum, or ``fn(df) -> dict[str, float | numpy.ndarray]``
            run once inside each party on its polars DataFrame.  The function's
            entries must have the same names and shapes in every party.
        parties : list of str, optional
            Parties taking part (default: all, at least two).
        nulls : {"skip", "error"}, default "skip"
            Column sums only: skip nulls and report how many were skipped in
            total, or raise on the first null.
        max_abs, frac_bits : optional
            Override the public fixed-point encoding for this call.  Default:
            the federation's (``2**20`` and 16 fractional bits for sums of a
            function unless set there; ``2**62`` and 24 bits for column sums
            and for DP sums, whose noise shares can be large): a party whose local aggregate reaches ``max_abs`` gets
            :class:`~fedbench.errors.EncodingRangeError` naming it and the
            entry.  Integer entries are summed exactly either way.
        epsilon : float, optional
            Make the release differentially private at this epsilon (charged to
            every party's budget first; see :meth:`set_budget`).
        delta : float, optional
            With ``mechanism="gaussian"``: the release's delta.
        bounds : (lower, upper) or dict of column to (lower, upper), optional
            DP column sums: declared value bounds; values are clamped to them.
        sensitivity : float, optional
            DP function sums: how much one record can change the function's
            output vector (L1 for Laplace, L2 for Gaussian).  You declare it;
            fedbench cannot check it for an arbitrary function.
        mechanism : {"laplace", "gaussian"}, default "laplace"
            DP noise distribution (exact discrete noise on the encoding grid).
            Distributed Laplace puts a full noise share in every party (k times
            the central variance); with many parties prefer ``"gaussian"``.
        noise : {"distributed", "central"}, default "distributed"
            Each party adds a noise share to its encoded values before encrypting
            (nobody sees the exact sum; epsilon holds against any single party,
            for Laplace any coalition of up to k - 1), or the key holder adds the
            noise after decrypting, before its message to the analyst (epsilon
            holds against the analyst and the parties, not the key holder).
            ``result.privacy["adversary"]`` says which.
        local_timeout : float or None, optional
            Function sums only: seconds the function may run inside a party
            (default: the federation's ``local_timeout``).  The function gets a
            copy of the party's rows, so it cannot change them.

        Returns
        -------
        SecureSumResult
            ``.value`` maps each column (or entry) to its sum: integer columns and
            integer entries are summed exactly, as Python ints; ``.privacy``
            describes the noise of a DP release.

        Raises
        ------
        TooFewPartiesError, MissingColumnError, NonNumericColumnError, DtypeConflictError,
        NullValuesError, NonFiniteValueError, EncodingRangeError, LocalComputationError, ProtocolError,
        MissingBoundsError, BudgetNotSetError, BudgetExceededError, LocalResultError, PartyTimeoutError
        """
        chosen = self._select(parties)
        # The tight public default range serves exact sums of functions (typically vectors of modest
        # values); column sums, like the statistics, and DP sums (noise shares of large scale) keep the
        # wide encoding, so that a column total in the millions is never refused by default.
        tight = epsilon is None and callable(what)
        encoding = self._encoding(max_abs, frac_bits, base=self.sum_encoding if tight else self.encoding)
        # Entries every party returns as integers (public dtype) need no fractional bits: with no declared
        # range they get the wide one, so that large integer sums stay exact under the tight default.
        ints = None if (max_abs is not None or frac_bits is not None or self._range_declared) else \
            Encoding.for_range(WIDE_MAX_ABS, 0)
        if callable(what):
            timeout = self.local_timeout if local_timeout is ... else check_local_timeout(local_timeout)
            # The user's function runs on a copy of the party's rows, under a time limit.
            what = partial(run_local_function, fn=what, timeout=timeout)
            plan = None
            if epsilon is not None:
                if sensitivity is None:
                    raise ConfigurationError(
                        "a DP sum of a function needs sensitivity=...: how much one record can change its output"
                    )
                plan = self._plan(epsilon, delta, mechanism, noise, sensitivity, sensitivity)
            _, result = self._aggregate(chosen, what, encoding=encoding, plan=plan, description="secure_sum(fn)",
                                        integer_encoding=ints)
        else:
            columns = _columns_arg(what)
            _stats.check_null_policy(nulls)
            check_numeric_columns(chosen, columns)
            if epsilon is None:
                value, result = self._aggregate(
                    chosen, partial(_stats.local_column_sums, columns=columns, nulls=nulls), encoding=encoding,
                    description=f"sum({', '.join(columns)})", integer_encoding=ints,
                )
                result.value = {c: value[f"sum:{c}"] for c in columns}
                result.nulls_skipped = {c: round(value[f"nulls:{c}"]) for c in columns}
            else:
                from .dp.mechanisms import check_bounds

                per = {c: check_bounds(*_bounds_for(bounds, c), column=c) for c in columns}
                # Each column's noise is proportional to how much one record can move it.
                reach = {c: max(abs(lo), abs(hi), 1e-12) for c, (lo, hi) in per.items()}
                plan = self._plan(epsilon, delta, mechanism, noise, weights=reach)
                value, result = self._aggregate(
                    chosen, partial(_local_clamped_sums, bounds=per, nulls=nulls), encoding=encoding, plan=plan,
                    description=f"dp sum({', '.join(columns)})",
                )
                result.value = {c: value[c] for c in columns}
        self.history.append(result)
        return result

    # -- differential privacy -----------------------------------------------------
    @property
    def budget(self) -> PrivacyBudget:
        """The federation's privacy budgets and ledger (see :class:`fedbench.dp.PrivacyBudget`)."""
        from .dp.budget import federation_budget
        from .dp.ledger import party_identity

        def study() -> dict[str, str]:
            return {
                p.name: party_identity(p.name, p.source, p.schema if p.source.startswith("<") else None)
                for p in self._parties.values()
            }

        self._budget = federation_budget(self._budget, self._ledger_path, study, lambda: self.party_names)
        return self._budget

    def set_budget(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        *,
        parties: Sequence[str] | None = None,
        overrides: Mapping[str, tuple[float, float]] | None = None,
        description: str = "",
        allow_increase: bool = False,
    ) -> PrivacyBudget:
        """Set each party's privacy budget ``(epsilon, delta)``; every change is a ledger entry.

        Parameters
        ----------
        epsilon : float, default 1.0
            Epsilon budget of each party.
        delta : float, default 1e-6
            Delta budget of each party.
        parties : list of str, optional
            Parties to set (default: all).
        overrides : dict of party to (epsilon, delta), optional
            Per-party budgets, e.g. ``{"west": (2.0, 1e-6)}``.
        description : str
            Why (recorded with the ledger entry).
        allow_increase : bool, default False
            Allow raising the budget of a party that has already spent some
            (needs a ``description``; recorded and flagged).

        Returns
        -------
        PrivacyBudget
            ``fed.budget``: ``spent(party)``, ``remaining(party)``, ``ledger``, ``refusals``.
        """
        self.budget.set_budget(
            epsilon, delta, parties=parties, overrides=overrides, description=description, allow_increase=allow_increase
        )
        return self.budget

    def _plan(self, epsilon: float, delta: float | None, mechanism: str, noise: str, l1: float = 1.0,
              l2: float = 1.0, weights: Mapping[str, float] | None = None) -> NoisePlan:
        from .dp.releases import NoisePlan

        return NoisePlan.make(epsilon=epsilon, delta=delta, mechanism=mechanism, noise=noise, l1=l1, l2=l2,
                              weights=weights)

    def _dp_clamped(self, column: str | None, chosen: list[Party], nulls: str, epsilon: float,
                    delta: float | None, bounds: tuple[float, float] | None, mechanism: str, noise: str,
                    what: str) -> dict[str, float]:
        from .dp.mechanisms import check_bounds
        from .dp.releases import local_clamped_sum, mean_weights

        _stats.check_null_policy(nulls)
        if column is not None:
            check_numeric_columns(chosen, [column])
        if what == "count":
            lo = hi = centre = 0.0
            plan = self._plan(epsilon, delta, mechanism, noise, 1.0, 1.0)
        else:
            lo, hi = check_bounds(*(bounds if bounds is not None else (None, None)), column=column)
            if what == "mean":
                centre = (lo + hi) / 2
                plan = self._plan(epsilon, delta, mechanism, noise, weights=mean_weights(lo, hi))
            else:
                centre = 0.0
                reach = max(abs(lo), abs(hi), 1e-12)
                plan = self._plan(epsilon, delta, mechanism, noise, reach, reach)
        local = partial(local_clamped_sum, column=column, lower=lo, upper=hi, centre=centre, nulls=nulls)
        if what != "mean":  # release only the entry the statistic needs
            key = "count" if what == "count" else "sum"
            local = partial(_only, local_fn=local, key=key)
        v, res = self._aggregate(chosen, local, encoding=self.encoding, plan=plan,
                                 description=f"dp {what}({column or 'rows'})", protocol="stats")
        self.history.append(res)
        return v

    # -- statistics -------------------------------------------------------------
    def _moments(self, columns: list[str], chosen: list[Party], nulls: str, ddof: int) -> pl.DataFrame:
        _stats.check_null_policy(nulls)
        check_numeric_columns(chosen, columns)
        v1, r1 = self._aggregate(
            chosen, partial(_stats.local_column_sums, columns=columns, nulls=nulls),
            encoding=self.encoding, protocol="stats",
        )
        counts = [round(v1[f"count:{c}"]) for c in columns]
        means = [v1[f"sum:{c}"] / n if n else math.nan for c, n in zip(columns, counts, strict=True)]
        usable = [c for c, mu in zip(columns, means, strict=True) if not math.isnan(mu)]
        ssd: dict[str, float] = {}
        if usable:
            v2, r2 = self._aggregate(
                chosen,
                partial(_stats.local_squared_deviations, columns=usable,
                        means=[m for c, m in zip(columns, means, strict=True) if c in usable], nulls=nulls),
                encoding=self.encoding, protocol="stats",
            )
            ssd = {c: max(0.0, v2[f"ssd:{c}"]) for c in usable}
            self.history.append(r2)
        self.history.append(r1)
        var = [ssd[c] / (n - ddof) if c in ssd and n > ddof else math.nan for c, n in zip(columns, counts, strict=True)]
        return pl.DataFrame(
            {
                "column": columns,
                "count": counts,
                "nulls": [round(v1[f"nulls:{c}"]) for c in columns],
                "sum": [v1[f"sum:{c}"] for c in columns],
                "mean": means,
                "var": var,
                "std": [math.sqrt(v) if not math.isnan(v) else math.nan for v in var],
                "parties": [len(chosen)] * len(columns),
            },
            schema={"column": pl.String, "count": pl.Int64, "nulls": pl.Int64, "sum": pl.Float64,
                    "mean": pl.Float64, "var": pl.Float64, "std": pl.Float64, "parties": pl.Int64},
        )

    def stats(
        self,
        columns: str | Sequence[str] | None = None,
        *,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        ddof: int = 1,
    ) -> pl.DataFrame:
        """Count, nulls, sum, mean, variance and standard deviation per column, securely.

        Parameters
        ----------
        columns : str or list of str, optional
            Numeric columns; default: every shared numeric column.
        parties : list of str, optional
            Parties taking part (default: all).
        nulls : {"skip", "error"}, default "skip"
            Null policy (see :mod:`fedbench.stats`).
        ddof : int, default 1
            Delta degrees of freedom of the variance (1: sample variance, like pandas).

        Returns
        -------
        polars.DataFrame
            One row per column: ``column, count, nulls, sum, mean, var, std, parties``.

        Notes
        -----
        Two secure sums: counts and sums first, then squared deviations from
        the released global mean.  Minimum and maximum are not offered: they
        would reveal one individual's value.
        """
        chosen = self._select(parties)
        if columns is None:
            report = SchemaReport.of(chosen)
            columns = [c for c in report.shared
                       if all(column_kind(p.schema[c]) == "numeric" for p in chosen)]
            if not columns:
                raise ConfigurationError("the parties share no numeric column; name the columns to describe")
        return self._moments(_columns_arg(columns), chosen, nulls, ddof)

    def count(
        self,
        column: str | None = None,
        *,
        parties: Sequence[str] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
    ) -> int:
        """Number of rows (or non-null cells of ``column``) across parties, securely.

        With ``epsilon`` the count is differentially private (sensitivity 1),
        rounded and floored at 0 (post-processing).
        """
        chosen = self._select(parties)
        if epsilon is not None:
            v = self._dp_clamped(column, chosen, "skip", epsilon, delta, None, mechanism, noise, "count")
            return max(0, round(v["count"]))
        if column is None:
            res = self.secure_sum(_row_count, parties=[p.name for p in chosen])
            return round(res.value["rows"])
        return int(self._moments([column], chosen, "skip", 1)["count"][0])

    def sum(
        self,
        column: str,
        *,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        epsilon: float | None = None,
        bounds: tuple[float, float] | None = None,
        delta: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
    ) -> float | int:
        """Sum of a numeric column across parties, securely.

        The exact sum of an integer column is a Python int.  With ``epsilon``
        the sum is differentially private: values are clamped to the declared
        ``bounds`` (required) and noise calibrated to ``max(|lower|, |upper|)``
        is added.
        """
        if epsilon is not None:
            v = self._dp_clamped(column, self._select(parties), nulls, epsilon, delta, bounds, mechanism, noise, "sum")
            return float(v["sum"])
        total = self.secure_sum([column], parties=parties, nulls=nulls).value[column]
        return total if isinstance(total, int) else float(total)  # integer columns sum exactly

    def mean(
        self,
        column: str,
        *,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        epsilon: float | None = None,
        bounds: tuple[float, float] | None = None,
        delta: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
    ) -> float:
        """Mean of a numeric column across parties, securely.

        Parameters
        ----------
        column : str
            Numeric column.
        parties : list of str, optional
            Parties taking part (default: all).
        nulls : {"skip", "error"}, default "skip"
            Null policy.
        epsilon : float, optional
            Release the mean with epsilon-DP, charged to every touched party.
        bounds : (float, float), optional
            Required with ``epsilon``: declared value range; values are clamped.
        delta : float, optional
            With ``mechanism="gaussian"``.
        mechanism : {"laplace", "gaussian"}, default "laplace"
            Noise distribution.
        noise : {"distributed", "central"}, default "distributed"
            Who adds the noise (see :meth:`secure_sum`).

        Returns
        -------
        float

        Notes
        -----
        The DP mean releases the pair (sum of clamped values minus the bounds'
        midpoint, count) with one mechanism of L1 sensitivity
        ``(upper - lower) / 2 + 1`` and divides (post-processing), clamping the
        result to the bounds.
        """
        chosen = self._select(parties)
        if epsilon is not None:
            from .dp.mechanisms import dp_mean

            v = self._dp_clamped(column, chosen, nulls, epsilon, delta, bounds, mechanism, noise, "mean")
            assert bounds is not None  # checked by _dp_clamped
            return dp_mean(v["sum"], v["count"], float(bounds[0]), float(bounds[1]))
        _stats.check_null_policy(nulls)
        check_numeric_columns(chosen, [column])
        v, res = self._aggregate(chosen, partial(_stats.local_column_sums, columns=[column], nulls=nulls),
                                 encoding=self.encoding, protocol="stats", description=f"mean({column})")
        self.history.append(res)
        n = v[f"count:{column}"]
        if n < 0.5:
            raise EmptyPartyError(f"column {column!r} has no non-null value in any party")
        return v[f"sum:{column}"] / n

    def var(self, column: str, *, parties: Sequence[str] | None = None, nulls: str = "skip",
            ddof: int = 1) -> float:
        """Variance of a numeric column across parties (two secure rounds)."""
        return float(self._moments([column], self._select(parties), nulls, ddof)["var"][0])

    def std(self, column: str, *, parties: Sequence[str] | None = None, nulls: str = "skip",
            ddof: int = 1) -> float:
        """Standard deviation of a numeric column across parties (two secure rounds)."""
        return math.sqrt(self.var(column, parties=parties, nulls=nulls, ddof=ddof))

    def histogram(
        self,
        column: str,
        bins: int | Sequence[float] = 10,
        range: tuple[float, float] | None = None,
        *,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        epsilon: float | None = None,
        delta: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
    ) -> HistogramResult:
        """Fixed-bin histogram of a numeric column, securely.

        Parameters
        ----------
        column : str
            Numeric column.
        bins : int or sequence of float, default 10
            Number of equal-width bins over ``range``, or explicit increasing edges.
        range : (float, float), optional
            Required with an integer ``bins``: the bins must be declared up front,
            because deriving them from the data would reveal its minimum and maximum.
        parties, nulls
            As in :meth:`secure_sum`.
        epsilon, delta, mechanism, noise : optional
            Make the histogram differentially private (each record lands in one
            cell, bins or below/above/null, so the sensitivity is 1); noisy
            counts are rounded and floored at 0.

        Returns
        -------
        HistogramResult
        """
        if isinstance(bins, int | np.integer):
            if range is None:
                raise ConfigurationError(
                    f"histogram of {column!r}: pass range=(low, high) or explicit bin edges; "
                    "bins are declared up front so that no party's extremes are revealed"
                )
            try:
                low, high = (float(r) for r in range)
            except (TypeError, ValueError):
                raise ConfigurationError(f"histogram of {column!r}: range must be two numbers (low, high)") from None
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ConfigurationError(
                    f"histogram of {column!r}: range must be finite, got {range}; values beyond a finite range "
                    "are counted in 'below' and 'above'"
                )
            if bins < 1 or not low < high:
                raise ConfigurationError(f"need bins >= 1 and range low < high, got {bins}, {range}")
            edges = np.linspace(low, high, int(bins) + 1)
            if not np.all(np.diff(edges) > 0):  # e.g. more bins than floats between low and high
                raise ConfigurationError(f"histogram of {column!r}: {bins} bins do not fit in {range}")
        else:
            try:
                edges = np.asarray(bins, dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigurationError("bin edges must be a sequence of numbers") from None
            if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
                raise ConfigurationError("bin edges must be a strictly increasing sequence of at least 2 numbers")
            if not np.isfinite(edges).all():
                raise ConfigurationError(
                    f"histogram of {column!r}: bin edges must be finite; values beyond the outer edges are "
                    "counted in 'below' and 'above'"
                )
        chosen = self._select(parties)
        _stats.check_null_policy(nulls)
        check_numeric_columns(chosen, [column])
        if epsilon is not None:
            from .dp.releases import local_dp_histogram

            plan = self._plan(epsilon, delta, mechanism, noise, 1.0, 1.0)
            v, res = self._aggregate(chosen, partial(local_dp_histogram, column=column, edges=edges, nulls=nulls),
                                     encoding=self.encoding, protocol="histogram", plan=plan,
                                     description=f"dp histogram({column})")
            self.history.append(res)
            cells = np.maximum(0, np.rint(np.asarray(v["counts"]))).astype(np.int64)
            return HistogramResult(column=column, edges=edges, counts=cells[:-3], below=int(cells[-3]),
                                   above=int(cells[-2]), nulls=int(cells[-1]), sum_result=res)
        v, res = self._aggregate(chosen, partial(_stats.local_histogram, column=column, edges=edges, nulls=nulls),
                                 encoding=self.encoding, protocol="histogram", description=f"histogram({column})")
        self.history.append(res)
        return HistogramResult(
            column=column,
            edges=edges,
            counts=np.rint(v["counts"]).astype(np.int64),
            below=round(v["below"]),
            above=round(v["above"]),
            nulls=round(v["nulls"]),
            sum_result=res,
        )

    def quantile(
        self,
        column: str,
        q: float | Sequence[float] = 0.5,
        *,
        epsilon: float,
        bounds: tuple[float, float] | None = None,
        bins: int = 64,
        parties: Sequence[str] | None = None,
        nulls: str = "skip",
        delta: float | None = None,
        mechanism: str = "laplace",
        noise: str = "distributed",
    ) -> float | list[float]:
        """Differentially private quantiles of a numeric column.

        A DP histogram over ``bins`` equal bins of the declared ``bounds`` is
        securely aggregated with distributed noise (nobody sees exact counts),
        and the quantiles are read off its monotone CDF (post-processing), so
        any number of levels costs one ``epsilon``.  Accuracy is limited by the
        bin width and the noise.

        Parameters
        ----------
        column : str
            Numeric column.
        q : float or list of float, default 0.5
            Quantile level(s) in [0, 1].
        epsilon : float
            Privacy cost, charged to every touched party.
        bounds : (float, float)
            Declared value range (required).
        bins : int, default 64
            Histogram resolution.
        parties, nulls, delta, mechanism, noise
            As in :meth:`histogram`.

        Returns
        -------
        float or list of float
        """
        from .dp.mechanisms import check_bounds
        from .dp.releases import check_quantiles, quantiles_from_noisy_histogram

        qs = check_quantiles(q)
        lo, hi = check_bounds(*(bounds if bounds is not None else (None, None)), column=column)
        if not isinstance(bins, int) or bins < 2:
            raise ConfigurationError(f"bins must be an integer >= 2, got {bins!r}")
        h = self.histogram(column, bins, (lo, hi), parties=parties, nulls=nulls, epsilon=epsilon, delta=delta,
                           mechanism=mechanism, noise=noise)
        # Values outside the bounds count at the edges (they would be clamped).
        counts = h.counts.astype(np.float64).copy()
        counts[0] += h.below
        counts[-1] += h.above
        out = quantiles_from_noisy_histogram(counts, h.edges, qs)
        return out[0] if isinstance(q, int | float) else out

    def cov(self, columns: Sequence[str], *, parties: Sequence[str] | None = None, nulls: str = "skip",
            ddof: int = 1) -> pl.DataFrame:
        """Covariance matrix over rows complete in ``columns`` (two secure rounds).

        Returns
        -------
        polars.DataFrame
            A ``column`` label column followed by one column per input column.
        """
        cols = _columns_arg(columns)
        cov, _ = self._cov(cols, self._select(parties), nulls, ddof)
        return _matrix_frame(cols, cov)

    def corr(self, columns: Sequence[str], *, parties: Sequence[str] | None = None,
             nulls: str = "skip") -> pl.DataFrame:
        """Pearson correlation matrix over rows complete in ``columns`` (two secure rounds)."""
        cols = _columns_arg(columns)
        cov, _ = self._cov(cols, self._select(parties), nulls, 1)
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(sd, sd)
        np.fill_diagonal(corr, 1.0)
        return _matrix_frame(cols, np.clip(corr, -1.0, 1.0))

    def _cov(self, cols: list[str], chosen: list[Party], nulls: str, ddof: int) -> tuple[np.ndarray, int]:
        _stats.check_null_policy(nulls)
        check_numeric_columns(chosen, cols)
        v1, r1 = self._aggregate(chosen, partial(_stats.local_complete_cases, columns=cols, nulls=nulls),
                                 encoding=self.encoding, protocol="cov")
        n = round(v1["n"])
        if n <= ddof:
            raise EmptyPartyError(f"only {n} complete rows over {cols} across all parties; cannot estimate")
        means = (np.asarray(v1["sum"]) / n).tolist()
        v2, r2 = self._aggregate(chosen, partial(_stats.local_cross_deviations, columns=cols, means=means,
                                                 nulls=nulls), encoding=self.encoding, protocol="cov")
        self.history += [r1, r2]
        m = np.asarray(v2["cross"])
        return (m + m.T) / 2 / (n - ddof), n

    def group_counts(
        self,
        by: str | Sequence[str],
        *,
        categories: Mapping[str, Sequence[Any]] | None = None,
        parties: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Row counts per group of ``by`` across parties, securely.

        Parameters
        ----------
        by : str or list of str
            Grouping columns (any type; nulls form their own group).
        categories : mapping of column to values, optional
            The declared values of each column; groups are their combinations.
            When omitted, parties first agree on the union of the combinations
            they hold: each sends its distinct combinations in the clear to the
            coordinator (recorded in the transcript), which reveals *which*
            groups each party has, though not how many rows.  Declare the
            categories to avoid that.
        parties : list of str, optional
            Parties taking part.

        Returns
        -------
        polars.DataFrame
            The ``by`` columns and ``count``, sorted by the groups.
        """
        by_cols = _columns_arg(by)
        chosen = self._select(parties)
        for p in chosen:
            p.require_columns(by_cols)
        if len(chosen) < MIN_PARTIES:
            self._aggregate(chosen, _noop, encoding=self.encoding)  # raises TooFewPartiesError
        if categories is not None:
            missing = [c for c in by_cols if c not in categories]
            if missing:
                raise ConfigurationError(f"categories lacks the grouping column(s) {missing}")
            groups: list[tuple[Any, ...]] = [()]
            for c in by_cols:
                groups = [(*g, v) for g in groups for v in categories[c]]
        else:
            channel = self._channel("category_union")
            union: set[tuple[Any, ...]] = set()
            for p, distinct in zip(chosen, self.backend.compute(chosen, partial(_stats.local_distinct, by=by_cols)),
                                   strict=True):
                data = channel.send(p.name, "coordinator", "category-set", dumps([list(d) for d in distinct]),
                                    encrypted=False)
                del data
                union.update(distinct)
            groups = sorted(union, key=lambda g: tuple((v is None, str(type(v)), v if v is not None else 0)
                                                       for v in g))
            for p in chosen:
                channel.send("coordinator", p.name, "category-union", dumps([list(g) for g in groups]),
                             encrypted=False)
        if not groups:
            raise ProtocolError("no groups to count")
        v, res = self._aggregate(chosen, partial(_stats.local_group_counts, by=by_cols, groups=groups),
                                 encoding=self.encoding, protocol="group_counts")
        self.history.append(res)
        counts = np.rint(v["counts"]).astype(np.int64)
        data: dict[str, list[Any]] = {c: [g[i] for g in groups] for i, c in enumerate(by_cols)}
        data["count"] = counts.tolist()
        schema = {c: chosen[0].schema[c] for c in by_cols} | {"count": pl.Int64}
        return pl.DataFrame(data, schema=schema)

    # -- other protocols (each lives in its own module) ------------------------------
    def intersect(
        self,
        on: str | Sequence[str],
        *,
        parties: Sequence[str] | None = None,
        mode: str = "cardinality",
        receiver: str | None = None,
        **options: Any,
    ) -> Any:
        """Private set intersection of the parties' identifiers (ECDH-PSI).

        Parameters
        ----------
        on : str or list of str
            Key column(s); several columns form a composite key.
        parties : list of str, optional
            Parties taking part (default: all; exactly two for ``align``).
        mode : {"cardinality", "reveal", "align"}, default "cardinality"
            What the parties learn: only the size (and pairwise overlaps), the
            shared identifiers (``receiver`` only), or matched row positions.
        receiver : str, optional
            The party that learns the shared identifiers in ``reveal`` mode.
        **options
            ``normalize``, ``nulls``, ``duplicates``, ``cast``... (see :func:`fedbench.psi.intersect`).

        Returns
        -------
        fedbench.psi.PSIResult
        """
        from .psi import intersect as _intersect

        chosen = self._select(parties)
        if self.backend.name != "inprocess":
            # In-process, PSI keeps its own default: its worker pool on every core for
            # large sets, none for small ones (the backend's single worker would force 1).
            options.setdefault("workers", self.backend.workers)
        result = _intersect(chosen, on, mode=mode, receiver=receiver, channel=self._channel("psi"),
                            backend=self.backend, **options)
        if self.budget.parties:  # also a ledger persisted by an earlier kernel
            # PSI sizes (and in reveal/align modes, memberships) are exact releases: logged, never DP.
            keys = on if isinstance(on, str) else ", ".join(on)
            self.budget.record_exact([p.name for p in chosen], mechanism="psi", description=f"psi {mode} on {keys}")
        self.history.append(result)
        return result

    def fit(self, estimator: Any, **options: Any) -> FitRun:
        """Train a scikit-learn estimator across the parties (see :func:`fedbench.learn.fit`)."""
        from .learn import fit as _fit

        return _fit(self, estimator, **options)

    def fit_vertical(self, estimator: Any, **options: Any) -> VerticalRun:
        """Train on columns split across parties after PSI alignment (see :func:`fedbench.learn.fit_vertical`)."""
        from .learn import fit_vertical as _fit_vertical

        return _fit_vertical(self, estimator, **options)

    # -- lifecycle and display ---------------------------------------------------
    def close(self) -> None:
        """Release backend workers."""
        self.backend.close()

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        lines = [
            f"<Federation: {len(self)} parties, {self.key_bits}-bit Paillier"
            f"{' (DJN fast encryption)' if self.fast_encryption else ''}, backend {self.backend.name}>"
        ]
        for p in self:
            lines.append(f"  {p.name}: {p.n_rows} rows x {len(p.columns)} columns ({p.source})")
        if len(self):
            rep = self.schema
            lines.append(f"  shared columns: {len(rep.shared)}; kind conflicts: {len(rep.conflicts)}")
        lines.append(f"  transcript: {len(self.transcript)} messages, {_fmt_bytes(self.transcript.nbytes)}")
        lines.append(f"  threat model: {THREAT_MODEL}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{escape(p.name)}</td><td style='text-align:right'>{p.n_rows}</td>"
            f"<td style='text-align:right'>{len(p.columns)}</td><td>{escape(p.source)}</td></tr>"
            for p in self
        )
        rep = self.schema if len(self) else None
        info = [
            ("parties", str(len(self))),
            ("crypto", f"{self.key_bits}-bit Paillier" + (" (DJN fast encryption)" if self.fast_encryption else "")),
            ("backend", escape(self.backend.name)),
            ("transcript", f"{len(self.transcript)} messages, {_fmt_bytes(self.transcript.nbytes)}"),
        ]
        if rep is not None:
            info.append(("schema", f"{len(rep.shared)} shared columns, {len(rep.conflicts)} kind conflicts"))
        table = (
            "<table><thead><tr><th>party</th><th>rows</th><th>columns</th><th>source</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
        return render_card("Federation", info, table)


class _FederationCoordinator:
    """Interim adapter exposing a federation through the :class:`~fedbench.coordinator.Coordinator` interface."""

    def __init__(self, fed: Federation) -> None:
        self._fed = fed

    keys = property(lambda self: self._fed.keys)
    key_bits = property(lambda self: self._fed.key_bits)
    fast_encryption = property(lambda self: self._fed.fast_encryption)
    encoding = property(lambda self: self._fed.encoding)
    backend = property(lambda self: self._fed.backend)
    transcript = property(lambda self: self._fed.transcript)
    audit = property(lambda self: self._fed.audit)
    budget = property(lambda self: self._fed.budget)
    history = property(lambda self: self._fed.history)

    def select(self, parties: Sequence[str] | str | None) -> list[Party]:
        return self._fed._select(parties)

    def channel(self, protocol: str) -> Channel:
        return self._fed._channel(protocol)

    def encoding_for(self, max_abs: float | None, frac_bits: int | None, base: Encoding | None = None) -> Encoding:
        return self._fed._encoding(max_abs, frac_bits, base)

    def aggregate(self, parties: list[Party], local_fn: LocalFn,
                  **options: Any) -> tuple[dict[str, Any], SecureSumResult]:
        return self._fed._aggregate(parties, local_fn, **options)


def _reading(read_options: Mapping[str, Any] | None, *, null_values: str | Sequence[str] | None,
             separator: str | None, encoding: str) -> dict[str, Any]:
    """The reading options of one party: the polars options plus fedbench's declared ones."""
    opts = dict(read_options or {})
    if null_values is not None:
        opts["null_values"] = null_values
    if separator is not None:
        opts["separator"] = separator
    if encoding != "utf-8":
        opts["encoding"] = encoding
    return opts


def _noop(df: pl.DataFrame) -> dict[str, float]:
    return {"x": 0.0}


def _row_count(df: pl.DataFrame) -> dict[str, float]:
    return {"rows": float(df.height)}


def _only(df: pl.DataFrame, *, local_fn: LocalFn, key: str) -> dict[str, Any]:
    return {key: local_fn(df)[key]}


def _local_clamped_sums(df: pl.DataFrame, *, bounds: Mapping[str, tuple[float, float]], nulls: str
                        ) -> dict[str, float]:
    out = {}
    for c, (lo, hi) in bounds.items():
        v, _ = _stats.column_values(df, c, nulls)
        out[c] = math.fsum(np.clip(v, lo, hi))  # correctly rounded: its one rounding is in the DP calibration
    return out


def _bounds_for(bounds: tuple[float, float] | Mapping[str, tuple[float, float]] | None,
                column: str) -> tuple[float | None, float | None]:
    if bounds is None:
        return None, None
    if isinstance(bounds, Mapping):
        return tuple(bounds.get(column, (None, None)))  # type: ignore[return-value]
    return bounds[0], bounds[1]


def _columns_arg(columns: str | Sequence[str]) -> list[str]:
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise ConfigurationError(f"expected a column name or a non-empty list of names, got {columns!r}")
    if len(set(cols)) != len(cols):
        raise ConfigurationError(f"columns listed twice in {cols}")
    return cols


def _matrix_frame(cols: list[str], m: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"column": cols} | {c: m[:, i] for i, c in enumerate(cols)})
