"""TCPCLv4 (RFC 9174) as a sans-I/O stream session: `Tcpcl4Session` (see dtn.cla.session).

Rules (section numbers are RFC 9174's):

1. The active entity sends its contact header (`dtn!`, version 4, flags) at once, the passive
   one answers the peer's (§4.2); it must come within `header_timeout` of the first call (or
   of `now=`). Bad magic closes without a word; another version gets SESS_TERM "version
   mismatch" (§4.3).
2. TLS when both headers carry CAN_TLS, the active entity as TLS client (§4.3-4.4). Having an
   `ssl_context` means TLS is required: a peer without CAN_TLS is a "contact failure". TLS
   runs in here over two `ssl.MemoryBIO`s: after the contact headers every byte both ways
   passes through the `SSLObject`, so TLS stays sans-I/O too.
3. The active entity sends SESS_INIT, the passive one answers it (§4.6). Keepalive = min of
   both (0 = none); segments respect the peer's segment MRU; a bundle above its transfer MRU
   is refused here ("too big for peer") (§4.7). An unknown critical session extension ends
   the session ("contact failure"); unknown non-critical ones are ignored (§4.8).
4. Transfers and keepalives only once SESS_INIT is in, SESS_INIT only before: anything out of
   place gets MSG_REJECT "unexpected"; an unknown type gets MSG_REJECT "unknown type" and
   ends the session, its length (so the framing) being unknown (§5.1.2).
5. Sending (§5.2): ids count up from 0, segments are at most min(peer MRU, ours), the first
   has START (and a Transfer Length extension when more follow), the last END. The XFER_ACK
   with END covering the length acknowledges it; XFER_REFUSE "completed" does too, any other
   reason refuses it.
6. Receiving: every segment gets an XFER_ACK (its flags, the cumulative length). A transfer
   above our transfer MRU (by its Transfer Length or by what came) is refused "no resources"
   (the sender should fragment), an unknown critical transfer extension "extension failure",
   a new one once a SESS_TERM has passed "session terminating"; a refused transfer's later
   segments are dropped. END delivers the bundle.
7. Keepalive (§5.1.1): KEEPALIVE after the interval without sending; idle after
   `idle_timeout` (default twice the interval) without receiving: SESS_TERM "idle timeout".
8. Ending (§6.1): `close()` sends SESS_TERM and waits at most `header_timeout` for the reply;
   a peer's SESS_TERM gets one with REPLY. Transfers under way may finish: closed once both
   SESS_TERMs passed and nothing is in flight, on the timeout, or on EOF. Transfers never
   acknowledged are listed in `SessionClosed.unacked`.
9. The progress rule of dtn.cla.session, windows of twice our keepalive: a message under way
   (the contact header, SESS_INIT, a transfer from its first byte to its END segment), and
   the transfers waiting for XFER_ACKs, must keep up MIN_PROGRESS_RATE; else SESS_TERM and
   close "receive stalled" / "acknowledgement stalled", the unacknowledged ones listed.
10. Hostile input never raises: a segment above our MRU, a node id above 1024 bytes, extension
   items above 64 KiB or malformed, a node id not UTF-8 end the session with a counted
   reason. What is buffered is at most one message (a segment and its header).
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from collections import Counter, deque
from enum import Enum

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
    SessionEvent,
    SessionUp,
    first_stall,
    progress_window,
)

MAGIC, VERSION, CAN_TLS = b"dtn!", 4, 0x01  # contact header (§4.2)
MAX_NODE_ID, MAX_EXTENSIONS = 1024, 64 * 1024  # our bounds on what a peer may send
# message types (§5), flags: XFER_SEGMENT's, SESS_TERM's, an extension item's; extension types
XFER_SEGMENT, XFER_ACK, XFER_REFUSE, KEEPALIVE, SESS_TERM, MSG_REJECT, SESS_INIT = range(1, 8)
SEG_END, SEG_START, TERM_REPLY, EXT_CRITICAL = 0x01, 0x02, 0x01, 0x01
EXT_TRANSFER_LENGTH = 0x0001  # §5.2.5.1
# SESS_TERM reasons (§5.1.1 / §6.1)
TERM_UNKNOWN, TERM_IDLE, TERM_VERSION, TERM_BUSY, TERM_CONTACT, TERM_RESOURCES = range(6)
# XFER_REFUSE reasons (§5.2.4)
REFUSE_UNKNOWN, REFUSE_COMPLETED, REFUSE_NO_RESOURCES, REFUSE_RETRANSMIT = range(4)
REFUSE_NOT_ACCEPTABLE, REFUSE_EXTENSION, REFUSE_TERMINATING = range(4, 7)
# MSG_REJECT reasons (§5.1.2)
REJECT_UNKNOWN_TYPE, REJECT_UNSUPPORTED, REJECT_UNEXPECTED = range(1, 4)

TERM_NAMES = ("unknown", "idle timeout", "version mismatch", "busy", "contact failure",
              "resource exhaustion")
REFUSE_NAMES = ("unknown", "completed", "no resources", "retransmit", "not acceptable",
                "extension failure", "session terminating")


class State(Enum):
    CONTACT = "contact"  # waiting for the peer's contact header
    TLS = "tls"  # TLS handshake under way
    INIT = "init"  # waiting for the peer's SESS_INIT
    ESTABLISHED = "established"
    ENDING = "ending"  # a SESS_TERM sent or received; transfers under way may finish
    CLOSED = "closed"


class Ev(Enum):
    HEADER = "contact header, no TLS"  # §4.2-4.3
    HEADER_TLS = "contact header, both CAN_TLS"  # §4.3
    TLS_DONE = "TLS handshake done"  # §4.4
    SESS_INIT = "SESS_INIT received"  # §4.6
    MESSAGE = "XFER_*, KEEPALIVE, MSG_REJECT received"  # §5
    SESS_TERM = "SESS_TERM received"  # §6.1
    CLOSE = "close() called"  # §6.1
    DRAINED = "both SESS_TERMs passed, nothing in flight"  # §6.1
    FAIL = "violation, EOF, idle, timeout, TLS failure"  # §6.2


_LIVE = (State.CONTACT, State.TLS, State.INIT, State.ESTABLISHED, State.ENDING)
TRANSITIONS: dict[tuple[State, Ev], State] = {
    (State.CONTACT, Ev.HEADER): State.INIT,
    (State.CONTACT, Ev.HEADER_TLS): State.TLS,
    (State.CONTACT, Ev.CLOSE): State.CLOSED,
    (State.TLS, Ev.TLS_DONE): State.INIT,
    (State.TLS, Ev.CLOSE): State.CLOSED,
    (State.INIT, Ev.SESS_INIT): State.ESTABLISHED,
    (State.INIT, Ev.SESS_TERM): State.ENDING,
    (State.INIT, Ev.CLOSE): State.ENDING,
    (State.ESTABLISHED, Ev.MESSAGE): State.ESTABLISHED,
    (State.ESTABLISHED, Ev.SESS_TERM): State.ENDING,
    (State.ESTABLISHED, Ev.CLOSE): State.ENDING,
    (State.ENDING, Ev.MESSAGE): State.ENDING,
    (State.ENDING, Ev.SESS_TERM): State.ENDING,
    (State.ENDING, Ev.CLOSE): State.ENDING,
    (State.ENDING, Ev.DRAINED): State.CLOSED,
    **{(state, Ev.FAIL): State.CLOSED for state in _LIVE},
}

_I, _Q, _BQ, _BBQ = (struct.Struct(f) for f in ("!I", "!Q", "!BQ", "!BBQ"))
_ACK = struct.Struct("!BBQQ")
_H, _INIT, _INIT_HEAD = struct.Struct("!H"), struct.Struct("!BHQQH"), struct.Struct("!xHQQ")
# fixed-size messages (§5): their layout after the type byte, and who handles them on which event
_FIXED = {XFER_ACK: _ACK, XFER_REFUSE: struct.Struct("!xBQ"), KEEPALIVE: struct.Struct("!x"),
          SESS_TERM: struct.Struct("!xBB"), MSG_REJECT: struct.Struct("!xBB")}
_HANDLERS = {XFER_ACK: ("_on_ack", Ev.MESSAGE), XFER_REFUSE: ("_on_refuse", Ev.MESSAGE),
             KEEPALIVE: ("_on_keepalive", Ev.MESSAGE), SESS_TERM: ("_on_term", Ev.SESS_TERM),
             MSG_REJECT: ("_on_reject", None)}
_EXT = struct.Struct("!BHH")


class _Violation(Exception):
    """The peer broke the protocol: end the session (with SESS_TERM `term` when not None)."""

    def __init__(self, key: str, reason: str, term: int | None = TERM_UNKNOWN) -> None:
        super().__init__(reason)
        self.key, self.reason, self.term = key, reason, term


def _sized(mv: memoryview, p: int, end: int, field: struct.Struct, limit: int, key: str,
           term: int = TERM_UNKNOWN) -> int:
    """The length in `field` at `p` (above `limit` is a violation as soon as it is here), or -1
    while it or the bytes it counts are not all here."""
    if end - p < field.size:
        return -1
    (n,) = field.unpack_from(mv, p)
    if n > limit:
        raise _Violation(key, f"{key}: {n} bytes", term)
    return n if end - p - field.size >= n else -1


def _items(view: memoryview) -> list[tuple[int, int, memoryview]]:
    """Extension items (§4.8, §5.2.5): (flags, type, value); malformed is a violation."""
    out, off = [], 0
    while off < len(view):
        if len(view) - off < 5:
            raise _Violation("bad extension", "truncated extension item")
        flags, kind, length = _EXT.unpack_from(view, off)
        if off + 5 + length > len(view):
            raise _Violation("bad extension", "extension item overruns its list")
        out.append((flags, kind, view[off + 5 : off + 5 + length]))
        off += 5 + length
    return out


class Tcpcl4Session(OutboxReader):
    """One TCPCLv4 session's protocol state; see the module docstring for its rules."""

    def __init__(self, local_node_id: str, *, active: bool, keepalive: int = 15,
                 segment_mru: int = 1 << 20, transfer_mru: int = 64 << 20,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 idle_timeout: float | None = None, header_timeout: float = 30.0,
                 now: float | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self._node_id = local_node_id.encode()
        if len(self._node_id) > MAX_NODE_ID:
            raise ValueError("node id longer than 1024 bytes")
        if active and ssl_context is not None and ssl_context.check_hostname \
                and not server_hostname:
            raise ValueError("an SSLContext that checks host names needs server_hostname")
        self._active, self._ssl_context = active, ssl_context
        self._server_hostname = server_hostname
        self._keepalive = max(0, min(int(keepalive), 0xFFFF))
        self._segment_mru, self._transfer_mru = segment_mru, transfer_mru
        self._idle_timeout, self._header_timeout = idle_timeout, header_timeout
        self._state = State.CONTACT
        self._out = Outbox()
        self._raw = bytearray()  # before the contact header
        self._buf = bytearray()  # plaintext messages, at most one partial message
        self._tls: ssl.SSLObject | None = None
        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        # Where the peer's TLS records end: one trickled in is a message under way (rule 9),
        # before any of its plaintext reaches `_buf`.
        self._record_head = bytearray()  # the start of a record header (5 bytes)
        self._record_left = 0  # bytes of the current record still to come
        self._now = self._started = now
        self._last_sent = self._last_recv = now or 0.0
        self._deadline_end: float | None = None
        self._ka = 0  # negotiated keepalive
        self._peer_seg_mru = self._peer_xfer_mru = 0
        self._peer_eid: str | None = None
        self._next_tid = 0
        self._waiting: deque[tuple[int, bytes]] = deque()  # before the session is up
        self._inflight: dict[int, int] = {}  # sent, not acknowledged: id -> length
        self._acked: dict[int, int] = {}  # of those, id -> bytes the peer acknowledged so far
        window = progress_window(self._keepalive)
        self._rx_guard = ProgressGuard(RECEIVE_STALLED, "receive", window)
        self._ack_guard = ProgressGuard(ACKS_STALLED, "acknowledgement", window)
        self._queued_bytes = 0
        self._rx_tid: int | None = None  # the transfer being received
        self._rx = bytearray()
        self._rx_refused: int | None = None
        self._term_sent = self._term_received = self._header_seen = False
        self._close_reason = ""
        if active:
            self._send_header()

    # -- the StreamSession interface --------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def established(self) -> bool:
        return self._state is State.ESTABLISHED

    @property
    def state(self) -> State:
        return self._state

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def keepalive(self) -> int:
        """The negotiated keepalive interval (0 before the session is up, or when off)."""
        return self._ka

    def send_bundle(self, bundle: bytes, now: float) -> int:
        self._tick(now)
        tid, self._next_tid = self._next_tid, self._next_tid + 1
        if self._state in (State.ENDING, State.CLOSED):
            self._out.pending.append(BundleRefused(tid, "session closing"))
        elif self._state is State.ESTABLISHED:
            self._queued_bytes += len(bundle)
            self._transmit(tid, bytes(bundle))
        else:
            self._queued_bytes += len(bundle)
            self._waiting.append((tid, bytes(bundle)))
        return tid

    def receive_data(self, data: bytes, now: float) -> None:
        self._tick(now)
        if self._state is State.CLOSED:
            return
        try:
            if not data:
                self._on_eof()
                return
            self._last_recv, size = now, len(data)
            if self._state is State.CONTACT:
                self._raw += data
                data = b""
                if self._read_header():
                    data, self._raw = bytes(self._raw), bytearray()
            if self._tls is not None:
                self._tls_in.write(data)
                self._track_records(data)
                self._pump_tls()
            elif data and self._state is not State.CLOSED:
                self._process(data)
            receiving = bool(self._raw or self._buf or self._record_head or self._record_left)
            receiving = receiving or self._rx_tid is not None
            self._rx_guard.update(receiving, size, now)
            self._maybe_drained()
        except _Violation as v:
            self._fail(v.key, v.reason, v.term)
        except Exception as exc:  # a bug must not kill the shell: end this session, loudly
            self._fail("internal error", f"internal error: {exc!r}", TERM_UNKNOWN)

    def next_deadline(self) -> float | None:
        """When handle_timer wants calling; 0.0 before any `now` was seen (call it at once:
        the header timeout runs from then, also for a peer that never sends a byte)."""
        if self._state is State.CLOSED:
            return None
        if self._started is None:
            return 0.0
        guards = (self._rx_guard.deadline, self._ack_guard.deadline)
        times = [t for t in guards if t is not None]
        if self._state in (State.CONTACT, State.TLS, State.INIT):
            return min(times + [self._started + self._header_timeout])
        times += [t for t in (self._deadline_end, self._idle_at()) if t is not None]
        if self._ka:
            times.append(self._last_sent + self._ka)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self._tick(now)
        if self._state is State.CLOSED:
            return
        stall = first_stall(now, self._rx_guard, self._ack_guard)
        if stall is not None:
            self._fail(*stall, TERM_UNKNOWN)
            return
        if self._state in (State.CONTACT, State.TLS, State.INIT):
            if now >= self._started + self._header_timeout:
                what = {State.CONTACT: "contact header", State.TLS: "TLS handshake"}
                self._fail("timeout", f"timeout waiting for {what.get(self._state, 'SESS_INIT')}",
                           None if self._state is not State.INIT else TERM_UNKNOWN)
            return
        if self._deadline_end is not None and now >= self._deadline_end:
            self._fail("timeout", self._close_reason or "timeout waiting for SESS_TERM", None)
            return
        idle_at = self._idle_at()
        if idle_at is not None and now >= idle_at:
            self._fail("idle", "idle: nothing received", TERM_IDLE)
            return
        if self._ka and now >= self._last_sent + self._ka:
            self.counters["keepalives sent"] += 1
            self._send(bytes((KEEPALIVE,)))

    def close(self, reason: str, now: float) -> None:
        self._tick(now)
        if self._state in (State.CONTACT, State.TLS):
            self._transition(Ev.CLOSE)
            self._closed_event(reason)
        elif self._state in (State.INIT, State.ESTABLISHED):
            self._close_reason = reason
            self._begin_ending(now)
            self._send(bytes((SESS_TERM, 0, TERM_UNKNOWN)))
            self._term_sent = True
            self._maybe_drained()

    # -- contact header and TLS -------------------------------------------------------------

    def _send_header(self) -> None:
        self._out.data += MAGIC + bytes((VERSION, CAN_TLS if self._ssl_context else 0))

    def _read_header(self) -> bool:
        raw = self._raw
        if raw[:4] != MAGIC[: len(raw)]:
            raise _Violation("bad magic", "bad contact header magic", None)
        if len(raw) < 6:
            return False
        version, flags = raw[4], raw[5]
        del raw[:6]
        self._header_seen = True
        if not self._active:
            self._send_header()
        if version != VERSION:
            raise _Violation("version mismatch", f"peer speaks TCPCL version {version}",
                             TERM_VERSION)
        if self._ssl_context is not None and not flags & CAN_TLS:
            raise _Violation("tls required", "contact failure: peer does not offer TLS",
                             TERM_CONTACT)
        if self._ssl_context is not None:
            self._transition(Ev.HEADER_TLS)
            self._tls = self._ssl_context.wrap_bio(
                self._tls_in, self._tls_out, server_side=not self._active,
                server_hostname=self._server_hostname if self._active else None)
            self._pump_tls()
        else:
            self._transition(Ev.HEADER)
            if self._active:
                self._send_init()
        return True

    def _pump_tls(self) -> None:
        tls = self._tls
        assert tls is not None
        try:
            if self._state is State.TLS:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    return
                finally:
                    self._flush_tls()
                self.counters["tls sessions"] += 1
                self._transition(Ev.TLS_DONE)
                if self._active:
                    self._send_init()
            while self._state is not State.CLOSED:
                try:
                    chunk = tls.read(1 << 16)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    self._on_eof()
                    break
                self._process(chunk)
            self._flush_tls()
        except ssl.SSLZeroReturnError:
            self._on_eof()
        except ssl.SSLCertVerificationError as exc:
            self._flush_tls()
            raise _Violation("tls failed", f"TLS: certificate verify failed: "
                             f"{exc.verify_message}", None) from exc
        except ssl.SSLError as exc:
            self._flush_tls()
            raise _Violation("tls failed", f"TLS: {exc.reason or exc}", None) from exc

    def _track_records(self, data: bytes) -> None:
        """Follow the TLS record framing (RFC 8446 5.1: type, version, u16 length) of `data`."""
        pos = 0
        while pos < len(data):
            if self._record_left:
                take = min(self._record_left, len(data) - pos)
                self._record_left -= take
                pos += take
                continue
            need = 5 - len(self._record_head)
            self._record_head += data[pos : pos + need]
            pos += need
            if len(self._record_head) == 5:
                self._record_left = int.from_bytes(self._record_head[3:5], "big")
                self._record_head.clear()

    def _flush_tls(self) -> None:
        out = self._tls_out.read()
        if out:
            self._out.data += out

    def _send(self, data: bytes | memoryview) -> None:
        if self._tls is not None:
            self._tls.write(data)
            self._flush_tls()
        else:
            self._out.write(data)
        self._last_sent = self._now or 0.0

    # -- messages in ------------------------------------------------------------------------

    def _process(self, data: bytes) -> None:
        """Handle every whole message in what is buffered plus `data`; keep the rest."""
        if self._buf:
            self._buf += data
            source: bytes | bytearray = self._buf
        else:
            source = data
        mv = memoryview(source)
        off, end = 0, len(mv)
        try:
            while off < end and self._state is not State.CLOSED:
                used = self._message(mv, off, end)
                if not used:
                    break
                off += used
        except BaseException:
            self._buf = bytearray()  # a new buffer: views held by the traceback stay valid
            raise
        if self._state is State.CLOSED:
            self._buf = bytearray()
        elif source is self._buf:
            mv.release()
            del self._buf[:off]
        else:
            self._buf = bytearray(mv[off:])

    def _message(self, mv: memoryview, off: int, end: int) -> int:
        """Handle the message at `off`; its length, or 0 when it is not all here yet."""
        kind, avail = mv[off], end - off
        if kind == XFER_SEGMENT:
            if avail < 10:
                return 0
            flags, tid = _BQ.unpack_from(mv, off + 1)
            p, exts = off + 10, mv[:0]
            if flags & SEG_START:
                if (n := _sized(mv, p, end, _I, MAX_EXTENSIONS, "extensions too long")) < 0:
                    return 0
                exts, p = mv[p + 4 : p + 4 + n], p + 4 + n
            n = _sized(mv, p, end, _Q, self._segment_mru, "segment too big", TERM_RESOURCES)
            if n < 0:
                return 0
            if self._check(Ev.MESSAGE, kind):
                self._on_segment(flags, tid, exts, mv[p + 8 : p + 8 + n])
            return p + 8 + n - off
        if kind == SESS_INIT:
            p = off + 19
            if (n := _sized(mv, p, end, _H, MAX_NODE_ID, "node id too long", TERM_CONTACT)) < 0:
                return 0
            node, p = mv[p + 2 : p + 2 + n], p + 2 + n
            n = _sized(mv, p, end, _I, MAX_EXTENSIONS, "extensions too long", TERM_CONTACT)
            if n < 0:
                return 0
            if self._check(Ev.SESS_INIT, kind):
                self._on_init(*_INIT_HEAD.unpack_from(mv, off), node, mv[p + 4 : p + 4 + n])
            return p + 4 + n - off
        fixed = _FIXED.get(kind)
        if fixed is None:
            self._send(bytes((MSG_REJECT, REJECT_UNKNOWN_TYPE, kind)))
            raise _Violation("unknown message type", f"unknown message type 0x{kind:02x}")
        if avail < fixed.size:
            return 0
        name, event = _HANDLERS[kind]
        if event is None or self._check(event, kind):
            getattr(self, name)(*fixed.unpack_from(mv, off))
        return fixed.size

    def _check(self, event: Ev, kind: int) -> bool:
        """Take `event` if the table allows it here; else MSG_REJECT "unexpected"."""
        if (self._state, event) in TRANSITIONS:
            if event is Ev.MESSAGE:
                self._transition(event)
            return True
        self.counters["unexpected message"] += 1
        self._send(bytes((MSG_REJECT, REJECT_UNEXPECTED, kind)))
        return False

    def _on_init(self, ka: int, seg_mru: int, xfer_mru: int, node: memoryview,
                 exts: memoryview) -> None:
        for flags, kind, _ in _items(exts):
            if flags & EXT_CRITICAL:
                raise _Violation("unknown critical session extension",
                                 f"contact failure: unknown critical session extension {kind}",
                                 TERM_CONTACT)
            self.counters["session extensions ignored"] += 1
        try:
            self._peer_eid = bytes(node).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Violation("bad node id", "node id is not UTF-8", TERM_CONTACT) from exc
        if seg_mru == 0:
            raise _Violation("bad session init", "peer segment MRU is 0", TERM_CONTACT)
        if not self._active:
            self._send_init()
        self._ka = min(self._keepalive, ka)
        self._peer_seg_mru, self._peer_xfer_mru = seg_mru, xfer_mru
        self._transition(Ev.SESS_INIT)
        self._out.pending.append(SessionUp(self._peer_eid))
        while self._waiting:
            self._transmit(*self._waiting.popleft())

    def _send_init(self) -> None:
        self._send(_INIT.pack(SESS_INIT, self._keepalive, self._segment_mru, self._transfer_mru,
                              len(self._node_id)) + self._node_id + _I.pack(0))

    def _on_segment(self, flags: int, tid: int, exts: memoryview, data: memoryview) -> None:
        self.counters["segments received"] += 1
        if flags & SEG_START:
            if self._rx_tid is not None:
                self.counters["transfers abandoned by peer"] += 1
            self._rx_tid, self._rx = tid, bytearray()
            refuse = REFUSE_TERMINATING if self._state is State.ENDING else None
            for eflags, kind, value in _items(exts):
                if kind == EXT_TRANSFER_LENGTH and len(value) == 8:
                    if _Q.unpack(value)[0] > self._transfer_mru:
                        refuse = REFUSE_NO_RESOURCES
                elif eflags & EXT_CRITICAL:
                    refuse = REFUSE_EXTENSION
            if refuse is not None:
                return self._refuse(tid, refuse)
        elif tid != self._rx_tid:
            self.counters["segments dropped" if tid == self._rx_refused
                          else "segments of unknown transfer"] += 1
            return None
        if len(self._rx) + len(data) > self._transfer_mru:
            return self._refuse(tid, REFUSE_NO_RESOURCES)
        self._rx += data
        self._send(_ACK.pack(XFER_ACK, flags, tid, len(self._rx)))
        if flags & SEG_END:
            bundle, self._rx, self._rx_tid = bytes(self._rx), bytearray(), None
            self.counters["bundles received"] += 1
            self._rx_guard.restart(self._now or 0.0)
            self._out.pending.append(BundleReceived(bundle))
        return None

    def _refuse(self, tid: int, reason: int) -> None:
        self.counters[f"refused: {REFUSE_NAMES[reason]}"] += 1
        self._rx_tid, self._rx, self._rx_refused = None, bytearray(), tid
        self._send(bytes((XFER_REFUSE, reason)) + _Q.pack(tid))

    def _on_keepalive(self) -> None:
        self.counters["keepalives received"] += 1

    def _on_reject(self, reason: int, kind: int) -> None:
        self.counters[f"peer rejected message 0x{kind:02x} (reason {reason})"] += 1

    def _on_ack(self, _: int, flags: int, tid: int, length: int) -> None:
        total = self._inflight.get(tid)
        if total is None:
            self.counters["acks of unknown transfer"] += 1
            return
        before = self._acked.get(tid, 0)
        self._acked[tid] = max(before, min(length, total))
        if flags & SEG_END and length >= total:
            self._settle(tid, BundleAcked(tid))
        self._ack_guard.update(bool(self._inflight), self._acked.get(tid, total) - before,
                               self._now or 0.0)

    def _on_refuse(self, reason: int, tid: int) -> None:
        if tid not in self._inflight:
            self.counters["refusals of unknown transfer"] += 1
            return
        name = REFUSE_NAMES[reason] if reason < len(REFUSE_NAMES) else f"reason {reason}"
        self._settle(tid, BundleAcked(tid) if reason == REFUSE_COMPLETED
                     else BundleRefused(tid, f"peer refused: {name}"))
        self._ack_guard.update(bool(self._inflight), 0, self._now or 0.0)

    def _settle(self, tid: int, event: SessionEvent) -> None:
        self._queued_bytes -= self._inflight.pop(tid)
        self._acked.pop(tid, None)
        self._ack_guard.restart(self._now or 0.0)
        self.counters["bundles acked" if isinstance(event, BundleAcked) else "bundles refused"] += 1
        self._out.pending.append(event)

    def _on_term(self, flags: int, reason: int) -> None:
        name = TERM_NAMES[reason] if reason < len(TERM_NAMES) else f"reason {reason}"
        self.counters[f"peer SESS_TERM: {name}"] += 1
        if not self._term_sent:
            self._send(bytes((SESS_TERM, TERM_REPLY, reason)))
            self._term_sent = True
            self._close_reason = f"peer ended the session: {name}"
        self._term_received = True
        self._begin_ending(self._now or 0.0)

    # -- messages out -----------------------------------------------------------------------

    def _transmit(self, tid: int, bundle: bytes) -> None:
        if len(bundle) > self._peer_xfer_mru:
            self._queued_bytes -= len(bundle)
            self.counters["bundles too big for peer"] += 1
            self._out.pending.append(BundleRefused(tid, "too big for peer"))
            return
        self._inflight[tid] = len(bundle)
        self._ack_guard.update(True, 0, self._now or 0.0)
        seg = max(1, min(self._peer_seg_mru, self._segment_mru))
        view, total = memoryview(bundle), len(bundle)
        for off in range(0, total or 1, seg):
            n = min(seg, total - off)
            flags = (SEG_START if off == 0 else 0) | (SEG_END if off + n == total else 0)
            head = _BBQ.pack(XFER_SEGMENT, flags, tid)
            if off == 0:
                ext = (b"" if flags & SEG_END else
                       _EXT.pack(0, EXT_TRANSFER_LENGTH, 8) + _Q.pack(total))
                head += _I.pack(len(ext)) + ext
            self._send(head + _Q.pack(n))
            self._send(view[off : off + n])
            self.counters["segments sent"] += 1
        self.counters["bundles sent"] += 1

    # -- ending -----------------------------------------------------------------------------

    def _begin_ending(self, now: float) -> None:
        self._transition(Ev.SESS_TERM if self._term_received else Ev.CLOSE)
        if self._deadline_end is None:
            self._deadline_end = now + self._header_timeout

    def _maybe_drained(self) -> None:
        if (self._state is State.ENDING and self._term_sent and self._term_received
                and not self._inflight and self._rx_tid is None):
            self._transition(Ev.DRAINED)
            self._closed_event(self._close_reason)

    def _on_eof(self) -> None:
        if self._state is State.ENDING and self._term_received:
            self._fail("eof after SESS_TERM", self._close_reason, None)
        else:
            self._fail("eof", "EOF: the peer closed the connection", None)

    def _fail(self, key: str, reason: str, term: int | None) -> None:
        if self._state is State.CLOSED:
            return
        self.counters[key] += 1
        if term is not None and self._header_seen and self._state is not State.TLS \
                and not self._term_sent:
            with contextlib.suppress(ssl.SSLError):
                self._send(bytes((SESS_TERM, 0, term)))
        self._transition(Ev.FAIL)
        self._closed_event(reason)

    def _closed_event(self, reason: str) -> None:
        unacked = (*self._inflight, *(tid for tid, _ in self._waiting))
        self._inflight.clear()
        self._acked.clear()
        self._waiting.clear()
        self._queued_bytes = 0
        self._out.pending.append(SessionClosed(reason, unacked))

    def _transition(self, event: Ev) -> None:
        self._state = TRANSITIONS[(self._state, event)]

    def _tick(self, now: float) -> None:
        self._now = now
        if self._started is None:
            self._started = self._last_sent = self._last_recv = now

    def _idle_at(self) -> float | None:
        idle = self._idle_timeout if self._idle_timeout is not None else 2 * self._ka
        return self._last_recv + idle if idle else None
