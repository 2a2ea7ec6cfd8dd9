"""What every stream convergence layer's sans-I/O session (TCPCLv3, TCPCLv4, MTCP, STCP) offers
its shell, and the events it gives back.

    session.send_bundle(bundle, now) -> transfer id   # queue one bundle for the peer
    session.receive_data(data, now)                   # bytes read from the stream; b"" = EOF
    session.handle_timer(now)                         # at session.next_deadline()
    session.close(reason, now)                        # start an orderly shutdown
    out = session.data_to_send()                      # bytes to write now (drained)
    pieces = session.pieces_to_send()                 # the same, large bundles not copied
    for event in session.events(): ...                # what happened (drained)
    session.closed                                    # nothing more will be sent or read

`now` is the shell's monotonic wall-clock time in seconds: keepalives and idle timeouts are
about the TCP connection, not mission time. A session never raises on what the peer sends: a
protocol violation ends it with `SessionClosed(reason)`, and `counters` says why.

Every layer holds its peer to one progress rule (`ProgressGuard`), since any byte resets the
keepalive's idle timer and so a trickle would keep a session open forever: while a message
(TCPCL: a whole bundle) is arriving, and while bundles we sent wait for acknowledgement, each
window of `progress_window(keepalive)` seconds must bring at least `MIN_PROGRESS_RATE` bytes a
second of it (or finish it); otherwise the session ends, counted as `receive_stalled` or
`acks_stalled`.
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

    def pieces_to_send(self) -> list[bytes | memoryview]: ...

    def events(self) -> list[SessionEvent]: ...

    @property
    def closed(self) -> bool: ...

    @property
    def established(self) -> bool: ...

    @property
    def queued_bytes(self) -> int:
        """Bundle bytes given to `send_bundle` and not yet acknowledged (the agent's pacing)."""
        ...


MIN_PROGRESS_RATE = 1024  # bytes/s a message under way, or its acknowledgement, must keep up
NO_KEEPALIVE_WINDOW = 30.0  # s: the window without a keepalive (twice the default keepalive)
RECEIVE_STALLED, ACKS_STALLED = "receive_stalled", "acks_stalled"  # counters of the two closes


def progress_window(keepalive: float) -> float:
    """Seconds a window of the progress rule lasts: twice our configured keepalive, as for
    silence (not the negotiated one: a peer must not switch the rule off by offering 0)."""
    return 2 * keepalive if keepalive > 0 else NO_KEEPALIVE_WINDOW


class ProgressGuard:
    """The progress rule for one direction. While `busy`, each `window` must bring
    `window × MIN_PROGRESS_RATE` bytes (`update`) or finish a unit (`restart`); `stalled(now)`
    says when it did not. Sans-I/O: `now` comes in, `deadline` goes out."""

    def __init__(self, counter: str, what: str, window: float) -> None:
        self.counter, self.what, self.window = counter, what, window
        self.min_bytes = int(window * MIN_PROGRESS_RATE)
        self._since: float | None = None  # the current window's start; None while not busy
        self._bytes = 0  # progress in the current window

    def update(self, busy: bool, progress: int, now: float) -> None:
        """`progress` bytes came (or were acknowledged); `busy`: something is still under way."""
        if not busy:
            self._since = None
            return
        if self._since is None:
            self._since, self._bytes = now, 0
        self._bytes += progress
        if self._bytes >= self.min_bytes:
            self._since, self._bytes = now, 0

    def restart(self, now: float) -> None:
        """A unit (a bundle received, a bundle acknowledged) is done: a fresh window."""
        if self._since is not None:
            self._since, self._bytes = now, 0

    @property
    def deadline(self) -> float | None:
        return None if self._since is None else self._since + self.window

    def stalled(self, now: float) -> str | None:
        """The close reason once the current window ran out short of progress, else None."""
        due = self.deadline
        if due is None or now < due:
            return None
        return (f"{self.what} stalled: {self._bytes} bytes in {self.window:g} s, "
                f"below {MIN_PROGRESS_RATE} bytes/s")


def first_stall(now: float, *guards: ProgressGuard) -> tuple[str, str] | None:
    """(counter, reason) of the first guard whose window ran out short, or None."""
    for guard in guards:
        reason = guard.stalled(now)
        if reason is not None:
            return guard.counter, reason
    return None


class OutboxReader:
    """`data_to_send` and `events` of a session that keeps its output in `self._out`."""

    _out: Outbox

    def data_to_send(self) -> bytes:
        return self._out.take_data()

    def pieces_to_send(self) -> list[bytes | memoryview]:
        return self._out.take_pieces()

    def events(self) -> list[SessionEvent]:
        return self._out.take_events()


# Output this large is queued as the piece it is, not copied into `Outbox.data`: a megabyte
# bundle copied on its way to the socket costs its page faults at each copy.
LARGE_PIECE = 64 << 10


@dataclass
class Outbox:
    """Bytes and events a session has made and the shell has not taken yet: `pieces`, then
    `data` (small output, appended in place)."""

    data: bytearray = field(default_factory=bytearray)
    pending: list[SessionEvent] = field(default_factory=list)
    pieces: list[bytes | memoryview] = field(default_factory=list)

    def write(self, piece: bytes | memoryview) -> None:
        """Queue output after everything queued: a large piece as it is, a small one copied."""
        if len(piece) < LARGE_PIECE:
            self.data += piece
            return
        if self.data:
            self.pieces.append(bytes(self.data))
            self.data.clear()
        self.pieces.append(piece)

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(piece) for piece in self.pieces)

    def take_pieces(self) -> list[bytes | memoryview]:
        out, self.pieces = self.pieces, []
        if self.data:
            out.append(bytes(self.data))
            self.data.clear()
        return out

    def take_data(self) -> bytes:
        return b"".join(self.take_pieces())

    def take_events(self) -> list[SessionEvent]:
        out, self.pending = self.pending, []
        return out
