"""The progress rule of every stream layer (dtn.cla.session.ProgressGuard) against two hostile
peers, on virtual time: one that trickles a message (or its handshake) in a byte at a time,
and one that takes our bundles and never acknowledges them while its keepalives flow."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import pytest

from dtn.bundle import cbor
from dtn.cla.framed import MtcpSession, StcpSession
from dtn.cla.sdnv import encode_sdnv
from dtn.cla.session import (
    ACKS_STALLED,
    MIN_PROGRESS_RATE,
    RECEIVE_STALLED,
    BundleAcked,
    BundleReceived,
    SessionClosed,
    StreamSession,
    progress_window,
)
from dtn.cla.tcpcl3 import Tcpcl3Session
from dtn.cla.tcpcl4 import Tcpcl4Session
from tests.tls_helpers import client_context, make_ca_and_cert, server_context

KEEPALIVE = 10  # ours; the hostile peers offer 0, which turns the keepalive's idle rule off
WINDOW = progress_window(KEEPALIVE)  # 20 s
TCPCL3_HEADER = b"dtn!\x03\x05\x00\x00" + encode_sdnv(7) + b"ipn:9.0"  # acks, refusal, no keepalive
TCPCL4_OPENING = b"dtn!\x04\x00" + struct.pack("!BHQQH", 7, 0, 1 << 20, 1 << 26, 10) + (
    b"dtn://raw/" + struct.pack("!I", 0))


def tcpcl3_message(payload: bytes) -> bytes:
    return b"\x13" + encode_sdnv(len(payload)) + payload  # one DATA_SEGMENT, start and end


def tcpcl4_message(payload: bytes) -> bytes:
    return struct.pack("!BBQI", 1, 0x03, 0, 0) + struct.pack("!Q", len(payload)) + payload


# layer -> (a passive session of ours, what the peer opens with, how it frames one bundle)
Receiver = tuple[Callable[[], StreamSession], bytes, Callable[[bytes], bytes]]
RECEIVERS: dict[str, Receiver] = {
    "tcpcl3": (lambda: Tcpcl3Session("ipn:2.0", active=False, keepalive=KEEPALIVE),
               TCPCL3_HEADER, tcpcl3_message),
    "tcpcl4": (lambda: Tcpcl4Session("dtn://b/", active=False, keepalive=KEEPALIVE),
               TCPCL4_OPENING, tcpcl4_message),
    "mtcp": (lambda: MtcpSession(keepalive=KEEPALIVE), b"",
             lambda payload: cbor.head(2, len(payload)) + payload),
    "stcp": (lambda: StcpSession(keepalive=KEEPALIVE), b"",
             lambda payload: struct.pack(">I", len(payload)) + payload),
}


def advance(session: StreamSession, until: float) -> None:
    """Run the session's timers up to `until`, as the shell does at each `next_deadline`."""
    for _ in range(10_000):
        due = session.next_deadline()
        if session.closed or due is None or due > until:
            return
        session.handle_timer(due)
    raise AssertionError("the timers did not settle")


def closed(session: StreamSession) -> SessionClosed:
    ends = [e for e in session.events() if isinstance(e, SessionClosed)]
    assert len(ends) == 1, ends
    return ends[0]


def opened(layer: str) -> StreamSession:
    make, opening, _ = RECEIVERS[layer]
    session = make()
    if opening:
        session.receive_data(opening, 0.0)
    assert session.established and not session.closed
    session.data_to_send()
    session.events()
    return session


def trickle(session: StreamSession, data: bytes, start: float, every: float) -> float:
    """Feed `data` a byte every `every` s from `start`, timers in between; when it closed."""
    now = start
    for i in range(len(data)):
        now = start + i * every
        advance(session, now)
        if session.closed:
            return now
        session.receive_data(data[i : i + 1], now)
    advance(session, now + 10 * WINDOW)
    return now


@pytest.mark.parametrize("layer", sorted(RECEIVERS))
@pytest.mark.parametrize("every", [60.0, 1.0])  # a byte a minute; a byte within the idle bound
def test_a_message_trickled_in_is_cut_off_after_one_window(layer, every):
    session = opened(layer)
    message = RECEIVERS[layer][2](b"x" * 500)
    trickle(session, message, 100.0, every)
    assert session.closed
    end = closed(session)
    assert end.reason.startswith("receive stalled:"), end.reason
    assert session.counters[RECEIVE_STALLED] == 1
    # Cut when the first window ran out: its bytes were far short of the minimum.
    assert f": {math.ceil(WINDOW / every)} bytes in {WINDOW:g} s" in end.reason
    if layer.startswith("tcpcl"):
        assert session.data_to_send()  # SHUTDOWN / SESS_TERM went out
    assert not [e for e in session.events() if isinstance(e, BundleReceived)]


@pytest.mark.parametrize("layer", sorted(RECEIVERS))
def test_a_bundle_arriving_just_above_the_minimum_rate_gets_through(layer):
    session = opened(layer)
    payload = bytes(range(256)) * 400  # 100 KiB over five windows
    message = RECEIVERS[layer][2](payload)
    step, now = MIN_PROGRESS_RATE, 100.0
    for offset in range(0, len(message), step):  # a KiB every 0.9 s
        advance(session, now)
        assert not session.closed, session.events()
        session.receive_data(message[offset : offset + step], now)
        now += 0.9
    assert [e.data for e in session.events() if isinstance(e, BundleReceived)] == [payload]
    advance(session, now + 100 * WINDOW)  # between bundles nothing is under way: no bound
    assert not session.closed and session.counters[RECEIVE_STALLED] == 0


@pytest.mark.parametrize("layer", sorted(RECEIVERS))
def test_a_bundle_that_stops_half_way_is_cut_off_one_window_later(layer):
    session = opened(layer)
    message = RECEIVERS[layer][2](b"y" * 100_000)
    session.receive_data(message[:50_000], 100.0)  # fast, then nothing
    advance(session, 100.0 + WINDOW - 0.1)
    assert not session.closed
    advance(session, 100.0 + WINDOW)
    assert session.closed and session.counters[RECEIVE_STALLED] == 1


@pytest.mark.parametrize("layer", ["tcpcl3", "tcpcl4"])
def test_a_handshake_trickled_in_is_cut_off_after_one_window(layer):
    make, opening, _ = RECEIVERS[layer]
    session = make()
    assert trickle(session, opening, 0.0, 60.0) == 60.0  # well before the 30 s header timeout
    assert not session.established
    assert closed(session).reason.startswith("receive stalled:")


def test_a_tcpcl4_peer_that_never_sends_a_byte_meets_the_header_timeout():
    session = Tcpcl4Session("dtn://b/", active=False, keepalive=KEEPALIVE)
    assert session.next_deadline() == 0.0  # the shell calls at once: the clock starts then
    advance(session, 5.0)
    assert not session.closed and session.next_deadline() == 30.0
    advance(session, 30.0)
    assert session.closed and "contact header" in closed(session).reason


# --- a peer that never acknowledges ------------------------------------------------------


def tcpcl3_ack(_: int, acked: int) -> bytes:
    return b"\x20" + encode_sdnv(acked)


def tcpcl4_ack(tid: int, acked: int) -> bytes:
    return struct.pack("!BBQQ", 2, 0x03, tid, acked)


# layer -> (the peer's keepalive message, its acknowledgement of `acked` bytes of transfer `tid`)
SENDERS = {"tcpcl3": (b"\x40", tcpcl3_ack), "tcpcl4": (b"\x04", tcpcl4_ack)}


@pytest.mark.parametrize("layer", sorted(SENDERS))
def test_bundles_never_acknowledged_end_the_session_and_come_back(layer):
    keepalive, ack = SENDERS[layer]
    session = opened(layer)
    first = session.send_bundle(b"a" * 1000, 100.0)
    second = session.send_bundle(b"b" * 1000, 100.0)
    session.data_to_send()
    session.receive_data(ack(first, 1000), 101.0)  # the first is acknowledged, then silence
    assert [e for e in session.events() if isinstance(e, BundleAcked)] == [BundleAcked(first)]
    now = 101.0
    while now < 101.0 + 10 * WINDOW and not session.closed:
        now += 5.0  # keepalives keep flowing: the connection is not idle
        advance(session, now)
        session.receive_data(keepalive, now)
    assert session.closed
    assert session.counters[ACKS_STALLED] == 1
    end = closed(session)
    assert end.reason.startswith("acknowledgement stalled:")
    assert end.unacked == (second,)  # the shell queues it again
    assert 101.0 + WINDOW <= now < 101.0 + WINDOW + 5.0  # one window after the last progress


@pytest.mark.parametrize("layer", sorted(SENDERS))
def test_acknowledgements_just_above_the_minimum_rate_keep_the_session(layer):
    _, ack = SENDERS[layer]
    session = opened(layer)
    size = 100 * MIN_PROGRESS_RATE
    tid = session.send_bundle(b"c" * size, 100.0)
    session.data_to_send()
    now, acked = 100.0, 0
    while acked < size:  # a KiB acknowledged every 0.9 s
        now += 0.9
        advance(session, now)
        assert not session.closed, session.events()
        acked += MIN_PROGRESS_RATE
        session.receive_data(ack(tid, acked), now)
    assert [e for e in session.events() if isinstance(e, BundleAcked)] == [BundleAcked(tid)]
    advance(session, now + 100 * WINDOW)  # nothing in flight: nothing to wait for
    assert not session.closed and session.counters[ACKS_STALLED] == 0


def test_a_tls_record_trickled_in_is_cut_off_before_any_of_its_plaintext_arrives(tmp_path):
    paths = make_ca_and_cert(tmp_path)
    a = Tcpcl4Session("dtn://a/", active=True, keepalive=KEEPALIVE,
                      ssl_context=client_context(paths), server_hostname="localhost")
    b = Tcpcl4Session("dtn://b/", active=False, keepalive=KEEPALIVE,
                      ssl_context=server_context(paths))
    for _ in range(20):  # contact headers, TLS handshake, SESS_INITs (b"" would be EOF)
        for src, dst in ((a, b), (b, a)):
            if data := src.data_to_send():
                dst.receive_data(data, 0.0)
    assert a.established and b.established
    b.events()
    a.send_bundle(b"z" * 5000, 0.0)
    records = a.data_to_send()  # none of a record's plaintext comes out before all of it is in
    first = 5 + int.from_bytes(records[3:5], "big")  # the first record: the segment's header
    # A byte a second (the idle rule never fires) of that record, short of its end: nothing
    # is plaintext yet, so the rule goes by the TLS record framing alone.
    trickle(b, records[: first - 1], 0.0, 1.0)
    assert b.closed and b.counters[RECEIVE_STALLED] == 1
    assert closed(b).reason.startswith("receive stalled:")
