"""MTCP and STCP sessions against the streams µD3TN 0.13 and ION 4.1.3 sent (the recorded
bundles with the framing each peer put around them), hostile input and fuzzing."""

from __future__ import annotations

import struct

import pytest
from conftest import load_vectors
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.cla.framed import MtcpSession, StcpSession
from dtn.cla.session import BundleAcked, BundleReceived, SessionClosed, SessionUp

UD3TN = [bytes.fromhex(b["hex"]) for b in load_vectors("peers/ud3tn_bundles.json")["bundles"]]
ION = [bytes.fromhex(b["hex"]) for b in load_vectors("peers/ion_bundles.json")["bundles"]]


def _mtcp_stream() -> bytes:
    """What µD3TN's MTCP layer wrote: each bundle a CBOR byte string (the head recorded for the
    first one, 0x58 0x4b for 75 bytes, is what shortest-form CBOR gives)."""
    out = b""
    for bundle in UD3TN:
        n = len(bundle)
        head = bytes([0x40 | n]) if n < 24 else (
            bytes([0x58, n]) if n < 256 else b"\x59" + struct.pack(">H", n))
        out += head + bundle
    return out


def _stcp_stream() -> bytes:
    """What ION's STCP outduct wrote: a 4-byte length before each bundle, and its keepalives
    (length 0) between them."""
    return b"".join(struct.pack(">I", len(b)) + b + b"\x00\x00\x00\x00" for b in ION)


def _received(session, stream: bytes, cuts: list[int]) -> list[bytes]:
    got = []
    edges = sorted({0, len(stream), *[c % (len(stream) + 1) for c in cuts]})
    for start, end in zip(edges, edges[1:], strict=False):
        session.receive_data(stream[start:end], 0.0)
        got += [e.data for e in session.events() if isinstance(e, BundleReceived)]
    return got


def test_mtcp_reads_what_ud3tn_sent_and_frames_as_it_did():
    assert _mtcp_stream()[:2] == bytes.fromhex("584b")  # as recorded ("captured_via")
    session = MtcpSession()
    assert _received(session, _mtcp_stream(), []) == UD3TN
    assert not session.closed
    sender = MtcpSession()
    for bundle in UD3TN:
        sender.send_bundle(bundle, 0.0)
    assert sender.data_to_send() == _mtcp_stream()
    events = sender.events()
    assert isinstance(events[0], SessionUp)
    assert [e.transfer_id for e in events if isinstance(e, BundleAcked)] == list(range(12))


def test_stcp_reads_what_ion_sent_keepalives_included_and_frames_as_it_did():
    session = StcpSession()
    assert _received(session, _stcp_stream(), []) == ION
    assert session.counters["keepalives_received"] == len(ION)
    sender = StcpSession(keepalive=0)
    for bundle in ION:
        sender.send_bundle(bundle, 0.0)
    assert sender.data_to_send() == b"".join(struct.pack(">I", len(b)) + b for b in ION)


def test_stcp_sends_keepalives_when_idle_on_virtual_time():
    session = StcpSession(keepalive=15)
    session.send_bundle(b"x", 100.0)
    session.data_to_send()
    assert session.next_deadline() == 115.0
    session.handle_timer(110.0)
    assert session.data_to_send() == b""
    session.handle_timer(115.0)
    assert session.data_to_send() == b"\x00\x00\x00\x00"
    assert session.next_deadline() == 130.0


@pytest.mark.parametrize(("session", "stream", "counter"), [
    (MtcpSession(), b"\x64dtn!", "bad_head"),  # a text string, not a byte string
    (MtcpSession(), b"\x5f\x41a\xff", "bad_head"),  # indefinite length
    (MtcpSession(max_bundle_size=1000), b"\x5b" + b"\xff" * 8, "oversized"),
    (StcpSession(max_bundle_size=1000), b"\xff\xff\xff\xff", "oversized"),
    (StcpSession(), b"", "peer_closed"),
])
def test_hostile_streams_close_the_session_with_a_counted_reason(session, stream, counter):
    session.receive_data(stream, 0.0)
    assert session.closed
    assert session.counters[counter] == 1
    closed = [e for e in session.events() if isinstance(e, SessionClosed)]
    assert len(closed) == 1 and closed[0].reason
    session.receive_data(b"more", 0.0)  # nothing after the end, and no exception


def test_a_bundle_sent_after_the_end_is_refused_not_lost():
    session = MtcpSession()
    session.receive_data(b"", 0.0)
    session.events()
    transfer = session.send_bundle(b"late", 0.0)
    assert [e.transfer_id for e in session.events() if hasattr(e, "reason")] == [transfer]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40))
def test_any_chunking_of_the_recorded_streams_gives_the_same_bundles(cuts):
    assert _received(MtcpSession(), _mtcp_stream(), cuts) == UD3TN
    assert _received(StcpSession(), _stcp_stream(), cuts) == ION


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_arbitrary_bytes_never_raise(data, cuts):
    for session in (MtcpSession(max_bundle_size=4096), StcpSession(max_bundle_size=4096)):
        _received(session, data, cuts)
        assert len(session._buffer) <= 4096 + 9
