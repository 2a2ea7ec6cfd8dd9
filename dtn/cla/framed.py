"""MTCP and STCP: the two convergence layers that put bundles on a TCP stream with nothing but a
length in front of each, as sans-I/O sessions (the interface of dtn.cla.session).

    MTCP (µD3TN; draft-ietf-dtn-mtcpcl): each bundle is one CBOR byte string, so the length is
         a CBOR head of major type 2 (0x40-0x5b). No handshake, no keepalive, no acknowledgement.
    STCP (ION's stcpcli/stcpclo): each bundle follows a 4-byte big-endian length; a length of 0
         is a keepalive, which ION sends every 15 s while idle.

Rules both follow:
- A bundle counts as handed over once its bytes are given to the shell (`BundleAcked` then):
  neither layer acknowledges anything, so custody is what makes such a hop reliable.
- Every length is checked against `max_bundle_size` before a byte of the bundle is buffered;
  a head that is not a byte string, or a length above the bound, ends the session with a reason
  and a counter. Nothing the peer sends raises.
- Without a handshake the session is up at once; `peer_eid` is None (the config names the peer).
- A bundle under way (from the first byte of its head) keeps to the progress rule of
  dtn.cla.session, windows of twice `keepalive` (MTCP sends none, yet the neighbour's
  keepalive sets its window): else the session ends "receive stalled". There is nothing to
  acknowledge, so no rule for that.
"""

from __future__ import annotations

import struct
from collections import Counter

from dtn.bundle import cbor

from .session import (
    RECEIVE_STALLED,
    BundleAcked,
    BundleReceived,
    BundleRefused,
    Outbox,
    OutboxReader,
    ProgressGuard,
    SessionClosed,
    SessionUp,
    progress_window,
)

_STCP_LENGTH = struct.Struct(">I")
_STCP_KEEPALIVE = b"\x00\x00\x00\x00"
_MTCP_BYTES_MAJOR = 2
_MTCP_ARGUMENT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}  # CBOR additional info -> bytes


class _FramedSession(OutboxReader):
    """The common machinery: parse heads, collect bodies, emit events; subclasses say how a
    length is written and read."""

    keepalive_frame: bytes | None = None

    def __init__(self, *, max_bundle_size: int = 64 << 20, keepalive: float = 0.0) -> None:
        """`keepalive`: STCP's interval (0: none); for both, it sets the progress window."""
        self.counters: Counter[str] = Counter()
        self.max_bundle_size = max_bundle_size
        self.keepalive = keepalive if self.keepalive_frame is not None else 0.0
        self._rx_guard = ProgressGuard(RECEIVE_STALLED, "receive", progress_window(keepalive))
        self._out = Outbox()
        self._out.pending.append(SessionUp(None))
        self._buffer = bytearray()
        self._body: int | None = None  # length of the bundle being read, once its head is in
        self._next_id = 0
        self._closed = False
        self._last_sent: float | None = None

    # --- the interface -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def established(self) -> bool:
        return not self._closed

    @property
    def queued_bytes(self) -> int:
        return self._out.size

    def send_bundle(self, bundle: bytes, now: float) -> int:
        transfer = self._next_id
        self._next_id += 1
        if self._closed:
            self._out.pending.append(BundleRefused(transfer, "session closed"))
            return transfer
        self._out.data += self.frame_head(len(bundle))
        self._out.write(bundle)
        self._out.pending.append(BundleAcked(transfer))
        self._last_sent = now
        return transfer

    def receive_data(self, data: bytes, now: float) -> None:
        if self._closed:
            return
        if not data:
            self._end("peer closed", "peer_closed")
            return
        self._buffer += data
        self._read_frames(now)
        self._rx_guard.update(self._body is not None or bool(self._buffer), len(data), now)

    def _read_frames(self, now: float) -> None:
        while not self._closed:
            if self._body is None:
                parsed = self.parse_head(self._buffer)
                if parsed is None:
                    return
                length, head_size = parsed
                del self._buffer[:head_size]
                if length is None:  # a keepalive
                    self.counters["keepalives_received"] += 1
                    continue
                if length > self.max_bundle_size:
                    self._end(f"bundle of {length} bytes is above {self.max_bundle_size}",
                              "oversized")
                    return
                self._body = length
            if len(self._buffer) < self._body:
                return
            with memoryview(self._buffer) as buffer, buffer[: self._body] as body:
                bundle = bytes(body)  # one copy (a bytearray slice would be a second)
            del self._buffer[: self._body]
            self._body = None
            self.counters["bundles_received"] += 1
            self._out.pending.append(BundleReceived(bundle))
            self._rx_guard.restart(now)

    def handle_timer(self, now: float) -> None:
        if self._closed:
            return
        stalled = self._rx_guard.stalled(now)
        if stalled is not None:
            self._end(stalled, self._rx_guard.counter)
            return
        if not self.keepalive:
            return
        if self._last_sent is None or now - self._last_sent >= self.keepalive:
            self._out.data += self.keepalive_frame
            self._last_sent = now

    def next_deadline(self) -> float | None:
        if self._closed:
            return None
        due = [self._rx_guard.deadline]
        if self.keepalive and self._last_sent is not None:
            due.append(self._last_sent + self.keepalive)
        return min((t for t in due if t is not None), default=None)

    def close(self, reason: str, now: float) -> None:
        self._end(reason, "closed_locally")

    # --- what subclasses define ----------------------------------------------------------------

    def frame_head(self, length: int) -> bytes:
        raise NotImplementedError

    def parse_head(self, buffer: bytearray) -> tuple[int | None, int] | None:
        """(bundle length or None for a keepalive, head size), None while incomplete; ends the
        session (and returns None) on a head that cannot be one."""
        raise NotImplementedError

    def _end(self, reason: str, counter: str) -> None:
        if not self._closed:
            self._closed = True
            self.counters[counter] += 1
            self._out.pending.append(SessionClosed(reason))


class MtcpSession(_FramedSession):
    """µD3TN's MTCP: each bundle a CBOR byte string."""

    def frame_head(self, length: int) -> bytes:
        return cbor.head(_MTCP_BYTES_MAJOR, length)

    def parse_head(self, buffer: bytearray) -> tuple[int | None, int] | None:
        if not buffer:
            return None
        first = buffer[0]
        if first >> 5 != _MTCP_BYTES_MAJOR or (first & 0x1F) > 27:
            self._end(f"MTCP expects a CBOR byte string head, got 0x{first:02x}", "bad_head")
            return None
        extra = _MTCP_ARGUMENT_BYTES.get(first & 0x1F, 0)
        if len(buffer) < 1 + extra:
            return None
        # Any CBOR head is taken, shortest or not: the stream's framing, not a bundle's field.
        length = int.from_bytes(buffer[1 : 1 + extra], "big") if extra else first & 0x1F
        return length, 1 + extra


class StcpSession(_FramedSession):
    """ION's STCP: a 4-byte big-endian length before each bundle, 0 a keepalive."""

    keepalive_frame = _STCP_KEEPALIVE

    def __init__(self, *, max_bundle_size: int = 64 << 20, keepalive: float = 15.0) -> None:
        super().__init__(max_bundle_size=max_bundle_size, keepalive=keepalive)

    def frame_head(self, length: int) -> bytes:
        return _STCP_LENGTH.pack(length)

    def parse_head(self, buffer: bytearray) -> tuple[int | None, int] | None:
        if len(buffer) < 4:
            return None
        (length,) = _STCP_LENGTH.unpack_from(buffer)
        return (length or None), 4
