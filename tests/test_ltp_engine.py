"""The LTP engine on virtual time: two engines joined by a lossy in-memory channel with a
20-minute light time, driven by next_deadline; loss, outages, many sessions, hostile peers."""

from __future__ import annotations

import heapq
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.ltp.engine import (
    BlockCancelled,
    BlockDelivered,
    BlockReceived,
    GreenReceived,
    LtpConfig,
    LtpEngine,
    SpanConfig,
    _Ranges,
)
from dtn.ltp.segment import (
    RLEXC,
    SYS_CNCLD,
    CancelSegment,
    DataSegment,
    ReportSegment,
    decode_segment,
)

OWLT = 1200.0  # 20 minutes


@dataclass
class Channel:
    a: LtpEngine
    b: LtpEngine
    owlt: float = OWLT
    loss: float = 0.0
    seed: int = 1
    # drop(src engine id, segment bytes, per-direction index) -> True to lose the datagram
    drop: Callable[[int, bytes, int], bool] | None = None
    # (down_at, up_at) windows when the contact is closed: nothing arrives, engines are told
    outages: list[tuple[float, float]] = field(default_factory=list)
    now: float = 0.0
    sent: dict[int, int] = field(default_factory=dict)
    lost: list[tuple[int, bytes]] = field(default_factory=list)
    _flight: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._engines = {self.a.local: self.a, self.b.local: self.b}
        self._changes = sorted([(t, False) for t, _ in self.outages]
                               + [(t, True) for _, t in self.outages])

    def _down(self, t: float) -> bool:
        return any(lo <= t < hi for lo, hi in self.outages)

    def _pump(self) -> None:
        for engine in (self.a, self.b):
            for remote, wire in engine.datagrams_to_send(self.now):
                index = self.sent.get(engine.local, 0)
                self.sent[engine.local] = index + 1
                arrival = self.now + self.owlt
                if (self.rng.random() < self.loss or self._down(arrival)
                        or (self.drop is not None and self.drop(engine.local, wire, index))):
                    self.lost.append((engine.local, wire))
                    continue
                self._seq += 1
                heapq.heappush(self._flight, (arrival, self._seq, remote, wire))

    def run(self, until: float = 1e9, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            self._pump()
            times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
            if self._flight:
                times.append(self._flight[0][0])
            if self._changes:
                times.append(self._changes[0][0])
            if not times or min(times) > until:
                return
            self.now = max(self.now, min(times))
            while self._changes and self._changes[0][0] <= self.now:
                _, up = self._changes.pop(0)
                for engine, other in ((self.a, self.b), (self.b, self.a)):
                    if up:
                        engine.contact_up(other.local, self.now)
                    else:
                        engine.contact_down(other.local, self.now)
            while self._flight and self._flight[0][0] <= self.now:
                _, _, dst, wire = heapq.heappop(self._flight)
                self._engines[dst].receive_datagram(wire, self.now)
            for engine in (self.a, self.b):
                engine.handle_timer(self.now)
        raise AssertionError("the channel did not settle")


def pair(span: SpanConfig | None = None, config: LtpConfig | None = None,
         **channel: object) -> Channel:
    span = span or SpanConfig(owlt=OWLT)
    a, b = LtpEngine(2, config or LtpConfig()), LtpEngine(3, config or LtpConfig())
    a.add_span(3, span)
    b.add_span(2, span)
    return Channel(a, b, **channel)  # type: ignore[arg-type]


def _kind(wire: bytes) -> int:
    return wire[0] & 0x0F


def _data_bytes(lost: list[tuple[int, bytes]]) -> int:
    """Red data bytes in the lost datagrams that were data segments."""
    total = 0
    for _, wire in lost:
        segment = decode_segment(wire)
        if isinstance(segment, DataSegment):
            total += len(segment.data)
    return total


def _only(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.10])
def test_a_5mb_block_is_delivered_exactly_once(loss):
    ch = pair(loss=loss, seed=7)
    data = os.urandom(5_000_000)
    session = ch.a.send_block(3, data, 0.0)
    ch.run()
    received = _only(ch.b.events(), BlockReceived)
    assert received == [BlockReceived(2, session, data)]
    assert ch.a.events() == [BlockDelivered(3, session)]
    # every lost data byte is sent again once; timer resends of checkpoints are counted apart
    lost = _data_bytes(ch.lost) - ch.a.counters["checkpoint_retransmitted_bytes"]
    assert lost <= ch.a.counters["retransmitted_bytes"] <= lost + 1024
    assert ch.a.next_deadline() is None and ch.b.next_deadline() is None
    if loss == 0:
        assert ch.now == 3 * OWLT  # data, report, report-ack


def test_only_unclaimed_ranges_are_retransmitted():
    lost_indexes = {5, 6, 7, 100, 2000, 3001}  # first-pass data segments of engine 2
    ch = pair(drop=lambda src, wire, i: src == 2 and i in lost_indexes)
    data = os.urandom(4_000_000)
    ch.a.send_block(3, data, 0.0)
    ch.run()
    assert _only(ch.b.events(), BlockReceived)[0].data == data
    # bytes retransmitted are exactly the bytes lost: claims let the sender fill only gaps
    assert ch.a.counters["retransmitted_bytes"] == _data_bytes(ch.lost) == 6 * 1024
    assert ch.a.counters["segments_out.data_red_checkpoint"] == 1  # one repair cycle
    assert ch.now == 5 * OWLT


def _first_of(kind: int, src: int) -> Callable[[int, bytes, int], bool]:
    seen = []

    def drop(s: int, wire: bytes, index: int) -> bool:
        if s == src and _kind(wire) == kind and not seen:
            seen.append(index)
            return True
        return False

    return drop


@pytest.mark.parametrize("what,kind,src", [
    ("checkpoint", 3, 2), ("report", 8, 3), ("report-ack", 9, 2)])
def test_a_lost_control_segment_is_recovered_by_its_timer(what, kind, src):
    ch = pair(drop=_first_of(kind, src))
    data = os.urandom(300_000)
    ch.a.send_block(3, data, 0.0)
    ch.run()
    assert _only(ch.b.events(), BlockReceived) == [BlockReceived(2, 1, data)]
    assert ch.a.events() == [BlockDelivered(3, 1)]
    assert ch.a.counters["retransmitted_bytes"] == 0
    if what == "report-ack":
        assert ch.a.counters["late_reports"] == 1  # the resent report is acknowledged again
    else:
        assert ch.a.counters["checkpoint_retransmitted_bytes"] > 0


def test_a_contact_that_closes_mid_session_suspends_the_timers_and_resumes():
    # the contact closes while the block is in flight and stays closed for 3 hours
    ch = pair(outages=[(600.0, 600.0 + 3 * 3600.0)])
    data = os.urandom(1_000_000)
    ch.a.send_block(3, data, 0.0)
    ch.run(until=700.0)
    assert ch.a.next_deadline() is None  # suspended while down
    ch.run()
    assert _only(ch.b.events(), BlockReceived) == [BlockReceived(2, 1, data)]
    assert ch.a.events() == [BlockDelivered(3, 1)]
    # the checkpoint (in flight at the close) went again only once: the pause did not count
    assert ch.a.counters["checkpoint_retransmitted_bytes"] > 0
    assert ch.a.counters["cancels_sent.RLEXC"] == 0


def test_nothing_is_sent_while_the_contact_is_down():
    a = LtpEngine(2)
    a.add_span(3, SpanConfig(owlt=OWLT))
    a.contact_down(3, 0.0)
    a.send_block(3, b"x" * 5000, 1.0)
    assert a.datagrams_to_send(2.0) == [] and a.next_deadline() is None
    a.contact_up(3, 100.0)
    sent = a.datagrams_to_send(100.0)
    assert len(sent) == 5 and a.next_deadline() == 100.0 + 2 * OWLT + 1.0


def test_300_sessions_in_flight():
    ch = pair(loss=0.01, seed=3)
    blocks = {ch.a.send_block(3, os.urandom(20_000), 0.0): None for _ in range(300)}
    ch.run()
    received = _only(ch.b.events(), BlockReceived)
    assert sorted(e.session for e in received) == sorted(blocks)
    assert sorted(e.session for e in ch.a.events()) == sorted(blocks)
    assert ch.a.next_deadline() is None and ch.b.next_deadline() is None


def test_the_retransmission_limit_cancels_the_session():
    # every report is lost: the checkpoint goes 1 + max_retransmissions times, then RLEXC
    span = SpanConfig(owlt=OWLT, max_retransmissions=3)
    ch = pair(span=span, drop=lambda src, wire, i: src == 3 and _kind(wire) == 8)
    ch.a.send_block(3, os.urandom(10_000), 0.0)
    ch.run()
    assert ch.a.events() == [BlockCancelled(3, 1, RLEXC, by_peer=False)]
    # the receiver had the whole block: the sender's cancel only closes its session
    assert [type(e) for e in ch.b.events()] == [BlockReceived]
    assert ch.a.counters["segments_out.data_red_eob"] == 4
    assert ch.b.counters["segments_out.cancel_ack_to_sender"] == 1


def test_green_blocks_are_handed_up_as_they_come():
    ch = pair()
    data = os.urandom(3000)
    ch.a.send_block(3, data, 0.0, red=False)
    ch.run()
    green = _only(ch.b.events(), GreenReceived)
    assert b"".join(g.data for g in sorted(green, key=lambda g: g.offset)) == data
    assert ch.a.counters["segments_out.data_green_eob"] == 1 and ch.a.next_deadline() is None


def _receiver(**config: int) -> LtpEngine:
    b = LtpEngine(3, LtpConfig(**config))
    b.add_span(2, SpanConfig(owlt=OWLT, max_sessions=8))
    return b


def _segment(session: int, offset: int, data: bytes, kind: int = 0, ckpt: int = 0) -> bytes:
    return DataSegment(2, session, kind, 1, offset, data, ckpt, 0).encode()


def test_a_delivered_session_is_answered_again_never_delivered_twice():
    b = _receiver()
    checkpoint = _segment(1, 0, b"block", kind=3, ckpt=1)
    b.receive_datagram(checkpoint, 0.0)
    assert b.events() == [BlockReceived(2, 1, b"block")]
    first = [decode_segment(w) for _, w in b.datagrams_to_send(0.0)]
    b.receive_datagram(checkpoint, 10.0)
    again = [decode_segment(w) for _, w in b.datagrams_to_send(10.0)]
    assert b.events() == []
    for report in first + again:
        assert isinstance(report, ReportSegment) and report.claims == ((0, 5),)


def test_hostile_segments_are_counted_never_raised():
    b = _receiver(max_block_size=1 << 20)
    hostile = [
        b"", b"\xff" * 50, b"\x08\x03" + b"\xff" * 20,
        ReportSegment(3, 99, 1, 1, 10, 0, ((0, 10),)).encode(),  # report, unknown session
        ReportSegment(2, 99, 1, 1, 10, 0, ((0, 10),)).encode(),  # not our session
        _segment(1, 1 << 40, b"far"),  # beyond max_block_size: cancelled
        _segment(2, 3, b"def", kind=3, ckpt=1), _segment(2, 4, b"beyond"),  # past EORP
        DataSegment(77, 1, 0, 1, 0, b"x").encode(),  # no span for engine 77
    ]
    for wire in hostile:
        b.receive_datagram(wire, 0.0)
    assert b.counters["malformed"] == 3
    assert b.counters["dropped.report_unknown_session"] == 1
    assert b.counters["dropped.not_our_session"] == 1
    assert b.counters["refused_block_too_large"] == 1
    assert b.counters["dropped.beyond_red_part"] == 1
    assert b.counters["dropped.unknown_engine"] == 1
    assert BlockCancelled(2, 1, SYS_CNCLD, by_peer=False) in b.events()
    sent = [decode_segment(w) for _, w in b.datagrams_to_send(0.0)]
    assert CancelSegment(2, 1, False, SYS_CNCLD) in sent


def test_a_flood_of_new_sessions_is_refused_past_the_cap():
    b = _receiver()
    for session in range(1, 1001):
        b.receive_datagram(_segment(session, 0, b"x" * 10, kind=1, ckpt=1), 0.0)
    assert b.counters["refused_sessions"] == 1000 - 8
    sent = b.datagrams_to_send(0.0)
    assert sum(1 for _, w in sent if _kind(w) == 14) == 1000 - 8  # one stateless cancel each
    assert b.counters["cancels_sent.SYS_CNCLD"] == 1000 - 8


def test_the_buffer_bound_cancels_what_does_not_fit():
    b = _receiver(max_buffered_bytes=25_000)
    for session in (1, 2, 3):
        b.receive_datagram(_segment(session, 0, b"x" * 10_000), 0.0)
    assert b.counters["refused_buffer_full"] == 1
    assert b.events() == [BlockCancelled(2, 3, SYS_CNCLD, by_peer=False)]


def test_a_cancel_from_the_sender_is_acknowledged_and_reported():
    b = _receiver()
    b.receive_datagram(_segment(4, 0, b"partial"), 0.0)
    b.receive_datagram(CancelSegment(2, 4, True, 0).encode(), 1.0)
    b.receive_datagram(CancelSegment(2, 5, True, 0).encode(), 1.0)  # unknown: still acked
    assert b.events() == [BlockCancelled(2, 4, 0, by_peer=True)]
    assert [_kind(w) for _, w in b.datagrams_to_send(1.0)] == [13, 13]
    b.receive_datagram(_segment(4, 7, b"late", kind=3, ckpt=1), 2.0)  # not revived
    assert b.events() == [] and b.datagrams_to_send(2.0) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       st.integers(0, 30))
def test_mutated_segments_never_raise(flips, which):
    ch = pair()
    ch.a.send_block(3, os.urandom(5000), 0.0)
    wires = [w for _, w in ch.a.datagrams_to_send(0.0)]
    wire = bytearray(wires[which % len(wires)])
    for pos, value in flips:
        wire[pos % len(wire)] = value
    ch.b.receive_datagram(bytes(wire), 1.0)
    for _, reply in ch.b.datagrams_to_send(1.0):
        mutated = bytearray(reply)
        for pos, value in flips:
            mutated[pos % len(mutated)] = value
        ch.a.receive_datagram(bytes(mutated), 2.0)
    ch.a.handle_timer(1e6)
    ch.b.handle_timer(1e6)


def _sender() -> tuple[LtpEngine, list[DataSegment]]:
    a = LtpEngine(2)
    a.add_span(3, SpanConfig(owlt=OWLT, max_retransmissions=2))
    a.send_block(3, os.urandom(5000), 0.0)
    return a, [decode_segment(w) for _, w in a.datagrams_to_send(0.0)]


def test_hostile_reports_are_dropped_and_counted():
    a, _ = _sender()
    for report in (
        ReportSegment(2, 1, 1, 1, 6000, 0, ((0, 6000),)),  # claims beyond the block
        ReportSegment(2, 1, 2, 99, 5000, 0, ((0, 5000),)),  # cites a checkpoint never sent
        ReportSegment(2, 42, 3, 1, 10, 0, ((0, 10),)),  # a session we never had
    ):
        a.receive_datagram(report.encode(), 1.0)
    a.receive_datagram(CancelSegment(2, 42, False, 0).encode(), 1.0)
    assert a.counters["dropped.bad_report"] == 2
    assert a.counters["dropped.report_unknown_session"] == 1
    assert a.counters["dropped.cancel_unknown_session"] == 1
    assert a.events() == [] and a.datagrams_to_send(1.0) == []


def test_a_receiver_that_never_fills_the_gap_is_cancelled():
    a, _ = _sender()
    for serial in range(1, 5):  # the same claim again and again: no progress
        a.receive_datagram(ReportSegment(2, 1, serial, 1, 5000, 0, ((0, 10),)).encode(), 1.0)
        a.datagrams_to_send(1.0)
    assert a.events() == [BlockCancelled(3, 1, 5, by_peer=False)]  # RXMTCYCEXC


def test_a_lost_final_report_ack_does_not_hold_a_session_slot():
    span = SpanConfig(owlt=OWLT, max_sessions=1)
    ch = pair(span=span, drop=lambda src, wire, i: src == 2 and _kind(wire) == 9)
    blocks = [os.urandom(3000) for _ in range(3)]
    for block in blocks:
        ch.a.send_block(3, block, 0.0)
    ch.run()
    assert [e.data for e in _only(ch.b.events(), BlockReceived)] == blocks
    assert ch.b.counters["refused_sessions"] == 0


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=30),
       st.integers(0, 200), st.integers(0, 260))
def test_byte_ranges_match_a_set_of_offsets(adds, lo, hi):
    ranges, model = _Ranges(), set()
    for start, length in adds:
        new = ranges.add(start, start + length)
        assert sum(e - s for s, e in new) == len(set(range(start, start + length)) - model)
        model |= set(range(start, start + length))
    assert all(s < e for s, e in zip(ranges.starts, ranges.ends, strict=True))
    assert all(e < s for e, s in zip(ranges.ends, ranges.starts[1:], strict=False))
    assert {i for s, e in ranges.within(lo, hi) for i in range(s, e)} == {
        i for i in model if lo <= i < hi}
    assert {i for s, e in ranges.gaps(lo, hi) for i in range(s, e)} == {
        i for i in range(lo, hi) if i not in model}
    assert ranges.total == len(model)
