"""The LTP engine (RFC 5326), sans-I/O: bytes and `now` in, datagrams, events and a deadline out.

Three things drive an `LtpEngine`: the API (`send_block`, `contact_up`, `contact_down`),
`receive_datagram(datagram, now)`, and `handle_timer(now)` at `next_deadline()`. What it has to
send is read with `datagrams_to_send(now)`, what happened with `events()`. It never reads a
clock, sleeps or touches a socket; every time is mission seconds passed in.

Rules (everything that changes a session's state is here and in the tables below):

- Sending (§6.1-6.8). A fresh red block is cut into data segments of at most `segment_size`
  bytes of data; only the last is a checkpoint (EORP, EOB), as ION 4.1.3 does (its captures
  show one checkpoint per fresh block). A checkpoint's retransmission timer runs from the moment
  the segment is handed out by `datagrams_to_send`, for 2 x owlt + margin (§6.2); on expiry
  the same checkpoint (same serial numbers, as ION resends it) goes again, and after
  `max_retransmissions` the session is cancelled with RLEXC (§6.7).
- On a report (§6.13) the sender always answers with a report-acknowledgement (§6.14), merges
  its claims with the earlier ones (ION does: claims are cumulative), and retransmits exactly
  the byte ranges inside the report's bounds that no claim covers, as new data segments whose
  last is a checkpoint citing the report serial. When the merged claims cover the whole red
  part the block is delivered (BlockDelivered) and the session closes. A report that claims
  nothing new for a checkpoint already answered retransmits nothing: the first answer has its
  own checkpoint timer. More than `max_retransmissions` reports without progress cancel the
  session with RXMTCYCEXC (§6.7: a receiver that never fills a gap must not keep us busy).
- Receiving (§6.10-6.12). Red data is kept as byte ranges; a block larger than
  `max_block_size`, or more buffered red bytes than `max_buffered_bytes` in all, cancels the
  session (SYS_CNCLD), and a span with `max_sessions` open import sessions refuses new ones
  (a checkpoint of a refused session is answered with a stateless cancel). Each checkpoint is
  answered with a report: its lower bound is the lower bound of the report the checkpoint
  cites, or 0 (ION, libltpP.c sendReport: RFC 5326 §6.11 would start a primary report at the
  previous primary report's upper bound; ION sends one checkpoint per fresh block, so the two
  agree except for a retransmitted checkpoint, where ION's 0 is what makes the answer useful);
  the upper bound is the checkpoint's end, or the cited report's upper bound if higher. Claims
  are the received ranges within the bounds, at most `max_claims_per_report` per segment; more
  make several report segments chained by their bounds, as ION does. Once the red part is
  complete every report is ION's final report: bounds [0, red length), one claim. A report
  goes again on its timer (2 x owlt + margin) until a report-acknowledgement stops it;
  `max_retransmissions` unanswered resends cancel the session (RLEXC), or just close it if
  the block was already delivered. A red part complete without a checkpoint (the checkpoint
  came before a retransmitted segment) gets an asynchronous final report, checkpoint serial 0,
  as ION sends. BlockReceived is emitted once per session; a delivered session is remembered
  (`closed_session_memory` per span) and a checkpoint for it is answered with the final
  report again, never delivered twice. Green data is handed up as it comes (GreenReceived).
- Cancelling (§6.15-6.21). A cancel segment is resent on its timer until acknowledged or
  `max_retransmissions` is exceeded. A received cancel is always acknowledged, even for a
  session we do not know (its ack may have been lost).
- Contacts (§6.2, and ION's behaviour). While a span's contact is down nothing is sent to it
  and its timers are suspended; `contact_up` shifts every deadline by the time it was down.
- Hostile input never raises: malformed datagrams, segments of unknown engines or sessions,
  reports beyond the block and floods of new sessions are dropped or cancelled and counted in
  `counters`.

Sender (export) session states; `_EXPORT` below is the table the code moves by:

    state       event                                   action                      next
    PENDING     a session slot frees (max_sessions)     queue data + checkpoint     OPEN
    OPEN        report: claims cover the red part       RA; BlockDelivered          CLOSED
    OPEN        report with gaps                        RA; gaps + checkpoint       OPEN
    OPEN        checkpoint timer, count <= limit        resend checkpoint           OPEN
    OPEN        checkpoint timer, count > limit         CS(RLEXC); BlockCancelled   CANCELLING
    OPEN        reports without progress > limit       CS(RXMTCYCEXC); Cancelled   CANCELLING
    OPEN        CR from the receiver                    CAR; BlockCancelled(peer)   CLOSED
    CANCELLING  CS timer, count <= limit                resend CS                   CANCELLING
    CANCELLING  CAS, or CS timer count > limit          -                           CLOSED
    (green)     all green segments queued               -                           CLOSED

Receiver (import) session states; `_IMPORT` below:

    state       event                                   action                      next
    -           first red segment, slot free            store                       OPEN
    OPEN        red data                                store new ranges            OPEN
    OPEN        checkpoint                              report(s) + timers          OPEN
    OPEN        red part complete                       BlockReceived; final report DELIVERED
    OPEN        report timer, count > limit             CR(RLEXC); BlockCancelled   CANCELLING
    OPEN        block or buffer limit exceeded          CR(SYS_CNCLD); Cancelled    CANCELLING
    OPEN        CS from the sender                      CAS; BlockCancelled(peer)   CLOSED
    DELIVERED   checkpoint                              final report again          DELIVERED
    DELIVERED   last report acked, or its limit         remember the session        CLOSED
    DELIVERED   CS from the sender                      CAS                         CLOSED
    CANCELLING  CR timer, count <= limit                resend CR                   CANCELLING
    CANCELLING  CAR, or CR timer count > limit          -                           CLOSED
    CLOSED      checkpoint (delivered session)          final report                DELIVERED
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from dtn.ltp.segment import (
    GREEN_DATA,
    GREEN_EOB,
    REASON_NAMES,
    RED_CHECKPOINT,
    RED_CHECKPOINT_EORP_EOB,
    RED_DATA,
    RLEXC,
    RXMTCYCEXC,
    SYS_CNCLD,
    TYPE_NAMES,
    CancelAckSegment,
    CancelSegment,
    DataSegment,
    LtpError,
    ReportAckSegment,
    ReportSegment,
    Segment,
    decode_segment,
)

PENDING, OPEN, CANCELLING, DELIVERED, CLOSED = (
    "PENDING", "OPEN", "CANCELLING", "DELIVERED", "CLOSED")
_EXPORT = {PENDING: {OPEN}, OPEN: {OPEN, CANCELLING, CLOSED}, CANCELLING: {CLOSED}}
_IMPORT = {OPEN: {OPEN, DELIVERED, CANCELLING, CLOSED}, DELIVERED: {DELIVERED, CLOSED},
           CANCELLING: {CLOSED}, CLOSED: {DELIVERED}}


@dataclass(frozen=True)
class SpanConfig:
    """One remote engine: one-way light time (s), data bytes per segment, session cap."""

    owlt: float
    segment_size: int = 1024
    max_sessions: int = 256
    checkpoint_timeout_margin: float = 1.0
    max_retransmissions: int = 10
    client_service: int = 1


@dataclass(frozen=True)
class LtpConfig:
    """Engine-wide bounds on what peers can make us hold."""

    max_block_size: int = 64 << 20
    max_buffered_bytes: int = 256 << 20
    max_claims_per_report: int = 100
    closed_session_memory: int = 4096


@dataclass(frozen=True)
class BlockReceived:
    remote_engine: int
    session: int
    data: bytes


@dataclass(frozen=True)
class GreenReceived:
    remote_engine: int
    session: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class BlockDelivered:
    remote_engine: int
    session: int


@dataclass(frozen=True)
class BlockCancelled:
    remote_engine: int
    session: int
    reason: int
    by_peer: bool


Event = BlockReceived | GreenReceived | BlockDelivered | BlockCancelled


class _Ranges:
    """Disjoint, sorted half-open byte ranges; touching ranges merge."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, a: int, b: int) -> list[tuple[int, int]]:
        """Add [a, b); return the parts of it that were not yet covered."""
        i = bisect_left(self.ends, a)
        j = bisect_right(self.starts, b)
        new, cursor = [], a
        for k in range(i, j):
            if self.starts[k] > cursor:
                new.append((cursor, min(self.starts[k], b)))
            cursor = max(cursor, self.ends[k])
        if cursor < b:
            new.append((cursor, b))
        if i < j:
            a, b = min(a, self.starts[i]), max(b, self.ends[j - 1])
        self.starts[i:j] = [a]
        self.ends[i:j] = [b]
        return new

    def within(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The covered ranges clipped to [lo, hi)."""
        i = bisect_right(self.ends, lo)
        out = []
        for s, e in zip(self.starts[i:], self.ends[i:], strict=True):
            if s >= hi:
                break
            out.append((max(s, lo), min(e, hi)))
        return out

    def gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The uncovered ranges within [lo, hi)."""
        out, cursor = [], lo
        for s, e in self.within(lo, hi):
            if s > cursor:
                out.append((cursor, s))
            cursor = e
        if cursor < hi:
            out.append((cursor, hi))
        return out

    def covers(self, n: int) -> bool:
        return len(self.starts) == 1 and self.starts[0] == 0 and self.ends[0] >= n

    @property
    def total(self) -> int:
        return sum(self.ends) - sum(self.starts)


class _Timer:
    """A retransmission timer of one span; armed when its segment leaves, never while down."""

    def __init__(self, span: _Span, fire: Callable[[float], None]) -> None:
        self.span = span
        self.fire = fire
        self.deadline: float | None = None
        self.count = 0
        span.timers.add(self)

    def stop(self) -> None:
        self.deadline = None
        self.span.timers.discard(self)


@dataclass
class _Span:
    remote: int
    config: SpanConfig
    queue: deque[tuple[bytes, _Timer | None]] = field(default_factory=deque)
    timers: set[_Timer] = field(default_factory=set)
    down_since: float | None = None
    exports: dict[int, _Export] = field(default_factory=dict)
    pending: deque[_Export] = field(default_factory=deque)
    imports: dict[int, _Import] = field(default_factory=dict)
    closed_imports: OrderedDict[int, int] = field(default_factory=OrderedDict)
    cancels: dict[tuple[bool, int], _Timer] = field(default_factory=dict)

    @property
    def timeout(self) -> float:
        return 2 * self.config.owlt + self.config.checkpoint_timeout_margin


@dataclass
class _Export:
    span: _Span
    session: int
    data: bytes
    red: bool
    state: str = PENDING
    claims: _Ranges = field(default_factory=_Ranges)
    next_checkpoint: int = 1
    checkpoints: dict[int, _Timer] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)
    reports_seen: set[int] = field(default_factory=set)
    no_progress: int = 0


@dataclass
class _Report:
    segment: ReportSegment
    timer: _Timer


@dataclass
class _Import:
    span: _Span
    session: int
    state: str = OPEN
    ranges: _Ranges = field(default_factory=_Ranges)
    chunks: dict[int, bytes] = field(default_factory=dict)
    red_length: int | None = None
    next_report: int = 1
    reports: dict[int, _Report] = field(default_factory=dict)
    bounds: OrderedDict[int, tuple[int, int]] = field(default_factory=OrderedDict)


_MAX_OPEN_REPORTS = 64  # unacknowledged reports per import session; older ones stop


def _move(table: dict[str, set[str]], session: _Export | _Import, new: str) -> None:
    if new not in table.get(session.state, ()):
        raise AssertionError(f"LTP session {session.session}: {session.state} -> {new}")
    session.state = new


class LtpEngine:
    """An LTP engine: block sender and receiver towards the remote engines of its spans."""

    def __init__(self, local_engine_id: int, config: LtpConfig | None = None) -> None:
        self.local = local_engine_id
        self.config = config or LtpConfig()
        self.counters: Counter[str] = Counter()
        self._spans: dict[int, _Span] = {}
        self._events: list[Event] = []
        self._next_session = 1
        self._session_span: dict[int, _Span] = {}  # our export sessions, to route reports
        self._closed_exports: OrderedDict[int, int] = OrderedDict()  # session -> remote
        self._buffered = 0

    # --- API ---------------------------------------------------------------------------------

    def add_span(self, remote_engine: int, config: SpanConfig) -> None:
        """Serve `remote_engine`; its contact starts up."""
        self._spans[remote_engine] = _Span(remote_engine, config)

    def send_block(self, remote_engine: int, data: bytes, now: float, red: bool = True) -> int:
        """Start a session carrying `data` (all red, or all green); its session number."""
        span = self._spans[remote_engine]
        if not data:
            raise ValueError("an LTP block holds at least one byte")
        session = self._next_session
        self._next_session = self._next_session % ((1 << 32) - 1) + 1
        export = _Export(span, session, bytes(data), red)
        self._session_span[session] = span
        span.pending.append(export)
        self._start_pending(span)
        return session

    def events(self) -> list[Event]:
        """What happened since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    def contact_down(self, remote: int, now: float) -> None:
        """Hold everything for `remote` and suspend its timers (§6.2)."""
        span = self._spans[remote]
        if span.down_since is None:
            span.down_since = now

    def contact_up(self, remote: int, now: float) -> None:
        """Resume `remote`'s timers, each shifted by the time the contact was down."""
        span = self._spans[remote]
        if span.down_since is None:
            return
        pause, span.down_since = now - span.down_since, None
        for timer in span.timers:
            if timer.deadline is not None:
                timer.deadline += pause

    def datagrams_to_send(self, now: float, max_bytes: float = math.inf
                          ) -> list[tuple[int, bytes]]:
        """(remote engine, one segment) to send now, up to about `max_bytes` (at least one);
        retransmission timers start here, so a paced shell takes only what it can send at once."""
        out = []
        for span in self._spans.values():
            if span.down_since is not None:
                continue
            while span.queue and max_bytes > 0:
                wire, timer = span.queue.popleft()
                max_bytes -= len(wire)
                if timer is not None and timer in span.timers:
                    timer.deadline = now + span.timeout
                self.counters[f"segments_out.{TYPE_NAMES[wire[0] & 0x0F]}"] += 1
                out.append((span.remote, wire))
        return out

    @property
    def has_output(self) -> bool:
        """Whether segments wait for `datagrams_to_send` (to spans whose contact is up)."""
        return any(span.queue and span.down_since is None for span in self._spans.values())

    @property
    def queued_bytes(self) -> int:
        """Segment bytes not yet handed out, and the data of blocks waiting for a session."""
        return sum(sum(len(wire) for wire, _ in span.queue)
                   + sum(len(export.data) for export in span.pending)
                   for span in self._spans.values())

    def next_deadline(self) -> float | None:
        """When `handle_timer` is next due, or None (no timer runs, or all are suspended)."""
        deadlines = [t.deadline for span in self._spans.values() if span.down_since is None
                     for t in span.timers if t.deadline is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due by `now` (resends go out through `datagrams_to_send`)."""
        for span in self._spans.values():
            if span.down_since is not None:
                continue
            due = [t for t in span.timers if t.deadline is not None and t.deadline <= now]
            for timer in sorted(due, key=lambda t: t.deadline or 0.0):
                if timer in span.timers and timer.deadline is not None:
                    timer.deadline = None
                    timer.count += 1
                    timer.fire(now)

    def receive_datagram(self, datagram: bytes, now: float) -> None:
        """Take one segment from a peer. Never raises: bad input is dropped and counted."""
        try:
            segment = decode_segment(datagram)
        except LtpError:
            self.counters["malformed"] += 1
            return
        self.counters[f"segments_in.{TYPE_NAMES[datagram[0] & 0x0F]}"] += 1
        if isinstance(segment, DataSegment):
            self._on_data(segment)
        elif isinstance(segment, CancelSegment) and segment.from_sender:
            self._on_cancel_from_sender(segment)
        elif isinstance(segment, CancelAckSegment) and not segment.to_sender:
            self._on_cancel_ack(segment)
        elif isinstance(segment, ReportAckSegment):
            self._on_report_ack(segment)
        elif segment.engine_id != self.local:
            # reports, CR and CAS name one of our own export sessions
            self.counters["dropped.not_our_session"] += 1
        elif isinstance(segment, ReportSegment):
            self._on_report(segment)
        elif isinstance(segment, CancelSegment):
            self._on_cancel_from_receiver(segment)
        else:
            self._on_cancel_ack(segment)

    # --- shared ------------------------------------------------------------------------------

    def _queue(self, span: _Span, segment: Segment, timer: _Timer | None = None) -> bytes:
        wire = segment.encode()
        span.queue.append((wire, timer))
        return wire

    def _cancel(self, span: _Span, session: int, from_sender: bool, reason: int) -> None:
        """Send a cancel segment and keep resending it until acknowledged or over the limit."""
        engine = self.local if from_sender else span.remote
        wire = CancelSegment(engine, session, from_sender, reason).encode()
        key = (from_sender, session)
        old = span.cancels.pop(key, None)
        if old is not None:
            old.stop()

        def resend(now: float) -> None:
            if timer.count > span.config.max_retransmissions:
                timer.stop()
                span.cancels.pop(key, None)
                self.counters["cancel_unacknowledged"] += 1
                return
            span.queue.append((wire, timer))

        timer = _Timer(span, resend)
        span.cancels[key] = timer
        span.queue.append((wire, timer))
        self.counters[f"cancels_sent.{REASON_NAMES.get(reason, reason)}"] += 1

    def _on_cancel_ack(self, segment: CancelAckSegment) -> None:
        # a CAS (to_sender) acknowledges our CS, for an export already closed; a CAR our CR
        remote = (self._closed_exports.get(segment.session) if segment.to_sender
                  else segment.engine_id)
        span = self._spans.get(remote) if remote is not None else None
        timer = span.cancels.pop((segment.to_sender, segment.session), None) if span else None
        if timer is None:
            self.counters["dropped.unexpected_cancel_ack"] += 1
            return
        timer.stop()

    # --- sender ------------------------------------------------------------------------------

    def _start_pending(self, span: _Span) -> None:
        while span.pending and len(span.exports) < span.config.max_sessions:
            export = span.pending.popleft()
            _move(_EXPORT, export, OPEN)
            # ION counts the header in its segment size (1015-byte first segments at 1024) and
            # may split off a one-byte checkpoint; ours bounds the data alone, as configured
            size = span.config.segment_size
            n = len(export.data)
            if not export.red:  # green: sent once, nothing comes back
                for offset in range(0, n, size):
                    kind = GREEN_EOB if offset + size >= n else GREEN_DATA
                    self._data(export, kind, offset, min(n, offset + size))
                _move(_EXPORT, export, CLOSED)
                self._session_span.pop(export.session, None)
                continue
            span.exports[export.session] = export
            for offset in range(0, n, size):
                if offset + size >= n:
                    self._checkpoint(export, RED_CHECKPOINT_EORP_EOB, offset, n, 0)
                else:
                    self._data(export, RED_DATA, offset, offset + size)

    def _data(self, export: _Export, kind: int, start: int, end: int) -> None:
        segment = DataSegment(self.local, export.session, kind,
                              export.span.config.client_service, start,
                              export.data[start:end])
        self._queue(export.span, segment)

    def _checkpoint(self, export: _Export, kind: int, start: int, end: int,
                    report_serial: int) -> None:
        serial = export.next_checkpoint
        export.next_checkpoint += 1
        segment = DataSegment(self.local, export.session, kind,
                              export.span.config.client_service, start,
                              export.data[start:end], serial, report_serial)
        span = export.span

        def resend(now: float) -> None:
            if timer.count > span.config.max_retransmissions:
                self._cancel_export(export, RLEXC)
                return
            self.counters["checkpoint_retransmitted_bytes"] += end - start
            span.queue.append((wire, timer))

        timer = _Timer(span, resend)
        export.checkpoints[serial] = timer
        wire = self._queue(span, segment, timer)

    def _close_export(self, export: _Export) -> None:
        _move(_EXPORT, export, CLOSED)
        span = export.span
        for timer in export.checkpoints.values():
            timer.stop()
        span.exports.pop(export.session, None)
        self._session_span.pop(export.session, None)
        self._closed_exports[export.session] = span.remote
        while len(self._closed_exports) > self.config.closed_session_memory:
            self._closed_exports.popitem(last=False)
        self._start_pending(span)

    def _cancel_export(self, export: _Export, reason: int) -> None:
        _move(_EXPORT, export, CANCELLING)
        self._cancel(export.span, export.session, True, reason)
        self._events.append(BlockCancelled(export.span.remote, export.session, reason, False))
        self._close_export(export)

    def _on_report(self, report: ReportSegment) -> None:
        span = self._session_span.get(report.session)
        export = span.exports.get(report.session) if span else None
        if export is None:
            remote = self._closed_exports.get(report.session)
            if remote is None:
                self.counters["dropped.report_unknown_session"] += 1
                return
            # its acknowledgement was lost: ack again so the receiver stops (ION's
            # CLOSED_EXPORTS_ENABLED behaviour)
            self.counters["late_reports"] += 1
            self._queue(self._spans[remote], ReportAckSegment(
                self.local, report.session, report.report_serial))
            return
        red_length = len(export.data)
        cited = report.checkpoint_serial
        if report.upper_bound > red_length or not report.claims or (
                cited and not 1 <= cited < export.next_checkpoint):
            self.counters["dropped.bad_report"] += 1
            return
        self._queue(span, ReportAckSegment(self.local, report.session, report.report_serial))
        if report.report_serial in export.reports_seen:
            return  # a resent report: its retransmission was done
        export.reports_seen.add(report.report_serial)
        timer = export.checkpoints.pop(cited, None)
        if timer is not None:
            timer.stop()
        before = export.claims.total
        for offset, length in report.claims:
            export.claims.add(offset, offset + length)
        progress = export.claims.total > before
        if export.claims.covers(red_length):
            self._events.append(BlockDelivered(span.remote, export.session))
            self._close_export(export)
            return
        if not progress:
            export.no_progress += 1
            if export.no_progress > span.config.max_retransmissions:
                self._cancel_export(export, RXMTCYCEXC)
                return
            if cited in export.answered:
                return  # another report for that checkpoint already got its answer
        export.answered.add(cited)
        self._retransmit(export, export.claims.gaps(report.lower_bound, report.upper_bound),
                         report.report_serial)

    def _retransmit(self, export: _Export, gaps: list[tuple[int, int]],
                    report_serial: int) -> None:
        size = export.span.config.segment_size
        pieces = [(s, min(s + size, e)) for a, e in gaps for s in range(a, e, size)]
        if not pieces:
            return
        red_length = len(export.data)
        for start, end in pieces[:-1]:
            self._data(export, RED_DATA, start, end)
        start, end = pieces[-1]
        kind = RED_CHECKPOINT_EORP_EOB if end == red_length else RED_CHECKPOINT
        self._checkpoint(export, kind, start, end, report_serial)
        self.counters["retransmitted_bytes"] += sum(e - s for s, e in pieces)

    def _on_cancel_from_receiver(self, segment: CancelSegment) -> None:
        span = self._session_span.get(segment.session)
        remote = span.remote if span else self._closed_exports.get(segment.session)
        self.counters[f"cancels_received.{REASON_NAMES.get(segment.reason, segment.reason)}"] += 1
        if remote is None:
            self.counters["dropped.cancel_unknown_session"] += 1
            return
        self._queue(self._spans[remote], CancelAckSegment(self.local, segment.session, False))
        export = span.exports.get(segment.session) if span else None
        if export is not None:
            self._events.append(BlockCancelled(remote, segment.session, segment.reason, True))
            self._close_export(export)

    # --- receiver ----------------------------------------------------------------------------

    def _on_data(self, segment: DataSegment) -> None:
        span = self._spans.get(segment.engine_id)
        if span is None:
            self.counters["dropped.unknown_engine"] += 1
            return
        if not segment.red:
            self._events.append(GreenReceived(span.remote, segment.session, segment.offset,
                                              segment.data))
            return
        imp = span.imports.get(segment.session)
        if imp is None:
            red_length = span.closed_imports.get(segment.session)
            if red_length is not None:
                self._answer_closed(span, segment, red_length)
                return
            if self._full(span):
                self.counters["refused_sessions"] += 1
                if segment.checkpoint:  # once per checkpoint, not per segment, and stateless
                    self._cancel_unknown(span, segment.session)
                return
            imp = span.imports[segment.session] = _Import(span, segment.session)
        if imp.state == OPEN and not self._store(imp, segment):
            return
        if segment.checkpoint:
            self._send_reports(imp, segment)
        elif imp.state == OPEN and self._complete(imp):
            # complete without a checkpoint: ION's asynchronous report
            self._send_reports(imp, None)
        if imp.state == OPEN and self._complete(imp):
            self._deliver(imp)

    def _full(self, span: _Span) -> bool:
        """No room for a new import session: `max_sessions` still receiving, or four times
        that many in all (delivered ones wait for their last report-acknowledgement, and
        must not hold a slot a sender may already have reused)."""
        cap = span.config.max_sessions
        if len(span.imports) < cap:
            return False
        return (len(span.imports) >= 4 * cap
                or sum(imp.state == OPEN for imp in span.imports.values()) >= cap)

    def _cancel_unknown(self, span: _Span, session: int) -> None:
        wire = CancelSegment(span.remote, session, False, SYS_CNCLD).encode()
        span.queue.append((wire, None))
        self.counters["cancels_sent.SYS_CNCLD"] += 1

    def _store(self, imp: _Import, segment: DataSegment) -> bool:
        """Keep the segment's new bytes; False when the session had to be dropped."""
        end = segment.end
        if imp.red_length is not None and end > imp.red_length or (
                segment.eorp and imp.ranges.ends and imp.ranges.ends[-1] > end):
            self.counters["dropped.beyond_red_part"] += 1
            return False
        if end > self.config.max_block_size:
            self.counters["refused_block_too_large"] += 1
            self._cancel_import(imp, SYS_CNCLD)
            return False
        fresh = imp.ranges.add(segment.offset, end)
        added = sum(e - s for s, e in fresh)
        if self._buffered + added > self.config.max_buffered_bytes:
            self.counters["refused_buffer_full"] += 1
            self._cancel_import(imp, SYS_CNCLD)
            return False
        self._buffered += added
        if added < len(segment.data):
            self.counters["duplicate_bytes"] += len(segment.data) - added
        for s, e in fresh:
            imp.chunks[s] = segment.data[s - segment.offset:e - segment.offset]
        if segment.eorp:
            imp.red_length = end
        return True

    def _complete(self, imp: _Import) -> bool:
        return imp.red_length is not None and imp.ranges.covers(imp.red_length)

    def _deliver(self, imp: _Import) -> None:
        assert imp.red_length is not None
        block = bytearray(imp.red_length)
        for start, chunk in imp.chunks.items():
            block[start:start + len(chunk)] = chunk
        self._free(imp)
        _move(_IMPORT, imp, DELIVERED)
        self._events.append(BlockReceived(imp.span.remote, imp.session, bytes(block)))
        self._maybe_forget(imp)

    def _free(self, imp: _Import) -> None:
        self._buffered -= sum(map(len, imp.chunks.values()))
        imp.chunks.clear()

    def _send_reports(self, imp: _Import, checkpoint: DataSegment | None) -> None:
        ckpt_serial = checkpoint.checkpoint_serial if checkpoint else 0
        # a new report for a checkpoint supersedes those sent for it before
        for serial, old in list(imp.reports.items()):
            if old.segment.checkpoint_serial == ckpt_serial:
                old.timer.stop()
                del imp.reports[serial]
        if imp.state != OPEN or self._complete(imp):
            assert imp.red_length is not None
            self._report(imp, ckpt_serial, 0, imp.red_length, [(0, imp.red_length)])
            return
        assert checkpoint is not None
        lower, upper = 0, checkpoint.end
        cited = imp.bounds.get(checkpoint.report_serial) if checkpoint.report_serial else None
        if cited is not None:
            lower, upper = cited[0], max(upper, cited[1])
        upper = max(upper, lower)  # a hostile checkpoint citing bounds above itself
        claims = imp.ranges.within(lower, upper)
        step = self.config.max_claims_per_report
        for i in range(0, len(claims), step):
            part = claims[i:i + step]
            top = claims[i + step][0] if i + step < len(claims) else upper
            self._report(imp, ckpt_serial, lower, top, part)
            lower = top

    def _report(self, imp: _Import, ckpt_serial: int, lower: int, upper: int,
                claims: list[tuple[int, int]]) -> None:
        span = imp.span
        serial = imp.next_report
        imp.next_report += 1
        segment = ReportSegment(span.remote, imp.session, serial, ckpt_serial, upper, lower,
                                tuple((s, e - s) for s, e in claims))

        def resend(now: float) -> None:
            if timer.count <= span.config.max_retransmissions:
                span.queue.append((wire, timer))
                return
            timer.stop()
            imp.reports.pop(serial, None)
            if imp.state == OPEN:
                self._cancel_import(imp, RLEXC)
            else:
                self._maybe_forget(imp)

        timer = _Timer(span, resend)
        wire = self._queue(span, segment, timer)
        imp.reports[serial] = _Report(segment, timer)
        imp.bounds[serial] = (lower, upper)
        while len(imp.bounds) > _MAX_OPEN_REPORTS:
            imp.bounds.popitem(last=False)
        while len(imp.reports) > _MAX_OPEN_REPORTS:
            imp.reports.pop(next(iter(imp.reports))).timer.stop()

    def _on_report_ack(self, segment: ReportAckSegment) -> None:
        span = self._spans.get(segment.engine_id)
        imp = span.imports.get(segment.session) if span else None
        report = imp.reports.pop(segment.report_serial, None) if imp else None
        if report is None:
            self.counters["dropped.unexpected_report_ack"] += 1
            return
        report.timer.stop()
        self._maybe_forget(imp)

    def _maybe_forget(self, imp: _Import) -> None:
        """A delivered session with no report in flight is closed and remembered."""
        if imp.state != DELIVERED or imp.reports:
            return
        span = imp.span
        _move(_IMPORT, imp, CLOSED)
        del span.imports[imp.session]
        assert imp.red_length is not None
        self._remember(span, imp.session, imp.red_length)

    def _remember(self, span: _Span, session: int, red_length: int) -> None:
        """Keep a closed import session's red length (0: cancelled) for late segments."""
        span.closed_imports[session] = red_length
        while len(span.closed_imports) > self.config.closed_session_memory:
            span.closed_imports.popitem(last=False)

    def _answer_closed(self, span: _Span, segment: DataSegment, red_length: int) -> None:
        self.counters["duplicate_segments_closed_session"] += 1
        if not segment.checkpoint or red_length == 0:
            return
        imp = _Import(span, segment.session, state=CLOSED, red_length=red_length)
        _move(_IMPORT, imp, DELIVERED)
        span.imports[segment.session] = imp
        del span.closed_imports[segment.session]
        self._send_reports(imp, segment)

    def _cancel_import(self, imp: _Import, reason: int) -> None:
        _move(_IMPORT, imp, CANCELLING)
        self._free(imp)
        for report in imp.reports.values():
            report.timer.stop()
        imp.reports.clear()
        self._cancel(imp.span, imp.session, False, reason)
        self._events.append(BlockCancelled(imp.span.remote, imp.session, reason, False))
        # remembered with red length 0, so late segments cannot revive it
        _move(_IMPORT, imp, CLOSED)
        imp.span.imports.pop(imp.session, None)
        self._remember(imp.span, imp.session, 0)

    def _on_cancel_from_sender(self, segment: CancelSegment) -> None:
        self.counters[f"cancels_received.{REASON_NAMES.get(segment.reason, segment.reason)}"] += 1
        span = self._spans.get(segment.engine_id)
        if span is None:
            self.counters["dropped.unknown_engine"] += 1
            return
        self._queue(span, CancelAckSegment(span.remote, segment.session, True))
        imp = span.imports.pop(segment.session, None)
        if imp is None:
            return
        self._free(imp)
        for report in imp.reports.values():
            report.timer.stop()
        if imp.state == OPEN:
            self._events.append(BlockCancelled(span.remote, segment.session, segment.reason,
                                               True))
        red_length = imp.red_length or 0 if imp.state == DELIVERED else 0
        _move(_IMPORT, imp, CLOSED)
        self._remember(span, imp.session, red_length)
