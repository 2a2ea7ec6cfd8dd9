"""TCPCLv3 (RFC 7242) as a sans-I/O stream session (see dtn.cla.session for the interface).

The rules this module follows, with the RFC 7242 section each comes from:

1. [§4.1] Both sides send a contact header as soon as the connection is up, whoever opened
   it: "dtn!", version 3, flags, keepalive interval (u16 seconds), SDNV EID length, EID.
   Our flags: 0x01 REQUEST_ACK when `request_acks`; 0x04 bundle refusal when `allow_refusal`
   (only together with 0x01, which §4.1 requires); 0x02 reactive fragmentation and 0x08
   LENGTH are never set.
2. [§4.2] A peer header without the magic ends the session. One with a version other than 3
   gets SHUTDOWN with reason 0x01 "version mismatch". The keepalive interval is the smaller
   of both (0: none); segments are acknowledged only when both set REQUEST_ACK. We refuse
   bundles only when the peer's header said it understands refusal (0x04).
3. [§5] Each message starts with one byte: type in the high four bits, flags in the low.
   DATA_SEGMENT 0x1 (S=0x2 start, E=0x1 end, SDNV length, payload), ACK_SEGMENT 0x2 (SDNV
   bytes of the current bundle received so far), REFUSE_BUNDLE 0x3 (reason in the flags),
   KEEPALIVE 0x4, SHUTDOWN 0x5 (0x02: a reason byte follows, 0x01: an SDNV reconnection delay
   follows), LENGTH 0x6 (SDNV). Any other type ends the session with SHUTDOWN.
4. [§5.2] A bundle is one start segment, any middle ones, one end segment (S|E: all in one).
   A segment without a start between bundles, or a start inside a bundle, ends the session.
5. [§5.3] With ACKs, the receiver answers every segment with the cumulative length of the
   bundle so far (ION waits for exactly that); the sender's transfer is done when an ACK
   covers its whole length. Without ACKs a transfer is done once its bytes are handed out.
6. [§5.4] The receiver may refuse the bundle it is receiving; the sender stops it and starts
   the next with a start segment. We refuse a bundle growing past `max_bundle_size`; a
   refusal from the peer ends its oldest unacknowledged transfer (BundleRefused).
7. [§5.6] KEEPALIVE goes out when nothing was sent for the interval; a peer silent for twice
   the interval is gone: SHUTDOWN (reason 0x00) and close "idle".
8. [§6.1] SHUTDOWN ends the session; we answer one with our own and keep its delay
   (SessionClosed.reconnect_after). [§6.2] With `idle_timeout`, a session without bundles
   in flight for that long is shut down (reason 0x00).
9. (ours) The progress rule of dtn.cla.session, windows of twice our keepalive: a contact
   header or a bundle under way (from its first byte to its end segment), and the oldest
   bundle waiting for ACK_SEGMENTs, must keep up MIN_PROGRESS_RATE; else SHUTDOWN and
   close "receive stalled" / "acknowledgement stalled", the unacknowledged bundles listed.

Hostile input: every SDNV is at most 10 bytes and below 2**64, the EID at most 1024 bytes,
a segment at most `max_bundle_size`; payload bytes stream into the bundle being reassembled,
so nothing but one message header (at most _HEADER_MAX bytes) is ever buffered. Violations
close the session with a reason counted in `counters`; nothing raises out of `receive_data`.
"""

from __future__ import annotations

from collections import Counter, deque

from dtn.cla.sdnv import SdnvError, decode_sdnv, encode_sdnv
from dtn.cla.session import (
    ACKS_STALLED,
    RECEIVE_STALLED,
    BundleAcked,
    BundleReceived,
    BundleRefused,
    Outbox,
    OutboxReader,
    ProgressGuard,
    SessionClosed,
    SessionUp,
    first_stall,
    progress_window,
)

MAGIC = b"dtn!"
VERSION = 3
FLAG_REQUEST_ACK, FLAG_REACTIVE_FRAGMENTATION, FLAG_REFUSAL, FLAG_LENGTH = 0x01, 0x02, 0x04, 0x08
DATA_SEGMENT, ACK_SEGMENT, REFUSE_BUNDLE, KEEPALIVE, SHUTDOWN, LENGTH = 1, 2, 3, 4, 5, 6
_NAMES = ("DATA_SEGMENT", "ACK_SEGMENT", "REFUSE_BUNDLE", "KEEPALIVE", "SHUTDOWN", "LENGTH")
MESSAGE_NAMES = dict(enumerate(_NAMES, start=1))  # type code (high 4 bits) -> name, §5.1
SEGMENT_START, SEGMENT_END = 0x02, 0x01
SHUTDOWN_HAS_REASON, SHUTDOWN_HAS_DELAY = 0x02, 0x01
SHUTDOWN_REASONS = {0x00: "idle timeout", 0x01: "version mismatch", 0x02: "busy"}
REFUSE_REASONS = {0: "unknown", 1: "already received", 2: "resources exhausted", 3: "retransmit"}
REFUSE_RESOURCES = 0x2
MAX_EID_LEN = 1024
_HEADER_MAX = 8 + 10 + MAX_EID_LEN  # the longest contact header; any message header is shorter
_VIEW_ABOVE = 64 << 10  # a received piece of a bundle this large is kept as a view, not copied

# --- Session states and what moves them; an event not listed for a state is an error ---
CONTACT_WAIT = "CONTACT_WAIT"  # our contact header is out, the peer's is not complete yet
ESTABLISHED = "ESTABLISHED"  # §4.2 done: messages of §5 flow both ways
CLOSED = "CLOSED"  # SHUTDOWN sent or received, EOF, timeout or violation

SESSION_TRANSITIONS: dict[tuple[str, str], str] = {
    (CONTACT_WAIT, "contact_header"): ESTABLISHED,  # §4.2: magic and version 3
    (CONTACT_WAIT, "close"): CLOSED,  # local close()
    (CONTACT_WAIT, "error"): CLOSED,  # §4.2 bad magic, version mismatch; EID too long
    (CONTACT_WAIT, "timeout"): CLOSED,  # no complete header within header_timeout, stalled
    (CONTACT_WAIT, "eof"): CLOSED,
    (ESTABLISHED, "DATA_SEGMENT"): ESTABLISHED,  # §5.2
    (ESTABLISHED, "ACK_SEGMENT"): ESTABLISHED,  # §5.3
    (ESTABLISHED, "REFUSE_BUNDLE"): ESTABLISHED,  # §5.4
    (ESTABLISHED, "LENGTH"): ESTABLISHED,  # §5.5 (accepted, not needed)
    (ESTABLISHED, "KEEPALIVE"): ESTABLISHED,  # §5.6
    (ESTABLISHED, "SHUTDOWN"): CLOSED,  # §6.1
    (ESTABLISHED, "close"): CLOSED,  # §6.1, we send SHUTDOWN
    (ESTABLISHED, "error"): CLOSED,  # unknown type, bad SDNV, segment order, sizes
    (ESTABLISHED, "timeout"): CLOSED,  # §5.6 keepalive, §6.2 idle, rule 9 stalled
    (ESTABLISHED, "eof"): CLOSED,
}

# --- The incoming bundle (§5.2, §5.4): which segment kinds may come next ---
RX_IDLE = "RX_IDLE"  # between bundles
RX_BUNDLE = "RX_BUNDLE"  # after a start segment, before the end one
RX_REFUSED = "RX_REFUSED"  # we refused the bundle; its remaining segments are skipped

RECEIVE_TRANSITIONS: dict[tuple[str, str], str] = {
    (RX_IDLE, "start"): RX_BUNDLE,
    (RX_IDLE, "start+end"): RX_IDLE,
    (RX_BUNDLE, "middle"): RX_BUNDLE,
    (RX_BUNDLE, "end"): RX_IDLE,
    (RX_BUNDLE, "refuse"): RX_REFUSED,  # §5.4, we sent REFUSE_BUNDLE
    (RX_REFUSED, "middle"): RX_REFUSED,  # segments the sender had already sent
    (RX_REFUSED, "end"): RX_IDLE,
    (RX_REFUSED, "start"): RX_BUNDLE,  # §5.4: the sender moved on to its next bundle
    (RX_REFUSED, "start+end"): RX_IDLE,
}

_CLOSE_REASON_CODES = {"idle": 0x00, "idle timeout": 0x00, "version mismatch": 0x01, "busy": 0x02}


def shutdown_message(reason_code: int | None = None, delay: int | None = None) -> bytes:
    """A SHUTDOWN (§6.1): one byte, then the reason byte and the SDNV delay when given."""
    flags = (SHUTDOWN_HAS_REASON if reason_code is not None else 0) | (
        SHUTDOWN_HAS_DELAY if delay is not None else 0
    )
    out = bytearray((SHUTDOWN << 4 | flags,))
    if reason_code is not None:
        out.append(reason_code)
    if delay is not None:
        out += encode_sdnv(delay)
    return bytes(out)


class _Violation(Exception):
    """The peer broke a rule: count `counter`, send `shutdown` (if any), close with `reason`."""

    def __init__(self, counter: str, reason: str, shutdown: bytes | None = None) -> None:
        super().__init__(reason)
        self.counter, self.reason, self.shutdown = counter, reason, shutdown


class Tcpcl3Session(OutboxReader):
    """One TCPCLv3 connection's protocol state; the shell does the socket and the clock."""

    def __init__(
        self,
        local_eid: str,
        *,
        active: bool,
        keepalive: int = 15,
        segment_size: int = 1 << 20,
        request_acks: bool = True,
        max_bundle_size: int = 64 << 20,
        idle_timeout: float | None = None,
        header_timeout: float = 30.0,
        allow_refusal: bool = True,
    ) -> None:
        eid = local_eid.encode("ascii")
        if len(eid) > MAX_EID_LEN or not 0 <= keepalive <= 0xFFFF or segment_size < 1:
            raise ValueError("EID over 1024 bytes, keepalive outside 0..65535 or segment_size < 1")
        self.local_eid, self.active = local_eid, active
        self.counters: Counter[str] = Counter()
        self.peer_eid: str | None = None
        self.peer_flags = 0
        self.keepalive = 0  # negotiated (§4.2)
        self.acks = False  # negotiated (§4.2)
        self._keepalive, self._segment_size, self._max = keepalive, segment_size, max_bundle_size
        self._idle_timeout, self._header_timeout = idle_timeout, header_timeout
        refusal = FLAG_REFUSAL if allow_refusal else 0
        self._flags = FLAG_REQUEST_ACK | refusal if request_acks else 0
        self._state, self._rx_state = CONTACT_WAIT, RX_IDLE
        self._out = Outbox()
        self._buf = bytearray()  # an incomplete message header, never more than _HEADER_MAX
        # The bundle being reassembled: the pieces received and their length, joined once at
        # its end (a growing bytearray copied each megabyte several times, then once more).
        self._rx: list[bytearray | memoryview] = []
        self._rx_len = 0
        self._seg_left = 0  # payload bytes of the current segment still to come
        self._seg_end = False
        self._discard = False  # the current bundle was refused
        self._next_id = 1
        self._pending: deque[tuple[int, memoryview]] = deque()  # waiting for the session
        self._inflight: deque[tuple[int, int]] = deque()  # (id, length) sent, waiting for ACK
        self._acked = 0  # bytes of the oldest in flight the peer acknowledged so far
        window = progress_window(keepalive)
        self._rx_guard = ProgressGuard(RECEIVE_STALLED, "receive", window)
        self._ack_guard = ProgressGuard(ACKS_STALLED, "acknowledgement", window)
        self._queued = 0
        self._t0: float | None = None  # the first `now` seen starts every clock
        self._last_tx = self._last_rx = self._last_bundle = 0.0
        self._out.data += MAGIC + bytes((VERSION, self._flags)) + keepalive.to_bytes(2, "big")
        self._out.data += encode_sdnv(len(eid)) + eid

    # --- the StreamSession interface ---

    @property
    def closed(self) -> bool:
        return self._state == CLOSED

    @property
    def established(self) -> bool:
        return self._state == ESTABLISHED

    @property
    def queued_bytes(self) -> int:
        return self._queued

    def send_bundle(self, bundle: bytes, now: float) -> int:
        """Queue `bundle`; it goes out in order once the session is up. Returns its id."""
        self._tick(now)
        tid, self._next_id = self._next_id, self._next_id + 1
        if self._state == CLOSED:
            self._out.pending.append(BundleRefused(tid, "session closed"))
            return tid
        self._queued += len(bundle)
        self._pending.append((tid, memoryview(bytes(bundle))))
        if self._state == ESTABLISHED:
            self._flush(now)
        return tid

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes read from the connection; b"" is EOF. Never raises on what they hold."""
        if self._state == CLOSED:
            return
        self._tick(now)
        try:
            if not data:
                self.counters["peer_closed"] += 1
                self._finish("eof", "peer closed")
                return
            self._last_rx = now
            self._feed(memoryview(data), now)
            receiving = bool(self._buf or self._seg_left) or self._rx_state != RX_IDLE
            self._rx_guard.update(receiving, len(data), now)
        except _Violation as v:
            self.counters[v.counter] += 1
            self._finish("error", v.reason, v.shutdown)
        except Exception:  # a bug here must not take the shell down; the counter shows it
            self.counters["internal_error"] += 1
            self._finish("error", "internal error")

    def handle_timer(self, now: float) -> None:
        """Stalls (rule 9), header timeout, keepalives (§5.6), idle shutdown (§6.2), when due."""
        if self._state == CLOSED:
            return
        self._tick(now)
        stall = first_stall(now, self._rx_guard, self._ack_guard)
        if stall is not None:
            self.counters[stall[0]] += 1
            self._finish("timeout", stall[1], shutdown_message())
            return
        if self._state == CONTACT_WAIT:
            if now >= (self._t0 or 0.0) + self._header_timeout:
                self.counters["header_timeout"] += 1
                self._finish("timeout", "header timeout")
            return
        if self.keepalive:
            if now >= self._last_rx + 2 * self.keepalive:
                self.counters["idle"] += 1
                self._finish("timeout", "idle", shutdown_message(0x00))
                return
            if now >= self._last_tx + self.keepalive:
                self._out.data.append(KEEPALIVE << 4)
                self._last_tx = now
                self.counters["keepalives_sent"] += 1
        idle_due = self._idle_deadline()
        if idle_due is not None and now >= idle_due:
            self.counters["idle_timeout"] += 1
            self._finish("timeout", "idle timeout", shutdown_message(0x00))

    def next_deadline(self) -> float | None:
        """When handle_timer wants calling; 0.0 before any `now` was seen (call it at once)."""
        if self._state == CLOSED:
            return None
        if self._t0 is None:
            return 0.0
        due = [t for t in (self._rx_guard.deadline, self._ack_guard.deadline) if t is not None]
        if self._state == CONTACT_WAIT:
            return min(due + [self._t0 + self._header_timeout])
        if self.keepalive:
            due += [self._last_tx + self.keepalive, self._last_rx + 2 * self.keepalive]
        idle_due = self._idle_deadline()
        if idle_due is not None:
            due.append(idle_due)
        return min(due) if due else None

    def close(self, reason: str, now: float, *, reconnect_after: int | None = None) -> None:
        """SHUTDOWN (reason code when `reason` names one, §6.1), then closed."""
        if self._state == CLOSED:
            return
        self._tick(now)
        code = _CLOSE_REASON_CODES.get(reason)
        self._finish("close", reason, shutdown_message(code, reconnect_after))

    # --- sending ---

    def _flush(self, now: float) -> None:
        """Every queued bundle into DATA_SEGMENTs of at most segment_size, in order (§5.2)."""
        out, step = self._out, self._segment_size
        while self._pending:
            tid, view = self._pending.popleft()
            n = len(view)
            for off in range(0, max(n, 1), step):
                chunk = view[off : off + step]
                flags = (SEGMENT_START if off == 0 else 0) | (SEGMENT_END if off + step >= n else 0)
                out.data.append(DATA_SEGMENT << 4 | flags)
                out.data += encode_sdnv(len(chunk))
                out.write(chunk)
            self._last_tx = self._last_bundle = now
            self.counters["bundles_sent"] += 1
            if self.acks:
                self._inflight.append((tid, n))
                self._ack_guard.update(True, 0, now)
            else:
                self._queued -= n
                self._out.pending.append(BundleAcked(tid))

    # --- receiving ---

    def _feed(self, data: memoryview, now: float) -> None:
        pos, n = 0, len(data)
        while pos < n and self._state != CLOSED:
            if self._seg_left:  # payload: straight into the bundle, one slice per call
                take = min(self._seg_left, n - pos)
                if not self._discard:
                    self._keep(data[pos : pos + take])
                pos += take
                self._seg_left -= take
                if not self._seg_left:
                    self._segment_done(now)
            elif self._buf:  # the rest of a header that began in an earlier call
                old = len(self._buf)
                self._buf += data[pos : pos + _HEADER_MAX]
                used = self._parse(self._buf, now)
                if not used:  # all of `data` went into the (still short) buffer
                    if len(self._buf) >= _HEADER_MAX:  # cannot happen: _parse decides by then
                        raise _Violation("header_too_long", "message header too long")
                    return
                pos += used - old
                self._buf.clear()
            else:
                used = self._parse(data[pos:], now)
                if not used:
                    self._buf += data[pos:]
                    return
                pos += used

    def _parse(self, buf: bytes | bytearray | memoryview, now: float) -> int:
        """Act on the message at the start of `buf`; bytes used, 0 when it is incomplete.
        Given _HEADER_MAX bytes it always decides (DATA_SEGMENT: only its header is used)."""
        if self._state == CONTACT_WAIT:
            return self._parse_contact(buf, now)
        kind, flags = buf[0] >> 4, buf[0] & 0x0F
        name = MESSAGE_NAMES.get(kind)
        if name is None:
            raise _Violation("unknown_type", f"unknown message type {kind}", shutdown_message())
        pos, value = 1, 0
        if kind in (DATA_SEGMENT, ACK_SEGMENT, LENGTH):
            got = self._sdnv(buf, 1)
            if got is None:
                return 0
            value, pos = got
        elif kind == SHUTDOWN:
            code = delay = None
            if flags & SHUTDOWN_HAS_REASON:
                if len(buf) < 2:
                    return 0
                code, pos = buf[1], 2
            if flags & SHUTDOWN_HAS_DELAY:
                got = self._sdnv(buf, pos)
                if got is None:
                    return 0
                delay, pos = got
            self.counters["peer_shutdown"] += 1
            said = "" if code is None else ": " + SHUTDOWN_REASONS.get(code, f"reason {code}")
            self._finish(name, "peer shutdown" + said, shutdown_message(), delay)
            return pos
        self._transition(name)
        if kind == DATA_SEGMENT:
            self._on_segment(flags, value, now)
        elif kind == ACK_SEGMENT:
            self._on_ack(value, now)
        elif kind == REFUSE_BUNDLE:
            self._on_refuse(flags, now)
        else:
            self.counters[name.lower() + "_received"] += 1
        return pos

    def _parse_contact(self, buf: bytes | bytearray | memoryview, now: float) -> int:
        if bytes(buf[:4]) != MAGIC[: len(buf)]:
            raise _Violation("bad_magic", "bad magic")
        if len(buf) > 4 and buf[4] != VERSION:
            raise _Violation("version_mismatch", "version mismatch", shutdown_message(0x01))
        if len(buf) < 9:
            return 0
        got = self._sdnv(buf, 8)
        if got is None:
            return 0
        size, pos = got
        if size > MAX_EID_LEN:
            raise _Violation("eid_too_long", f"EID of {size} bytes", shutdown_message())
        if len(buf) < pos + size:
            return 0
        self.peer_flags = buf[5]
        self.peer_eid = bytes(buf[pos : pos + size]).decode("ascii", "replace")
        self.keepalive = min(self._keepalive, int.from_bytes(buf[6:8], "big"))
        self.acks = bool(self._flags & self.peer_flags & FLAG_REQUEST_ACK)
        self._transition("contact_header")
        self._out.pending.append(SessionUp(self.peer_eid))
        self._last_bundle = now
        self._flush(now)
        return pos + size

    def _on_segment(self, flags: int, length: int, now: float) -> None:
        if length > self._max:
            raise _Violation("segment_too_long", f"segment of {length} bytes", shutdown_message())
        start, end = flags & SEGMENT_START, flags & SEGMENT_END
        kind = ("start+end" if end else "start") if start else ("end" if end else "middle")
        nxt = RECEIVE_TRANSITIONS.get((self._rx_state, kind))
        if nxt is None:
            raise _Violation(
                "bad_segment_order", f"{kind} segment in {self._rx_state}", shutdown_message()
            )
        if start:
            self._rx, self._rx_len, self._discard = [], 0, False
        if not self._discard and self._rx_len + length > self._max:
            self._refuse()
            if nxt == RX_BUNDLE:
                nxt = RECEIVE_TRANSITIONS[(RX_BUNDLE, "refuse")]
        self._rx_state, self._seg_left, self._seg_end = nxt, length, bool(end)
        if not length:
            self._segment_done(now)

    def _refuse(self) -> None:
        """The bundle outgrew max_bundle_size: REFUSE_BUNDLE if the peer knows it (§5.4)."""
        if not self.peer_flags & FLAG_REFUSAL:
            raise _Violation("bundle_too_large", "bundle too large", shutdown_message())
        self.counters["refused"] += 1
        self._rx, self._rx_len, self._discard = [], 0, True
        self._out.data.append(REFUSE_BUNDLE << 4 | REFUSE_RESOURCES)

    def _keep(self, piece: memoryview) -> None:
        """A piece of the bundle being reassembled: a large one as a view of what was read
        (bytes: they cannot change), small ones copied together (a peer sending a byte at a
        time must not cost a list item each)."""
        if len(piece) >= _VIEW_ABOVE and isinstance(piece.obj, bytes):
            self._rx.append(piece)
        elif self._rx and isinstance(self._rx[-1], bytearray):
            self._rx[-1] += piece
        else:
            self._rx.append(bytearray(piece))
        self._rx_len += len(piece)

    def _segment_done(self, now: float) -> None:
        self._last_bundle = now
        if self._discard:
            return
        if self.acks:  # §5.3: cumulative, after every segment
            self._out.data.append(ACK_SEGMENT << 4)
            self._out.data += encode_sdnv(self._rx_len)
            self._last_tx = now
        if self._seg_end:
            self._out.pending.append(BundleReceived(b"".join(self._rx)))
            self._rx, self._rx_len = [], 0
            self.counters["bundles_received"] += 1
            self._rx_guard.restart(now)

    def _on_ack(self, acked: int, now: float) -> None:
        if not self._inflight:
            self.counters["unexpected_ack"] += 1
            return
        tid, length = self._inflight[0]
        if acked > length:
            raise _Violation("bad_ack", f"ACK of {acked} for {length} bytes", shutdown_message())
        self._last_bundle = now
        progress, self._acked = max(0, acked - self._acked), max(acked, self._acked)
        if acked == length:
            self._inflight.popleft()
            self._queued -= length
            self._out.pending.append(BundleAcked(tid))
            self._next_in_flight(now)
        self._ack_guard.update(bool(self._inflight), progress, now)

    def _on_refuse(self, code: int, now: float) -> None:
        if not self._inflight:
            self.counters["unexpected_refuse"] += 1
            return
        tid, length = self._inflight.popleft()
        self._queued -= length
        self.counters["refused_by_peer"] += 1
        self._out.pending.append(BundleRefused(tid, REFUSE_REASONS.get(code, f"reason {code}")))
        self._next_in_flight(now)
        self._ack_guard.update(bool(self._inflight), 0, now)

    def _next_in_flight(self, now: float) -> None:
        """The oldest bundle in flight was settled: the next one's acknowledgements start."""
        self._acked = 0
        self._ack_guard.restart(now)

    # --- plumbing ---

    def _sdnv(self, buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
        try:
            return decode_sdnv(buf, pos)
        except SdnvError as exc:
            raise _Violation("bad_sdnv", str(exc), shutdown_message()) from None

    def _transition(self, event: str) -> None:
        nxt = SESSION_TRANSITIONS.get((self._state, event))
        if nxt is None:
            raise _Violation("bad_state", f"{event} in {self._state}", shutdown_message())
        self._state = nxt

    def _tick(self, now: float) -> None:
        if self._t0 is None:
            self._t0 = self._last_tx = self._last_rx = self._last_bundle = now

    def _idle_deadline(self) -> float | None:
        """§6.2 counts only while no bundle is in flight either way."""
        busy = self._inflight or self._pending or self._rx_state != RX_IDLE
        if self._idle_timeout is None or busy:
            return None
        return self._last_bundle + self._idle_timeout

    def _finish(
        self, event: str, reason: str, shutdown: bytes | None = None, delay: int | None = None
    ) -> None:
        if self._state == CLOSED:
            return
        if shutdown:
            self._out.data += shutdown
        self._state = SESSION_TRANSITIONS.get((self._state, event), CLOSED)
        unacked = tuple(t for t, _ in self._inflight) + tuple(t for t, _ in self._pending)
        after = None if delay is None else float(delay)
        self._out.pending.append(SessionClosed(reason, unacked, after))
        self._buf, self._rx, self._rx_len = bytearray(), [], 0
        self._seg_left = 0
