"""The :class:`Federation`: virtual parties plus the protocols that run across them."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from . import statistics
from .backend import DEFAULT_LOCAL_TIMEOUT, Backend, check_local_timeout, get_backend
from .coordinator import FederationCoordinator
from .crypto.paillier import DEFAULT_KEY_BITS, PaillierKeys
from .crypto.threshold import ThresholdPaillierKeys
from .disclosure import ReleasePolicy
from .errors import ConfigurationError, DataLoadError, DuplicatePartyError, SchemaWarning
from .party import FORMATS, Party, validate_party_name
from .results import render_card
from .schema import SchemaReport
from .transcript import _fmt_bytes

if TYPE_CHECKING:
    import pandas as pd

    from .coordinator import Coordinator
    from .dp import PrivacyBudget
    from .learn import FitRun, VerticalRun
    from .psi import PSIResult

__all__ = ["Federation"]


def _delegate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A method running the statistic ``fn`` on the federation's coordinator (same signature and docstring)."""

    def method(self: Federation, *args: Any, **kwargs: Any) -> Any:
        return fn(self.coordinator, *args, **kwargs)

    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    method.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params[1:]])
    method.__name__ = method.__qualname__ = fn.__name__
    method.__doc__ = fn.__doc__
    method.__module__ = __name__
    return method


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
    secagg : str, default "paillier"
        Secure-aggregation protocol, by name from
        :func:`fedbench.secagg.available_protocols` (each declares its trust and
        cost model; see :mod:`fedbench.secagg`): ``"paillier"`` (one key holder,
        or threshold keys, see ``keys``), ``"masking"`` (pairwise masks with
        Shamir-shared dropout recovery, no key holder;
        :mod:`fedbench.secagg.masking`), ``"ckks"`` (lattice-based, approximate
        within a reported bound, one key holder; extra ``fedbench[ckks]``) or
        ``"ckks-multiparty"`` (lattice-based, approximate, no key holder, n-of-n
        decryption; OpenFHE under a CPython 3.10, see :mod:`fedbench.secagg.ckks_multiparty`).  Every statistic,
        :meth:`secure_sum` and :meth:`fit` also take ``protocol=`` to choose
        another one for one call.
    secagg_options : mapping, optional
        Options of the ``secagg`` protocol for every sum of this federation,
        e.g. ``{"threshold": 4, "neighbours": 6, "dropout": {"west": 3}}`` for
        ``"masking"`` (see :class:`fedbench.secagg.MaskingSecAgg`); refused
        if the protocol does not take them.  :meth:`secure_sum` also takes
        ``threshold=``, ``neighbours=`` and ``dropout=`` for one call (overriding these).
    keys : {"single", "threshold", "threshold-dealerless"}, default "single"
        Who can decrypt Paillier aggregates: one key holder, or any ``threshold``
        of the parties (Damgard-Jurik threshold decryption, see
        :mod:`fedbench.crypto.threshold`).  A threshold key is set up on first
        use among the parties present then: by a dealer (``"threshold"``), or by
        the parties themselves with TNO's distributed key generation
        (``"threshold-dealerless"``, extra ``fedbench[dealerless]``; odd
        ``threshold`` only; seconds to minutes at 512 bits, and it did not
        finish within ten minutes at 1024 bits or more on two cores); each secure sum
        is then decrypted by ``threshold`` share holders, whose partial
        decryptions the aggregator verifies (zero-knowledge proofs) and combines.
        Central DP noise is refused (there is no key holder to add it).
    threshold : int, optional
        With ``keys="threshold"``: parties needed to decrypt (2 to the number of parties).

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
        secagg: str = "paillier",
        secagg_options: Mapping[str, Any] | None = None,
        keys: str = "single",
        threshold: int | None = None,
    ) -> None:
        self._parties: dict[str, Party] = {}
        self._coordinator = FederationCoordinator(
            self._parties, key_bits=key_bits, backend=get_backend(backend),
            allow_insecure_key_size=allow_insecure_key_size, fast_encryption=fast_encryption, frac_bits=frac_bits,
            max_abs=max_abs, audit=audit, ledger_path=ledger_path, local_timeout=check_local_timeout(local_timeout),
            secagg=secagg, secagg_options=secagg_options, keys=keys, threshold=threshold)

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_frames(cls, frames: Mapping[str, pl.DataFrame], **options: Any) -> Federation:
        """A federation with one party per named DataFrame (empty frames are skipped).

        The parties' column types are agreed once for all of them, which keeps
        building a federation of a thousand simulated parties fast.

        Parameters
        ----------
        frames : mapping of str to polars.DataFrame
            Party name -> that party's rows.
        **options
            Keyword arguments of :class:`Federation`.

        Returns
        -------
        Federation
        """
        fed = cls(**options)
        fed._insert([fed.backend.make_party(name, df) for name, df in frames.items() if df.height])
        return fed

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

    def _insert(self, party: Party | Sequence[Party]) -> None:
        # Several parties at once agree on the column types once, not once per party (1,000 parties).
        new = [party] if isinstance(party, Party) else list(party)
        for p in new:
            self._parties[p.name] = p
        try:
            report = self._agree()
        except BaseException:
            # A new party made an agreement some party cannot cast to: refuse them, restore the others.
            for p in new:
                del self._parties[p.name]
            self._agree()
            for p in new:
                self.backend.release_party(p)
            raise
        for p in new:
            for column, dtypes in report.conflicts.items():
                if p.name in dtypes:
                    warnings.warn(
                        f"party {p.name!r}: column {column!r} is {dtypes[p.name]} but "
                        + ", ".join(f"{q} has {t}" for q, t in dtypes.items() if q != p.name)
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
        self._coordinator.forget(name)
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

    # -- the coordinator and its state (one-line delegates) ---------------------------------
    @property
    def coordinator(self) -> Coordinator:
        """The typed interface that protocol layers use (see :mod:`fedbench.coordinator`)."""
        return self._coordinator

    @property
    def keys(self) -> PaillierKeys | ThresholdPaillierKeys:
        """The federation's Paillier keys, generated on first use (a key holder's pair, or threshold shares)."""
        return self._coordinator.keys

    @property
    def _keys(self) -> PaillierKeys | ThresholdPaillierKeys | None:
        # Tests install a pre-generated key pair this way (``fed._keys = KEYS``) to skip key generation.
        return self._coordinator._keys

    @_keys.setter
    def _keys(self, keys: PaillierKeys | ThresholdPaillierKeys | None) -> None:
        self._coordinator.keys = keys

    key_bits = property(lambda self: self._coordinator.key_bits, doc="Paillier modulus size in bits.")
    allow_insecure_key_size = property(lambda self: self._coordinator.allow_insecure_key_size,
                                       doc="Whether keys below 2048 bits were allowed.")
    fast_encryption = property(lambda self: self._coordinator.fast_encryption,
                               doc="Whether parties encrypt with the DJN fixed-base variant.")
    encoding = property(lambda self: self._coordinator.encoding,
                        doc="The wide public fixed-point encoding (column sums, statistics, learning).")
    sum_encoding = property(lambda self: self._coordinator.sum_encoding,
                            doc="The tight public encoding of exact sums of a function.")
    backend = property(lambda self: self._coordinator.backend, doc="Where party-local work and encryption run.")
    transcript = property(lambda self: self._coordinator.transcript, doc="Every message of every run, by role.")
    audit = property(lambda self: self._coordinator.audit, doc="Whether the transcript keeps message payloads.")
    history = property(lambda self: self._coordinator.history,
                       doc="Releases made so far (secure-sum runs and PSI results; never party data).")
    local_timeout = property(lambda self: self._coordinator.local_timeout,
                             doc="Seconds a user function may run inside a party (None: no limit).")

    @property
    def release_policy(self) -> ReleasePolicy:
        """The release policy checked before every exact statistic (see :mod:`fedbench.disclosure`).

        Default ``ReleasePolicy(min_group_size=5, action="warn")``: a
        :class:`~fedbench.disclosure.DisclosureRiskWarning` before an exact release
        whose difference with an earlier one isolates one party, or with a
        non-empty group or histogram cell below ``min_group_size``.  Set
        ``fed.release_policy = fb.attacks.ReleasePolicy(action="refuse")`` to
        refuse such releases instead, or ``action="off"``.  DP releases never trigger it.
        """
        return self._coordinator.release_guard.policy

    @release_policy.setter
    def release_policy(self, policy: ReleasePolicy) -> None:
        if not isinstance(policy, ReleasePolicy):
            raise ConfigurationError(
                f"release_policy must be a fedbench.attacks.ReleasePolicy, got {type(policy).__name__}")
        self._coordinator.release_guard.policy = policy

    @property
    def budget(self) -> PrivacyBudget:
        """The federation's privacy budgets and ledger (see :class:`fedbench.dp.PrivacyBudget`)."""
        return self._coordinator.budget

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

    def _get(self, name: str) -> Party:
        return self._coordinator.get(name)

    # -- statistics (see fedbench.statistics; every one returns a fedbench.results.Result) -----------
    secure_sum = _delegate(statistics.secure_sum)
    count = _delegate(statistics.count)
    sum = _delegate(statistics.sum)
    mean = _delegate(statistics.mean)
    var = _delegate(statistics.var)
    std = _delegate(statistics.std)
    stats = _delegate(statistics.stats)
    cov = _delegate(statistics.cov)
    corr = _delegate(statistics.corr)
    group_counts = _delegate(statistics.group_counts)
    histogram = _delegate(statistics.histogram)
    quantile = _delegate(statistics.quantile)

    # -- other protocols (each lives in its own module) ------------------------------
    def intersect(
        self,
        on: str | Sequence[str],
        *,
        parties: Sequence[str] | None = None,
        mode: str = "cardinality",
        receiver: str | None = None,
        **options: Any,
    ) -> PSIResult:
        """Private set intersection of the parties' identifiers (ECDH-PSI).

        Parameters
        ----------
        on : str or list of str
            Key column(s); several columns form a composite key.  Named ``on``
            (as in a join), not ``columns``: it names the identifiers matched,
            not the columns a statistic is computed on.
        parties : list of str, optional
            Parties taking part (default: all; exactly two for ``align``).
        mode : {"cardinality", "reveal", "align"}, default "cardinality"
            What the parties learn: only the size (and pairwise overlaps), the
            shared identifiers (``receiver`` only), or matched row positions.
        receiver : str, optional
            The party that learns the shared identifiers in ``reveal`` mode.
        **options
            ``normalize``, ``nulls`` (``"skip"`` or ``"error"``; ``"drop"`` is
            the old spelling of ``"skip"``), ``duplicates``, ``cast``... (see
            :func:`fedbench.psi.intersect`).

        Returns
        -------
        fedbench.psi.PSIResult
        """
        if options.get("nulls") == "skip":  # the statistics' word; the PSI module calls it "drop"
            options["nulls"] = "drop"
        elif options.get("nulls") == "drop":
            warnings.warn('intersect: nulls="drop" is deprecated, use nulls="skip" instead', FutureWarning,
                          stacklevel=2)
        return self._coordinator.intersect(parties, on, mode=mode, receiver=receiver, **options)

    def fit(self, estimator: Any, **options: Any) -> FitRun:
        """Train a scikit-learn estimator across the parties (see :func:`fedbench.learn.fit`)."""
        from .learn.api import fit as _fit

        return _fit(self, estimator, **options)

    def fit_vertical(self, estimator: Any, **options: Any) -> VerticalRun:
        """Train on columns split across parties after PSI alignment (see :func:`fedbench.learn.fit_vertical`)."""
        from .learn.vertical import fit_vertical as _fit_vertical

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
        if self._coordinator.secagg != "paillier":
            lines.append(f"  secure aggregation: {self._coordinator.secagg}")
        lines.append(f"  threat model: {self._coordinator.trust_text}")
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
        if self._coordinator.secagg != "paillier":
            info.append(("secure aggregation", escape(self._coordinator.secagg)))
        return render_card("Federation", info, table, threat_model=self._coordinator.trust_text)


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
