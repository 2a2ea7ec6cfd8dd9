"""What every stream convergence layer's sans-I/O session (TCPCLv3, TCPCLv4, MTCP, STCP) offers
its shell, and the events it gives back.

    session.send_bundle(bundle, now) -> transfer id   # queue one bundle for the peer
    session.receive_data(data, now)                   # bytes read from the stream; b"" = EOF
    session.handle_timer(now)                         # at session.next_deadline()
    session.close(reason, now)                        # start an orderly shutdown
    out = session.data_to_send()                      # bytes to write now (drained)
    for event in session.events(): ...                # what happened (drained)
    session.closed                                    # nothing more will be sent or read

`now` is the shell's monotonic wall-clock time in seconds: keepalives and idle timeouts are
about the TCP connection, not mission time. A session never raises on what the peer sends: a
protocol violation ends it with `SessionClosed(reason)`, and `counters` says why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SessionUp:
    """The session is established: bundles may flow. `peer_eid` is what the peer's contact
    header or SESS_INIT named (None for layers that name nobody)."""

    peer_eid: str | None


@dataclass(frozen=True, slots=True)
class BundleReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class BundleAcked:
    """The peer acknowledged every byte of this transfer: it has the bundle. Layers without
    acknowledgements (MTCP, STCP) report it once the bytes are handed to `data_to_send`."""

    transfer_id: int


@dataclass(frozen=True, slots=True)
class BundleRefused:
    transfer_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session is over. `unacked`: transfer ids never acknowledged nor refused, in the
    order they were sent (the shell hands them back to the agent). `reconnect_after`: seconds
    the peer asked us to wait before reconnecting (TCPCLv3 SHUTDOWN), None when it did not."""

    reason: str
    unacked: tuple[int, ...] = ()
    reconnect_after: float | None = None


SessionEvent = SessionUp | BundleReceived | BundleAcked | BundleRefused | SessionClosed


class StreamSession(Protocol):
    counters: Counter[str]

    def send_bundle(self, bundle: bytes, now: float) -> int: ...

    def receive_data(self, data: bytes, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def close(self, reason: str, now: float) -> None: ...

    def data_to_send(self) -> bytes: ...

    def events(self) -> list[SessionEvent]: ...

    @property
    def closed(self) -> bool: ...

    @property
    def established(self) -> bool: ...

    @property
    def queued_bytes(self) -> int:
        """Bundle bytes given to `send_bundle` and not yet acknowledged (the agent's pacing)."""
        ...


class OutboxReader:
    """`data_to_send` and `events` of a session that keeps its output in `self._out`."""

    _out: Outbox

    def data_to_send(self) -> bytes:
        return self._out.take_data()

    def events(self) -> list[SessionEvent]:
        return self._out.take_events()


@dataclass
class Outbox:
    """Bytes and events a session has made and the shell has not taken yet."""

    data: bytearray = field(default_factory=bytearray)
    pending: list[SessionEvent] = field(default_factory=list)

    def take_data(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out

    def take_events(self) -> list[SessionEvent]:
        out, self.pending = self.pending, []
        return out
