"""Transcripts: the record of every message a protocol run sends.

Protocols never hand objects from one role to another directly.  They go through
a :class:`Channel`, which takes the message *as bytes on the wire*, records who
sent what to whom, how large it was, whether it was encrypted and how long it
took to produce, and hands the receiver those same bytes.  Byte counts are
therefore real serialised sizes, and in audit mode (``keep_payloads=True``) the
exact bytes every role received are kept so that tests can prove that no raw
value of a party ever reached another role.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["ROLE_NAMES", "Channel", "Message", "Transcript"]

#: Names of the non-party roles; party names may not take them.
ROLE_NAMES = frozenset({"aggregator", "keyholder", "analyst", "coordinator", "dealer"})

_run_ids = itertools.count(1)


def new_run_id() -> int:
    """Return a process-wide unique identifier for one protocol run."""
    return next(_run_ids)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of one protocol run.

    Attributes
    ----------
    run_id : int
        Identifier of the protocol run the message belongs to.
    protocol : str
        Protocol name, e.g. ``"secure_sum"`` or ``"psi"``.
    sender, receiver : str
        Party names or role names (``"aggregator"``, ``"keyholder"``, ``"analyst"``).
    kind : str
        What the message carries, e.g. ``"ciphertexts"`` or ``"public-key"``.
    nbytes : int
        Size of the serialised message.
    encrypted : bool
        Whether the content is encrypted (or blinded) so that the receiver cannot read it.
    time : float
        Wall-clock time (``time.time()``) at which the message was sent.
    seconds : float
        Time the sender spent producing the message (encoding, encryption...).
    payload : bytes or None
        The exact bytes received, kept only when the transcript is in audit mode.
    """

    run_id: int
    protocol: str
    sender: str
    receiver: str
    kind: str
    nbytes: int
    encrypted: bool
    time: float
    seconds: float = 0.0
    payload: bytes | None = field(default=None, repr=False, compare=False)


class Transcript:
    """An append-only list of :class:`Message` with summaries.

    Parameters
    ----------
    messages : iterable of Message, optional
        Initial messages.
    keep_payloads : bool, default False
        Audit mode: keep the exact bytes of every message.
    """

    def __init__(self, messages: Iterable[Message] = (), *, keep_payloads: bool = False) -> None:
        self._messages: list[Message] = list(messages)
        self.keep_payloads = keep_payloads

    # -- container protocol -------------------------------------------------
    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index: int) -> Message:
        return self._messages[index]

    def append(self, message: Message) -> None:
        """Append one message (transcripts never drop or reorder messages)."""
        self._messages.append(message)

    def extend(self, messages: Iterable[Message]) -> None:
        """Append several messages."""
        self._messages.extend(messages)

    # -- queries ------------------------------------------------------------
    def filter(
        self,
        *,
        sender: str | None = None,
        receiver: str | None = None,
        kind: str | None = None,
        run_id: int | None = None,
        protocol: str | None = None,
    ) -> Transcript:
        """Return the messages matching every given field."""

        def keep(m: Message) -> bool:
            return (
                (sender is None or m.sender == sender)
                and (receiver is None or m.receiver == receiver)
                and (kind is None or m.kind == kind)
                and (run_id is None or m.run_id == run_id)
                and (protocol is None or m.protocol == protocol)
            )

        return Transcript(filter(keep, self._messages), keep_payloads=self.keep_payloads)

    @property
    def nbytes(self) -> int:
        """Total bytes of all messages."""
        return sum(m.nbytes for m in self._messages)

    def received_by(self, role: str) -> list[bytes]:
        """Payloads received by ``role`` (audit mode only).

        Raises
        ------
        RuntimeError
            If the transcript was not recorded in audit mode.
        """
        if not self.keep_payloads:
            raise RuntimeError("payloads are kept only in audit mode (Federation(audit=True))")
        return [m.payload for m in self._messages if m.receiver == role and m.payload is not None]

    def to_polars(self) -> pl.DataFrame:
        """One row per message (without payloads)."""
        import polars as pl

        cols = ["run_id", "protocol", "sender", "receiver", "kind", "nbytes", "encrypted", "time", "seconds"]
        schema: dict[str, Any] = {
            "run_id": pl.Int64,
            "protocol": pl.String,
            "sender": pl.String,
            "receiver": pl.String,
            "kind": pl.String,
            "nbytes": pl.Int64,
            "encrypted": pl.Boolean,
            "time": pl.Float64,
            "seconds": pl.Float64,
        }
        return pl.DataFrame(
            {c: [getattr(m, c) for m in self._messages] for c in cols}, schema=schema
        )

    def summary(self) -> pl.DataFrame:
        """Bytes and message counts per (sender, receiver, kind)."""
        import polars as pl

        df = self.to_polars()
        return (
            df.group_by(["sender", "receiver", "kind", "encrypted"], maintain_order=True)
            .agg(pl.len().alias("messages"), pl.col("nbytes").sum(), pl.col("seconds").sum())
        )

    # -- display ------------------------------------------------------------
    def __repr__(self) -> str:
        enc = sum(m.encrypted for m in self._messages)
        return (
            f"<Transcript: {_n(len(self), 'message')} ({enc} encrypted), "
            f"{_fmt_bytes(self.nbytes)}>"
        )

    #: Messages listed by the HTML repr before "N more" (the per-kind summary always covers all).
    HTML_ROWS = 10

    def show(self, all: bool = False) -> Any:
        """HTML of the transcript for a notebook; ``all=True`` lists every message, not only the first ones."""
        from IPython.display import HTML

        return HTML(self._html(None if all else self.HTML_ROWS))

    def _repr_html_(self) -> str:
        return self._html(self.HTML_ROWS)

    def _html(self, limit: int | None) -> str:
        shown = self._messages if limit is None else self._messages[:limit]
        rows = "".join(
            "<tr>"
            f"<td>{m.run_id}</td><td>{escape(m.protocol)}</td><td>{escape(m.sender)}</td>"
            f"<td>{escape(m.receiver)}</td><td>{escape(m.kind)}</td>"
            f"<td style='text-align:right'>{_fmt_bytes(m.nbytes)}</td>"
            f"<td>{'🔒' if m.encrypted else 'plain'}</td>"
            f"<td style='text-align:right'>{m.seconds * 1000:.1f} ms</td>"
            "</tr>"
            for m in shown
        )
        left = len(self) - len(shown)
        more = (
            f"<p>… {left} more messages: <code>.show(all=True)</code> lists them all, "
            "<code>.to_polars()</code> gives a DataFrame</p>"
            if left
            else ""
        )
        summary = ""
        if left:
            groups: dict[tuple[str, str, str, bool], list[int]] = {}
            for m in self._messages:
                g = groups.setdefault((m.sender, m.receiver, m.kind, m.encrypted), [0, 0])
                g[0] += 1
                g[1] += m.nbytes
            summary = (
                "<p><b>By sender, receiver and kind</b></p><table><thead><tr><th>from</th><th>to</th>"
                "<th>kind</th><th>content</th><th>messages</th><th>bytes</th></tr></thead><tbody>"
                + "".join(
                    f"<tr><td>{escape(s)}</td><td>{escape(r)}</td><td>{escape(k)}</td>"
                    f"<td>{'🔒' if e else 'plain'}</td><td style='text-align:right'>{n:,}</td>"
                    f"<td style='text-align:right'>{_fmt_bytes(b)}</td></tr>"
                    for (s, r, k, e), (n, b) in groups.items()
                )
                + f"</tbody></table><p><b>First {len(shown)} messages</b></p>"
            )
        return (
            f"<div><b>Transcript</b>: {_n(len(self), 'message')}, {_fmt_bytes(self.nbytes)}{summary}"
            "<table><thead><tr><th>run</th><th>protocol</th><th>from</th><th>to</th>"
            "<th>kind</th><th>bytes</th><th>content</th><th>time</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{more}</div>"
        )


class Channel:
    """Carries the messages of one protocol run and records them.

    Parameters
    ----------
    protocol : str
        Protocol name recorded on every message.
    transcripts : iterable of Transcript
        Transcripts to record into (typically the run's and the federation's).
    keep_payloads : bool, default False
        Keep the bytes of every message (audit mode).
    """

    def __init__(
        self, protocol: str, transcripts: Iterable[Transcript], *, keep_payloads: bool = False
    ) -> None:
        self.protocol = protocol
        self.run_id = new_run_id()
        self.transcripts = list(transcripts)
        self.keep_payloads = keep_payloads
        self.run = Transcript(keep_payloads=keep_payloads)

    def send(
        self,
        sender: str,
        receiver: str,
        kind: str,
        payload: bytes,
        *,
        encrypted: bool,
        seconds: float = 0.0,
    ) -> bytes:
        """Record one message and deliver its bytes to the receiver.

        Parameters
        ----------
        sender, receiver, kind : str
            See :class:`Message`.
        payload : bytes
            The serialised message; only bytes can cross a boundary.
        encrypted : bool
            Whether the receiver cannot read the content.
        seconds : float, default 0.0
            Time the sender spent producing it.

        Returns
        -------
        bytes
            What the receiver gets: the same bytes.
        """
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError("only bytes cross a party boundary; serialise the message first")
        payload = bytes(payload)
        msg = Message(
            run_id=self.run_id,
            protocol=self.protocol,
            sender=sender,
            receiver=receiver,
            kind=kind,
            nbytes=len(payload),
            encrypted=encrypted,
            time=time.time(),
            seconds=seconds,
            payload=payload if self.keep_payloads else None,
        )
        self.run.append(msg)
        for t in self.transcripts:
            t.append(msg)
        return payload

    def survivors_known(self, survivors: Sequence[str]) -> None:
        """Hook: the protocol now knows whose data the release will hold, before anything is revealed.

        A protocol that can lose parties during a run (masking) calls this once
        the set is fixed and before the aggregate can be computed (before the
        unmask round).  A plain channel does nothing; the release guard's
        channel checks the release policy for that set here, so a differencing
        pair created by a dropout can still be refused with nothing released.

        Parameters
        ----------
        survivors : sequence of str
            Names of the parties whose data the release will hold.
        """


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``1 run``, ``2 runs``: a count with its noun in the right number (thousands separated)."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns
