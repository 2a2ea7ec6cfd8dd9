"""TCPCLv3 (RFC 7242) session: recorded ION and uD3TN sessions, two sessions wired together on
virtual time, hostile input and fuzzing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.cla.sdnv import SdnvError, decode_sdnv, encode_sdnv
from dtn.cla.session import (
    BundleAcked,
    BundleReceived,
    BundleRefused,
    SessionClosed,
    SessionUp,
)
from dtn.cla.tcpcl3 import DATA_SEGMENT, Tcpcl3Session, shutdown_message

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "peers" / "tcpclv3_transcripts.json").read_text()
)


def contact_header(eid: str = "ipn:9.0", flags: int = 0x05, keepalive: int = 10) -> bytes:
    raw = eid.encode()
    return b"dtn!" + bytes((3, flags)) + keepalive.to_bytes(2, "big") + encode_sdnv(len(raw)) + raw


def segment(payload: bytes, flags: int = 0x3) -> bytes:
    return bytes((0x10 | flags,)) + encode_sdnv(len(payload)) + payload


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# --- SDNV ---


@pytest.mark.parametrize("n", [0, 1, 0x7F, 0x80, 89, 5079, 0x3FFF, 0x4000, 2**32, 2**64 - 1])
def test_sdnv_roundtrip(n: int) -> None:
    raw = encode_sdnv(n)
    assert decode_sdnv(b"\x00" + raw + b"\x01", 1) == (n, 1 + len(raw))
    assert decode_sdnv(raw[:-1]) is None  # incomplete


def test_sdnv_recorded_and_bounds() -> None:
    assert encode_sdnv(89) == bytes.fromhex("59")
    assert encode_sdnv(5079) == bytes.fromhex("a757")
    with pytest.raises(SdnvError):
        decode_sdnv(b"\xff" * 11)
    with pytest.raises(SdnvError):
        decode_sdnv(b"\xff" * 9 + b"\x7f")  # 70 bits: more than 2**64
    with pytest.raises(SdnvError):
        encode_sdnv(2**64)
    assert decode_sdnv(b"\xff" * 9) is None  # could still end in the tenth byte


# --- recorded sessions: we are the listener ---


def listener_for(rec: dict) -> Tcpcl3Session:
    flags = rec["listener_flags"]
    return Tcpcl3Session(
        rec["listener_eid"],
        active=False,
        keepalive=rec["listener_keepalive_s"],
        request_acks=bool(flags & 0x01),
        allow_refusal=bool(flags & 0x04),
    )


@pytest.mark.parametrize("key", ["ion_tcpcl", "ud3tn_tcpclv3"])
def test_replay_as_listener(key: str) -> None:
    rec = VECTORS[key]
    s = listener_for(rec)
    assert s.data_to_send().hex() == rec["listener_contact_header_hex"]
    received, sent = [], []
    script = rec["transcript"]
    for i, msg in enumerate(script):
        t = msg.get("t_rel_s", 0.0)
        if msg["direction"] == "peer->listener":
            s.handle_timer(t)
            s.receive_data(bytes.fromhex(msg["hex"]), t)
            after = script[i + 1] if i + 1 < len(script) else {}
            acked = after.get("hex", "") if after.get("meaning", "").startswith("ACK") else ""
            assert s.data_to_send().hex() == acked, msg["meaning"]  # the ACK ION waits for
        elif msg["direction"] == "listener->peer":
            if msg["meaning"].startswith(("CONTACT", "ACK")):
                continue  # checked above
            if msg["hex"] == "50":
                s.close("done", t)  # the listener chose to end the session here
            else:
                s.handle_timer(t)
            out = s.data_to_send()
            assert out.hex() == msg["hex"], msg["meaning"]
            sent.append(out)
        received += s.events()
    assert of(received, SessionUp)[0].peer_eid == rec["transcript"][1]["fields"]["eid"]
    assert s.keepalive == rec["negotiated_keepalive_s"]
    assert s.acks == rec["acks_negotiated"]
    assert [e.data.hex() for e in of(received, BundleReceived)] == [
        b["hex"] for b in rec["bundles"]
    ]
    assert s.closed and of(received, SessionClosed)[0].reason == "done"
    assert s.counters["bundles_received"] == len(rec["bundles"])
    assert sum(1 for m in sent if m == b"\x40") == (2 if key == "ion_tcpcl" else 0)


def test_no_keepalive_deadline_when_peer_disables_it() -> None:
    rec = VECTORS["ud3tn_tcpclv3"]
    s = listener_for(rec)
    s.receive_data(bytes.fromhex(rec["transcript"][1]["hex"]), 0.0)
    assert s.established and s.keepalive == 0 and s.next_deadline() is None


# --- recorded sessions: we are the active opener, the recorded listener answers ---


@pytest.mark.parametrize("key", ["ion_tcpcl", "ud3tn_tcpclv3"])
def test_replay_as_opener(key: str) -> None:
    rec = VECTORS[key]
    peer_header = rec["transcript"][1]
    fields = peer_header["fields"]
    s = Tcpcl3Session(
        fields["eid"],
        active=True,
        keepalive=fields["keepalive_s"],
        request_acks=bool(fields["flags"] & 0x01),
        allow_refusal=bool(fields["flags"] & 0x04),
    )
    assert s.data_to_send().hex() == peer_header["hex"]  # byte-identical to ION's / uD3TN's
    s.receive_data(bytes.fromhex(rec["listener_contact_header_hex"]), 0.0)
    assert s.events() == [SessionUp(rec["listener_eid"])]
    assert (s.keepalive, s.acks) == (rec["negotiated_keepalive_s"], rec["acks_negotiated"])
    segments = [m for m in rec["transcript"] if m["hex"].startswith("13")]
    for bundle, seg in zip(rec["bundles"], segments, strict=True):
        tid = s.send_bundle(bytes.fromhex(bundle["hex"]), seg["t_rel_s"])
        assert s.data_to_send().hex() == seg["hex"]
        if rec["acks_negotiated"]:
            assert s.events() == [] and s.queued_bytes == bundle["length"]
            ack = next(m for m in rec["transcript"] if m["seq"] == seg["seq"] + 1)
            s.receive_data(bytes.fromhex(ack["hex"]), seg["t_rel_s"])
        assert s.events() == [BundleAcked(tid)] and s.queued_bytes == 0
    s.receive_data(b"\x50", 31.0)
    assert s.events() == [SessionClosed("peer shutdown")]
    assert s.data_to_send() == b"\x50"


# --- two sessions wired together ---


class Pair:
    def __init__(self, **kw: object) -> None:
        a_kw = {k[2:]: v for k, v in kw.items() if k.startswith("a_")}
        b_kw = {k[2:]: v for k, v in kw.items() if k.startswith("b_")}
        common = {k: v for k, v in kw.items() if not k.startswith(("a_", "b_"))}
        self.a = Tcpcl3Session("ipn:1.0", active=True, **{**common, **a_kw})  # type: ignore[arg-type]
        self.b = Tcpcl3Session("ipn:2.0", active=False, **{**common, **b_kw})  # type: ignore[arg-type]
        self.ev: dict[str, list] = {"a": [], "b": []}
        self.pump(0.0)

    def pump(self, now: float) -> None:
        for _ in range(10_000):
            da, db = self.a.data_to_send(), self.b.data_to_send()
            if da:
                self.b.receive_data(da, now)
            if db:
                self.a.receive_data(db, now)
            self.ev["a"] += self.a.events()
            self.ev["b"] += self.b.events()
            if not da and not db:
                return
        raise AssertionError("pump did not settle")


def test_pair_one_bundle() -> None:
    p = Pair()
    assert p.a.established and p.b.established
    assert of(p.ev["a"], SessionUp) == [SessionUp("ipn:2.0")]
    tid = p.a.send_bundle(b"hello bundle", 1.0)
    p.pump(1.0)
    assert of(p.ev["b"], BundleReceived) == [BundleReceived(b"hello bundle")]
    assert of(p.ev["a"], BundleAcked) == [BundleAcked(tid)]
    assert p.a.queued_bytes == 0


@pytest.mark.parametrize("acks", [True, False])
def test_pair_many_bundles_in_order(acks: bool) -> None:
    p = Pair(request_acks=acks, segment_size=100)
    bundles = [bytes([i]) * (i * 37) for i in range(60)]  # includes an empty one
    ids = [p.a.send_bundle(b, 1.0) for b in bundles]
    p.b.send_bundle(b"reverse", 1.0)
    p.pump(1.0)
    assert [e.data for e in of(p.ev["b"], BundleReceived)] == bundles
    assert [e.data for e in of(p.ev["a"], BundleReceived)] == [b"reverse"]
    assert [e.transfer_id for e in of(p.ev["a"], BundleAcked)] == ids
    assert p.a.counters["bundles_sent"] == 60


@pytest.mark.parametrize("acks", [True, False])
def test_pair_5mib_bundle_64k_segments(acks: bool) -> None:
    p = Pair(request_acks=acks, segment_size=64 << 10)
    big = bytes(range(256)) * (5 * 4096)
    tid = p.a.send_bundle(big, 1.0)
    out = p.a.data_to_send()
    assert out.count(b"\x12\x84\x80\x00") == 1 and len(out) == len(big) + 80 * 4  # 80 segments
    p.b.receive_data(out, 1.0)
    reply = p.b.data_to_send()
    assert of(p.b.events(), BundleReceived)[0].data == big
    if acks:
        assert of(p.a.events(), BundleAcked) == [] and p.a.queued_bytes == len(big)
        # one cumulative ACK_SEGMENT per segment
        assert reply == b"".join(b"\x20" + encode_sdnv((i + 1) << 16) for i in range(80))
        p.a.receive_data(reply, 1.0)
    else:
        assert reply == b""
    assert of(p.a.events(), BundleAcked) == [BundleAcked(tid)] and p.a.queued_bytes == 0


def test_reassembly_keeps_views_of_bytes_only_and_coalesces_small_pieces() -> None:
    """Large pieces of what was read are kept as views until the bundle ends, so a caller
    that reuses its buffer (a bytearray) must get copies; a byte at a time is one item."""
    big = bytes(range(256)) * 1024 + b"t" * 100  # in one segment (start and end)
    s = passive()
    s.receive_data(contact_header(flags=0), 0.0)
    s.receive_data(bytes([DATA_SEGMENT << 4 | 0x3]) + encode_sdnv(len(big)), 0.0)
    reused = bytearray(big[: 128 << 10])
    s.receive_data(reused, 0.0)
    reused[:] = bytes(len(reused))  # the caller's buffer, overwritten
    s.receive_data(big[128 << 10 : 192 << 10], 0.0)  # bytes: kept as a view
    s.receive_data(big[192 << 10 : 256 << 10], 0.0)
    for byte in big[256 << 10 : -1]:
        s.receive_data(bytes([byte]), 0.0)
    assert len(s._rx) == 4  # the copy, two views, then the byte-at-a-time pieces together
    s.receive_data(big[-1:], 0.0)
    assert of(s.events(), BundleReceived) == [BundleReceived(big)]


def test_acks_only_when_both_request() -> None:
    p = Pair(a_request_acks=True, b_request_acks=False)
    assert not p.a.acks and not p.b.acks
    p.a.send_bundle(b"x" * 10, 1.0)
    assert of(p.a.events(), BundleAcked)  # done once handed out
    p.pump(1.0)
    assert p.b.counters["bundles_received"] == 1 and p.a.counters["unexpected_ack"] == 0


def test_keepalive_on_virtual_time() -> None:
    p = Pair(a_keepalive=10, b_keepalive=30)
    assert p.a.keepalive == p.b.keepalive == 10  # the smaller one
    assert p.a.next_deadline() == 10.0
    p.a.handle_timer(9.9)
    assert p.a.data_to_send() == b""
    for t in (10.0, 20.0, 30.0):
        p.a.handle_timer(t)
        p.b.handle_timer(t)
        assert p.a.data_to_send() == b"\x40"
        p.b.receive_data(b"\x40", t)
        assert p.b.data_to_send() == b"\x40"
        p.a.receive_data(b"\x40", t)
    assert p.a.counters["keepalives_sent"] == 3 and not p.a.closed
    # b goes silent: a keeps sending keepalives, then gives up at 2x the interval
    p.a.handle_timer(40.0)
    assert p.a.data_to_send() == b"\x40" and not p.a.closed
    assert p.a.next_deadline() == 50.0
    p.a.handle_timer(49.9)
    assert not p.a.closed
    p.a.handle_timer(50.0)
    assert p.a.closed and p.a.counters["idle"] == 1
    assert p.a.data_to_send() == b"\x52\x00"  # SHUTDOWN, reason idle timeout
    assert p.a.events()[-1] == SessionClosed("idle")
    assert p.a.next_deadline() is None


def test_idle_timeout_shutdown() -> None:
    p = Pair(keepalive=0, a_idle_timeout=60.0)
    assert p.a.next_deadline() == 60.0
    p.a.send_bundle(b"data", 30.0)
    p.pump(30.0)
    assert p.a.next_deadline() == 90.0
    p.a.handle_timer(90.0)
    p.pump(90.0)
    assert p.a.closed and p.b.closed
    assert p.ev["b"][-1] == SessionClosed("peer shutdown: idle timeout")


def test_shutdown_with_reconnect_delay() -> None:
    p = Pair()
    p.a.close("busy", 5.0, reconnect_after=30)
    assert p.a.closed
    out = p.a.data_to_send()
    assert out == shutdown_message(0x02, 30) == b"\x53\x02\x1e"
    p.b.receive_data(out, 5.0)
    assert p.b.events() == [SessionClosed("peer shutdown: busy", (), 30.0)]
    assert p.b.closed and p.b.data_to_send() == b"\x50"


def test_eof_mid_transfer_lists_unacked() -> None:
    p = Pair()
    first = p.a.send_bundle(b"one", 1.0)
    p.pump(1.0)
    second = p.a.send_bundle(b"two" * 1000, 2.0)
    third = p.a.send_bundle(b"three", 2.0)
    p.a.data_to_send()  # lost with the connection
    p.a.receive_data(b"", 3.0)
    closed = of(p.a.events(), SessionClosed)
    assert closed == [SessionClosed("peer closed", (second, third))]
    assert of(p.ev["a"], BundleAcked) == [BundleAcked(first)]


def test_bundles_queued_before_session_up_are_sent_after() -> None:
    a = Tcpcl3Session("ipn:1.0", active=True)
    tid = a.send_bundle(b"early", 0.0)
    header = a.data_to_send()
    assert header[:4] == b"dtn!" and b"early" not in header
    a.receive_data(contact_header(flags=0), 0.0)
    assert a.data_to_send() == segment(b"early")
    assert BundleAcked(tid) in a.events()
    b = Tcpcl3Session("ipn:1.0", active=True)
    b.send_bundle(b"never", 0.0)
    b.receive_data(b"", 1.0)
    assert b.events()[-1].unacked == (1,)


def test_refusal_of_oversized_bundle() -> None:
    p = Pair(segment_size=32_000, b_max_bundle_size=100_000)
    big = p.a.send_bundle(b"\xaa" * 200_000, 1.0)
    small = p.a.send_bundle(b"small", 1.0)
    p.pump(1.0)
    assert of(p.ev["a"], BundleRefused) == [BundleRefused(big, "resources exhausted")]
    assert of(p.ev["a"], BundleAcked) == [BundleAcked(small)]
    assert of(p.ev["b"], BundleReceived) == [BundleReceived(b"small")]
    assert p.b.counters["refused"] == 1 and not p.a.closed and not p.b.closed
    assert p.a.queued_bytes == 0


def test_oversized_bundle_without_refusal_shuts_down() -> None:
    p = Pair(segment_size=32_000, a_allow_refusal=False, b_max_bundle_size=100_000)
    p.a.send_bundle(b"\xaa" * 200_000, 1.0)
    p.pump(1.0)
    assert p.b.closed and p.b.counters["bundle_too_large"] == 1
    assert of(p.ev["b"], BundleReceived) == []
    assert p.ev["a"][-1] == SessionClosed("peer shutdown", (1,))


# --- hostile input ---


def passive(**kw: object) -> Tcpcl3Session:
    s = Tcpcl3Session("ipn:4.0", active=False, **kw)  # type: ignore[arg-type]
    s.data_to_send()
    return s


@pytest.mark.parametrize(
    ("stream", "counter", "reason", "reply"),
    [
        (b"http/1.1 GET", "bad_magic", "bad magic", b""),
        (b"\x13\x05hello", "bad_magic", "bad magic", b""),  # data before the contact header
        (b"dtn!\x04\x01\x00\x0a", "version_mismatch", "version mismatch", b"\x52\x01"),
        (b"dtn!\x02", "version_mismatch", "version mismatch", b"\x52\x01"),
        (b"dtn!\x03\x01\x00\x0a" + b"\xff" * 11, "bad_sdnv", "SDNV", b"\x50"),
        (b"dtn!\x03\x01\x00\x0a\x88\x01", "eid_too_long", "EID of 1025 bytes", b"\x50"),
        (contact_header() + b"\x10" + b"\xff" * 11, "bad_sdnv", "SDNV", b"\x50"),
        (contact_header() + b"\x13\x81\x80\x80\x80\x00", "segment_too_long", None, b"\x50"),
        (contact_header() + b"\x70", "unknown_type", "unknown message type 7", b"\x50"),
        (contact_header() + b"\x00", "unknown_type", "unknown message type 0", b"\x50"),
        (contact_header() + segment(b"ab", 0x1), "bad_segment_order", None, b"\x50"),
        (contact_header() + segment(b"ab", 0x0), "bad_segment_order", None, b"\x50"),
        (contact_header() + segment(b"a", 0x2) * 2, "bad_segment_order", None, b"\x20\x01\x50"),
        (contact_header() + b"\x20\x01", "unexpected_ack", None, None),
    ],
)
def test_hostile_input(
    stream: bytes, counter: str, reason: str | None, reply: bytes | None
) -> None:
    s = passive(max_bundle_size=1 << 20)
    s.receive_data(stream, 1.0)
    assert s.counters[counter] == 1
    if reply is None:  # tolerated: counted, session goes on
        assert not s.closed
        return
    assert s.closed
    closed = s.events()[-1]
    assert isinstance(closed, SessionClosed)
    assert closed.reason.startswith(reason or "")
    assert s.data_to_send() == reply
    s.receive_data(stream, 2.0)  # after the end: ignored, still no exception
    assert s.events() == []


def test_ack_beyond_length_closes() -> None:
    p = Pair()
    p.a.send_bundle(b"abc", 1.0)
    p.a.data_to_send()
    p.a.receive_data(b"\x20\x04", 1.0)
    assert p.a.closed and p.a.counters["bad_ack"] == 1


def test_header_timeout() -> None:
    s = passive(header_timeout=5.0)
    assert s.next_deadline() == 0.0  # no clock seen yet: asks for a call now
    s.handle_timer(100.0)
    assert s.next_deadline() == 105.0
    s.receive_data(b"dtn!\x03", 101.0)
    s.handle_timer(104.9)
    assert not s.closed
    s.handle_timer(105.0)
    assert s.closed and s.counters["header_timeout"] == 1
    assert s.events() == [SessionClosed("header timeout")]


def test_byte_at_a_time_ion_session() -> None:
    rec = VECTORS["ion_tcpcl"]
    s = listener_for(rec)
    s.data_to_send()
    stream = b"".join(
        bytes.fromhex(m["hex"]) for m in rec["transcript"] if m["direction"] == "peer->listener"
    )
    out = bytearray()
    for i in range(len(stream)):
        s.receive_data(stream[i : i + 1], 1.0)
        out += s.data_to_send()
    assert out == bytes.fromhex("2059" + "20a757")
    got = [e.data.hex() for e in of(s.events(), BundleReceived)]
    assert got == [b["hex"] for b in rec["bundles"]]
    assert not s.closed and len(s._buf) == 0


def test_buffering_is_bounded() -> None:
    s = passive(max_bundle_size=1 << 30)
    s.receive_data(contact_header(), 0.0)
    s.receive_data(b"\x12\x83\x80\x80\x80", 0.0)  # start of a 768 MiB segment: header only
    assert len(s._buf) == 5
    s.receive_data(b"\x00" + b"z" * 1000, 0.0)
    assert len(s._buf) == 0 and s._rx_len == 1000 and not s.closed


# --- fuzzing ---


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([contact_header(), contact_header(flags=0, keepalive=0), b"dtn!"]),
    junk=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_fuzz_after_contact_header_never_raises(
    prefix: bytes, junk: bytes, cuts: list[int]
) -> None:
    s = passive(max_bundle_size=4096)
    s.receive_data(prefix, 0.0)
    edges = sorted({0, len(junk), *(c for c in cuts if c < len(junk))})
    for lo, hi in zip(edges, edges[1:], strict=False):
        s.receive_data(junk[lo:hi], 1.0)
        s.handle_timer(1.0)
    assert s.counters["internal_error"] == 0
    assert len(s._buf) < 1100


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_chunking_gives_same_bundles(data: st.DataObject) -> None:
    bundles = data.draw(st.lists(st.binary(max_size=400), min_size=1, max_size=6))
    seg = data.draw(st.integers(1, 150))
    a = Tcpcl3Session("ipn:1.0", active=True, segment_size=seg)
    stream = bytearray(a.data_to_send())
    a.receive_data(contact_header(), 0.0)
    for b in bundles:
        a.send_bundle(b, 0.0)
    stream += a.data_to_send() + b"\x40" + shutdown_message(0, 7)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=20))))
    s = passive()
    edges = sorted({0, *cuts, len(stream)})
    acks = bytearray()
    for lo, hi in zip(edges, edges[1:], strict=False):
        s.receive_data(bytes(stream[lo:hi]), 1.0)
        acks += s.data_to_send()
    events = s.events()
    assert [e.data for e in of(events, BundleReceived)] == bundles
    assert events[-1] == SessionClosed("peer shutdown: idle timeout", (), 7.0)
    whole = passive()
    whole.receive_data(bytes(stream), 1.0)
    assert whole.data_to_send() == bytes(acks)
