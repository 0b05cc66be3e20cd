"""The coordinator interface: what protocols need from a federation.

Protocol layers (``learn/``, ``psi/``, ``dp/`` and the secure-aggregation
protocols) depend on this typed interface, never on :class:`~fedbench.federation.Federation`
or its private members.  It groups what every protocol run needs: the keys and
who holds them, the public encoding, the backend where party-local work runs,
the transcript and its channels, party selection and the secure-aggregation
entry point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .crypto.packing import DEFAULT_SUM_FRAC_BITS, DEFAULT_SUM_MAX_ABS, WIDE_FRAC_BITS, WIDE_MAX_ABS, Encoding
from .crypto.paillier import PaillierKeys, check_key_bits, generate_keys
from .crypto.threshold import ThresholdPaillierKeys
from .disclosure import ReleaseGuard
from .errors import ConfigurationError, UnknownPartyError
from .results import SecureSumResult
from .secagg import check_enough_parties, check_protocol_options, get_protocol, secure_aggregate
from .transcript import Channel, Transcript

if TYPE_CHECKING:
    import polars as pl

    from .backend import Backend
    from .dp import PrivacyBudget
    from .dp.releases import NoisePlan
    from .party import Party
    from .psi import PSIResult

__all__ = ["Coordinator", "FederationCoordinator", "FederationView", "LocalFn"]

#: A function that runs inside one party on its rows and returns named local aggregates.
LocalFn = Callable[["pl.DataFrame"], Mapping[str, Any]]


@runtime_checkable
class Coordinator(Protocol):
    """What a protocol run may use from the federation it runs in."""

    @property
    def keys(self) -> PaillierKeys | ThresholdPaillierKeys:
        """The Paillier keys (generated on first use: by the key holder, or dealt as threshold shares)."""
        ...

    @keys.setter
    def keys(self, keys: PaillierKeys | ThresholdPaillierKeys | None) -> None:
        """Install pre-generated keys (tests and the attack lab reuse one pair across throwaway federations)."""
        ...

    @property
    def key_bits(self) -> int:
        """Paillier modulus size in bits."""
        ...

    @property
    def secagg(self) -> str:
        """Name of the federation's default secure-aggregation protocol."""
        ...

    @property
    def secagg_options(self) -> Mapping[str, Any]:
        """Options of that protocol for every sum (e.g. masking's ``threshold``)."""
        ...

    @property
    def fast_encryption(self) -> bool:
        """Whether parties encrypt with the Damgard-Jurik-Nielsen fixed-base variant."""
        ...

    @property
    def sum_encoding(self) -> Encoding:
        """The tight public encoding of exact sums of a function (more values per ciphertext)."""
        ...

    @property
    def range_declared(self) -> bool:
        """Whether the federation was given ``max_abs`` or ``frac_bits`` (then it applies to every sum)."""
        ...

    @property
    def local_timeout(self) -> float | None:
        """Seconds a user function may run inside a party (``None``: no limit)."""
        ...

    @property
    def encoding(self) -> Encoding:
        """The wide public fixed-point encoding (statistics and learning)."""
        ...

    @property
    def backend(self) -> Backend:
        """Where party-local work and encryption run."""
        ...

    @property
    def transcript(self) -> Transcript:
        """Every message of every run, by role."""
        ...

    @property
    def audit(self) -> bool:
        """Whether the transcript keeps message payloads."""
        ...

    @property
    def budget(self) -> PrivacyBudget:
        """The per-party privacy ledger."""
        ...

    @property
    def history(self) -> list[Any]:
        """Releases made so far (results and privacy records, never party data)."""
        ...

    def select(self, parties: Sequence[str] | str | None) -> list[Party]:
        """Resolve party names (``None``: all) to parties, refusing unknown or repeated names."""
        ...

    def channel(self, protocol: str) -> Channel:
        """A new transcript channel for one run of ``protocol``."""
        ...

    def encoding_for(self, max_abs: float | None, frac_bits: int | None, base: Encoding | None = None) -> Encoding:
        """The encoding ``base`` (default: :attr:`encoding`) with the given range overrides."""
        ...

    def aggregate(self, parties: list[Party], local_fn: LocalFn, *, encoding: Encoding,
                  label: str = "secure_sum", plan: NoisePlan | None = None, description: str = "",
                  record_exact: bool = True, integer_encoding: Encoding | None = None,
                  protocol: str | None = None,
                  options: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], SecureSumResult]:
        """Securely sum ``local_fn`` over ``parties``; returns the released value and its result.

        ``label`` names the run in the transcript and ledger; ``protocol`` is
        the secure-aggregation protocol (default: the federation's ``secagg``).
        """
        ...


def _check_key_setup(keys: object, threshold: object) -> tuple[str, int | None]:
    """Validate ``keys`` (``"single"`` or ``"threshold"``) and ``threshold`` (``t >= 2``; ``t <= n`` at key set-up)."""
    if keys not in ("single", "threshold", "threshold-dealerless"):
        raise ConfigurationError(f"keys must be 'single', 'threshold' or 'threshold-dealerless', got {keys!r}")
    if keys == "single":
        if threshold is not None:
            raise ConfigurationError("threshold= needs keys='threshold' (a single key holder has no threshold)")
        return "single", None
    if threshold is None:
        raise ConfigurationError(f"keys={keys!r} needs threshold=t, the number of parties needed to decrypt")
    from .crypto.threshold import check_threshold

    # t > n is checked when the key is set up, once the parties are known.
    return str(keys), check_threshold(threshold, max(int(threshold) if isinstance(threshold, int) else 0, 2))


@runtime_checkable
class FederationView(Protocol):
    """What the learning entry points use from the object they are called on (a Federation).

    Typing only: ``learn/`` annotates with this protocol instead of importing
    :class:`~fedbench.Federation` (which imports ``learn`` to train).
    """

    @property
    def coordinator(self) -> Coordinator:
        """The federation's coordinator."""
        ...

    @property
    def party_names(self) -> list[str]:
        """Names of the parties, in the order they were added."""
        ...

    def __getitem__(self, name: str) -> Party:
        """The party called ``name``."""
        ...

    def intersect(self, on: str | Sequence[str], *, parties: Sequence[str] | None = None, mode: str = "cardinality",
                  receiver: str | None = None, **options: Any) -> PSIResult:
        """Private set intersection of the parties' identifiers."""
        ...


class FederationCoordinator:
    """The coordinator of a :class:`~fedbench.Federation`: keys, encodings, backend, transcript, aggregation.

    It holds everything a protocol run needs except the party registry, which
    stays with the federation and is shared here by reference (``parties``),
    so that both always see the same parties.

    Parameters
    ----------
    parties : dict of str to Party
        The federation's registry (shared, not copied).
    key_bits, allow_insecure_key_size, fast_encryption, frac_bits, max_abs, audit, ledger_path, keys, threshold
        As in :class:`~fedbench.Federation`.
    backend : Backend
        Where party-local work and encryption run.
    local_timeout : float or None
        Already validated time limit of user functions run inside a party.
    """

    def __init__(self, parties: dict[str, Party], *, key_bits: int, backend: Backend,
                 allow_insecure_key_size: bool = False, fast_encryption: bool = True, frac_bits: int | None = None,
                 max_abs: float | None = None, audit: bool = False, ledger_path: str | Path | None = None,
                 local_timeout: float | None = None, secagg: str = "paillier",
                 secagg_options: Mapping[str, Any] | None = None, keys: str = "single",
                 threshold: int | None = None) -> None:
        self.parties = parties
        self.secagg = get_protocol(secagg).name  # refuses an unknown name before anything is built
        # Options of the federation's protocol (e.g. masking's threshold), checked against it now.
        self.secagg_options = check_protocol_options(get_protocol(self.secagg), secagg_options)
        self.key_setup, self.threshold = _check_key_setup(keys, threshold)
        self.key_bits = check_key_bits(key_bits, allow_insecure_key_size=allow_insecure_key_size)
        self.allow_insecure_key_size = allow_insecure_key_size
        self.fast_encryption = bool(fast_encryption)
        self.local_timeout = local_timeout
        self.encoding = Encoding.for_range(WIDE_MAX_ABS if max_abs is None else max_abs,
                                           WIDE_FRAC_BITS if frac_bits is None else frac_bits)
        # secure_sum's public default range is much tighter (more values per ciphertext), unless set here.
        self.range_declared = max_abs is not None or frac_bits is not None
        self.sum_encoding = Encoding.for_range(DEFAULT_SUM_MAX_ABS if max_abs is None else max_abs,
                                               DEFAULT_SUM_FRAC_BITS if frac_bits is None else frac_bits)
        self.backend = backend
        self.transcript = Transcript(keep_payloads=audit)
        self.audit = audit
        self.history: list[Any] = []
        self.key_holders: set[str] = set()  # parties that received the current public key
        self.ledger_path = ledger_path
        self.release_guard = ReleaseGuard()  # the release policy and the shapes (never values) released so far
        self._keys: PaillierKeys | ThresholdPaillierKeys | None = None
        self._budget: PrivacyBudget | None = None

    # -- keys and budget ------------------------------------------------------------
    @property
    def keys(self) -> PaillierKeys | ThresholdPaillierKeys:
        """The Paillier keys, generated on first use.

        With ``keys="single"`` the key holder generates a key pair; with
        ``keys="threshold"`` a dealer generates the key and deals one share to
        each party present at that moment (recorded in the transcript as
        ``dealer -> party`` messages, protocol ``threshold_keygen``); with
        ``keys="threshold-dealerless"`` those parties generate it among
        themselves (:mod:`fedbench.crypto.dealerless`; each party's message
        ``key-setup`` to the aggregator publishes its verification key).
        """
        if self._keys is None:
            if self.key_setup.startswith("threshold"):
                self._keys = self._deal_threshold_keys()
            else:
                self._keys = generate_keys(self.key_bits, allow_insecure_key_size=self.allow_insecure_key_size)
        return self._keys

    @keys.setter
    def keys(self, keys: PaillierKeys | ThresholdPaillierKeys | None) -> None:
        # Tests reuse one key pair across federations; a new pair must reach every party again.
        self._keys = keys
        self.key_holders.clear()

    def _deal_threshold_keys(self) -> ThresholdPaillierKeys:
        from .crypto.threshold import check_threshold, deal_threshold_keys
        from .secagg.keyholders import record_key_setup

        holders = list(self.parties)
        assert self.threshold is not None
        check_threshold(self.threshold, len(holders))
        keys: ThresholdPaillierKeys
        if self.key_setup == "threshold-dealerless":
            from .crypto.dealerless import dealerless_threshold_keys

            keys = dealerless_threshold_keys(holders, self.threshold, self.key_bits,
                                             allow_insecure_key_size=self.allow_insecure_key_size)
        else:
            keys = deal_threshold_keys(holders, self.threshold, self.key_bits,
                                       allow_insecure_key_size=self.allow_insecure_key_size)
        record_key_setup(keys, self.channel("threshold_keygen"))
        self.key_holders.update(holders)  # every holder now has the public key
        return keys

    @property
    def trust_text(self) -> str:
        """The threat model of runs under this federation's key set-up (one line for result cards)."""
        return self.trust_text_for(self.secagg)

    def trust_text_for(self, protocol: str) -> str:
        """The threat model of a run of ``protocol`` under this federation's key set-up."""
        if protocol != "paillier":  # only the Paillier protocol uses the federation's (threshold) keys
            return get_protocol(protocol).trust_model.text
        if self.key_setup != "single":
            from .secagg.keyholders import threshold_trust_text

            if isinstance(self._keys, ThresholdPaillierKeys):
                return threshold_trust_text(self._keys)
            return (f"honest-but-curious parties and aggregator, threshold decryption by {self.threshold} parties "
                    "(key not dealt yet)")
        return get_protocol(protocol).trust_model.text

    @property
    def budget(self) -> PrivacyBudget:
        """The per-party privacy budgets and ledger (see :class:`fedbench.dp.PrivacyBudget`)."""
        from .dp.budget import federation_budget
        from .dp.ledger import party_identity

        def study() -> dict[str, str]:
            return {
                p.name: party_identity(p.name, p.source, p.schema if p.source.startswith("<") else None)
                for p in self.parties.values()
            }

        self._budget = federation_budget(self._budget, self.ledger_path, study, lambda: list(self.parties))
        return self._budget

    # -- parties and channels ------------------------------------------------------------
    def get(self, name: str) -> Party:
        """The party called ``name``; :class:`~fedbench.errors.UnknownPartyError` naming the known ones."""
        try:
            return self.parties[name]
        except KeyError:
            known = ", ".join(self.parties) or "none yet"
            raise UnknownPartyError(f"unknown party {name!r} (parties: {known})", party=name) from None

    def select(self, parties: Sequence[str] | str | None) -> list[Party]:
        """Resolve party names (``None``: all) to parties, refusing unknown or repeated names."""
        if parties is None:
            return list(self.parties.values())
        if isinstance(parties, str):
            parties = [parties]
        chosen = [self.get(p) for p in parties]
        if len({p.name for p in chosen}) != len(chosen):
            raise ConfigurationError(f"parties listed twice in {list(parties)}")
        return chosen

    def forget(self, name: str) -> None:
        """A party left: it no longer holds the public key (a party re-added later receives it again)."""
        self.key_holders.discard(name)

    def channel(self, protocol: str) -> Channel:
        """A new transcript channel for one run of ``protocol``."""
        return Channel(protocol, [self.transcript], keep_payloads=self.audit)

    def encoding_for(self, max_abs: float | None, frac_bits: int | None, base: Encoding | None = None) -> Encoding:
        """The encoding ``base`` (default: :attr:`encoding`) with the given range overrides."""
        base = self.encoding if base is None else base
        if max_abs is None and frac_bits is None:
            return base
        return Encoding.for_range(
            max_abs if max_abs is not None else base.max_abs,
            frac_bits if frac_bits is not None else base.frac_bits,
        )

    # -- secure aggregation -------------------------------------------------------------
    def aggregate(self, parties: list[Party], local_fn: LocalFn, *, encoding: Encoding,
                  label: str = "secure_sum", plan: NoisePlan | None = None, description: str = "",
                  record_exact: bool = True, integer_encoding: Encoding | None = None,
                  protocol: str | None = None,
                  options: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], SecureSumResult]:
        """Securely sum ``local_fn`` over ``parties``; returns the released value and its result.

        ``label`` names the run (transcript channel, ledger entry).
        ``protocol`` names the secure-aggregation protocol (default: the
        federation's ``secagg``); ``options`` are that protocol's options,
        on top of the federation's ``secagg_options`` when ``protocol`` is
        the federation's own.

        With a noise ``plan`` the release is differentially private: the
        request is checked against every party's budget before any data is
        read, and charged once every party has validated its data, before any
        message is released.  Without one, and with budgets in force, the
        exact release is logged in the ledger (flagged as not DP).

        Raises
        ------
        ConfigurationError
            Unknown protocol or option (checked before any party runs).
        TooFewPartiesError
            Fewer than two parties (checked before any key is generated).
        BudgetExceededError, BudgetNotSetError
            The DP release does not fit a party's budget.
        """
        check_enough_parties(parties, what="a secure computation")  # here too: no key for a refused request
        name = self.secagg if protocol is None else protocol
        impl = get_protocol(name)
        # Per-call options override the federation's own (which apply to its own protocol only).
        own = self.secagg_options if name == self.secagg else {}
        opts = check_protocol_options(impl, {**own, **(options or {})})
        names = [p.name for p in parties]
        shape = self.release_guard.before(local_fn, names, exact=plan is None)  # differencing: before any data
        threshold_keys = impl.needs_keys and self.key_setup != "single"
        if threshold_keys and plan is not None and plan.noise != "distributed":
            raise ConfigurationError(
                "central DP noise is added by a key holder after decryption, and keys='threshold' has none: "
                "use noise='distributed' (each party adds its share before encrypting)")
        keys = self.keys if impl.needs_keys else None  # masking and CKKS need no Paillier key
        if isinstance(keys, ThresholdPaillierKeys):
            from dataclasses import replace

            from .secagg.keyholders import check_decryptors

            # Share holders that left the federation cannot decrypt; refused before any data is read.
            keys = replace(keys, available=tuple(h for h in keys.holders if h in self.parties))
            check_decryptors(keys, names)
        party_noise = central_noise = before_release = None
        if plan is not None:
            # Refuse, before any data is read, a plan the integer samplers cannot carry.
            plan.check_grid(encoding.frac_bits, len(parties))
            budget = self.budget
            params = plan.record(len(parties), encoding.frac_bits)
            charged: list[bool] = []

            def charge() -> None:
                if not charged:  # atomic check-and-record in the ledger; raises BudgetExceededError
                    budget.charge(names, plan.event, mechanism=plan.mechanism, description=description or label,
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
        channel = self.release_guard.channel(self.channel(label), shape)
        recipients = [p.name for p in parties if p.name not in self.key_holders] if keys is not None else []
        out = secure_aggregate(parties, local_fn, keys=keys, backend=self.backend, channel=channel,
                               encoding=encoding, fast_encryption=self.fast_encryption, key_recipients=recipients,
                               party_noise=party_noise, central_noise=central_noise, before_release=before_release,
                               integer_encoding=integer_encoding, protocol=name, options=opts)
        self.key_holders.update(recipients)
        summed = names if out.survivors is None else list(out.survivors)
        # Small groups: checked before the analyst gets the release; the release is recorded over `summed`.
        self.release_guard.after(channel, shape, out.value, summed)
        result = SecureSumResult(
            value=out.value,
            parties=summed,
            name=description or label,
            key_bits=keys.key_bits if keys is not None else 0,
            ciphertexts=out.ciphertexts_per_party * len(summed),
            slots_per_ciphertext=out.layout.slots_per_ciphertext if out.layout is not None else 1,
            frac_bits=encoding.frac_bits,
            value_bits=encoding.value_bits,
            fast_encryption=out.fast_encryption,
            seconds=out.seconds,
            elapsed=time.perf_counter() - t0,
            transcript=channel.run,
            backend=self.backend.name,
            privacy=None if plan is None else plan.record(len(parties), encoding.frac_bits),
            protocol=impl.name, error_bound=out.error_bound, scheme=out.scheme,
            threat_model=self.trust_text_for(impl.name),
            dropped=dict(out.dropped),
            protocol_details=dict(out.details),
        )
        if plan is None and record_exact and self.budget.parties:  # also a ledger persisted by an earlier kernel
            # Budgets are in force: exact releases are logged too, flagged as not differentially private.
            self.budget.record_exact(summed, mechanism=label, description=description or label)
        return out.value, result

    # -- other protocols -------------------------------------------------------------------
    def intersect(self, parties: Sequence[str] | str | None, on: str | Sequence[str], *, mode: str = "cardinality",
                  receiver: str | None = None, **options: Any) -> PSIResult:
        """Private set intersection over the selected parties (see :func:`fedbench.psi.intersect`).

        The run gets its own transcript channel; with budgets in force its
        exact release is logged in the ledger.
        """
        from .psi import intersect as _intersect

        chosen = self.select(parties)
        if self.backend.name != "inprocess":
            # In-process, PSI keeps its own default: its worker pool on every core for
            # large sets, none for small ones (the backend's single worker would force 1).
            options.setdefault("workers", self.backend.workers)
        result = _intersect(chosen, on, mode=mode, receiver=receiver, channel=self.channel("psi"),
                            backend=self.backend, **options)
        if self.budget.parties:  # also a ledger persisted by an earlier kernel
            # PSI sizes (and in reveal/align modes, memberships) are exact releases: logged, never DP.
            keys = on if isinstance(on, str) else ", ".join(on)
            self.budget.record_exact([p.name for p in chosen], mechanism="psi", description=f"psi {mode} on {keys}")
        self.history.append(result)
        return result
