"""TCPCLv4 (RFC 9174) sans-I/O session: two sessions wired in memory, raw hostile peers, TLS
through memory BIOs, and Hypothesis over bytes and chunking. No sockets, no sleeping."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtn.cla.session import (
    BundleAcked,
    BundleReceived,
    BundleRefused,
    SessionClosed,
    SessionUp,
)
from dtn.cla.tcpcl4 import TRANSITIONS, Ev, State, Tcpcl4Session
from tests.tls_helpers import client_context, make_ca_and_cert, server_context

HEADER = b"dtn!\x04\x00"


class Side:
    def __init__(self, session: Tcpcl4Session) -> None:
        self.s = session
        self.events: list = []
        self.wire: list[bytes] = []  # everything this side wrote

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def collect(self) -> None:
        self.events += self.s.events()


def pump(a: Side, b: Side, now: float = 0.0, chunk: int | None = None) -> None:
    """Move bytes both ways until neither side has anything to say."""
    for _ in range(100_000):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.s.data_to_send()
            if data:
                moved = True
                src.wire.append(data)
                step = chunk or len(data)
                for i in range(0, len(data), step):
                    dst.s.receive_data(data[i : i + step], now)
        a.collect()
        b.collect()
        if not moved:
            return
    raise AssertionError("pump did not settle")


def pair(now: float = 0.0, **kw) -> tuple[Side, Side]:
    akw = {k[2:]: v for k, v in kw.items() if k.startswith("a_")}
    bkw = {k[2:]: v for k, v in kw.items() if k.startswith("b_")}
    a = Side(Tcpcl4Session("dtn://a/", active=True, **akw))
    b = Side(Tcpcl4Session("dtn://b/", active=False, **bkw))
    pump(a, b, now)
    return a, b


def sess_init(node: bytes = b"dtn://raw/", keepalive: int = 0, seg_mru: int = 1 << 20,
              xfer_mru: int = 1 << 20, exts: bytes = b"", node_len: int | None = None) -> bytes:
    return (struct.pack("!BHQQH", 7, keepalive, seg_mru, xfer_mru,
                        len(node) if node_len is None else node_len)
            + node + struct.pack("!I", len(exts)) + exts)


def ext(kind: int, value: bytes, critical: bool = False) -> bytes:
    return struct.pack("!BHH", 1 if critical else 0, kind, len(value)) + value


def segment(flags: int, tid: int, data: bytes, exts: bytes = b"") -> bytes:
    head = struct.pack("!BBQ", 1, flags, tid)
    if flags & 0x02:
        head += struct.pack("!I", len(exts)) + exts
    return head + struct.pack("!Q", len(data)) + data


def raw_passive(**kw) -> tuple[Tcpcl4Session, bytes]:
    """A passive session after a raw peer's contact header and SESS_INIT; what it answered."""
    s = Tcpcl4Session("dtn://b/", active=False, **kw)
    s.receive_data(HEADER + sess_init(), 0.0)
    out = s.data_to_send()
    assert s.established and any(isinstance(e, SessionUp) for e in s.events())
    return s, out


def closed_reason(events: list) -> str:
    closed = [e for e in events if isinstance(e, SessionClosed)]
    assert len(closed) == 1, events
    return closed[0].reason


# -- the transition table ----------------------------------------------------------------


def test_table_reaches_closed_from_every_live_state():
    for state in State:
        if state is not State.CLOSED:
            assert TRANSITIONS[(state, Ev.FAIL)] is State.CLOSED
    assert TRANSITIONS[(State.CONTACT, Ev.HEADER_TLS)] is State.TLS
    assert (State.INIT, Ev.MESSAGE) not in TRANSITIONS  # no transfers before SESS_INIT


# -- two sessions ------------------------------------------------------------------------


def test_one_bundle_is_delivered_and_acked():
    a, b = pair()
    assert a.s.established and b.s.established
    assert a.of(SessionUp) == [SessionUp("dtn://b/")]
    assert b.of(SessionUp) == [SessionUp("dtn://a/")]
    assert a.s.send_bundle(b"hello bundle", 0.0) == 0
    assert a.s.queued_bytes == len(b"hello bundle")
    pump(a, b)
    assert b.of(BundleReceived) == [BundleReceived(b"hello bundle")]
    assert a.of(BundleAcked) == [BundleAcked(0)]
    assert a.s.queued_bytes == 0


def test_many_bundles_both_ways_in_order():
    a, b = pair()
    sent = [bytes([i % 256]) * (i * 37) for i in range(60)]  # includes an empty bundle
    ids = [a.s.send_bundle(x, 0.0) for x in sent]
    back = [b.s.send_bundle(x[::-1] + b"!", 0.0) for x in sent[:10]]
    pump(a, b)
    assert ids == list(range(60)) and back == list(range(10))
    assert [e.data for e in b.of(BundleReceived)] == sent
    assert [e.data for e in a.of(BundleReceived)] == [x[::-1] + b"!" for x in sent[:10]]
    assert [e.transfer_id for e in a.of(BundleAcked)] == ids
    assert b.s.counters["bundles acked"] == 10


def test_five_mib_bundle_respects_the_peers_segment_mru():
    a = Side(Tcpcl4Session("dtn://a/", active=True))
    b = Side(Tcpcl4Session("dtn://b/", active=False, segment_mru=64 * 1024))
    big = bytes(range(256)) * (5 * 4096)  # 5 MiB, queued before the session is up
    assert a.s.send_bundle(big, 0.0) == 0
    pump(a, b)
    assert [e.data for e in b.of(BundleReceived)] == [big]
    assert a.of(BundleAcked) == [BundleAcked(0)]
    assert a.s.counters["segments sent"] == 80
    assert b.s.counters["segments received"] == 80


def test_keepalive_and_idle_on_virtual_time():
    a, b = pair(a_keepalive=5, b_keepalive=10)
    assert a.s.keepalive == b.s.keepalive == 5
    assert a.s.next_deadline() == 5.0
    a.s.handle_timer(5.0)
    assert a.s.data_to_send() == b"\x04"
    b.s.receive_data(b"\x04", 5.0)
    assert b.s.counters["keepalives received"] == 1
    b.s.handle_timer(5.0)
    assert b.s.data_to_send() == b"\x04"  # b sent nothing since t=0 either
    # b's keepalive is lost; a last heard from b at t=0: idle at 2 x 5 s
    assert a.s.next_deadline() == 10.0
    a.s.handle_timer(9.9)
    assert not a.s.closed
    a.s.handle_timer(10.0)
    a.collect()
    assert a.s.closed and closed_reason(a.events).startswith("idle")
    assert a.s.data_to_send() == b"\x05\x00\x01"  # SESS_TERM, idle timeout
    assert a.s.counters["idle"] == 1


def test_explicit_idle_timeout_without_keepalives():
    a, b = pair(a_keepalive=0, a_idle_timeout=3.0)
    assert a.s.keepalive == 0 and a.s.next_deadline() == 3.0
    a.s.handle_timer(3.0)
    a.collect()
    assert closed_reason(a.events).startswith("idle")


def test_sess_term_exchange():
    a, b = pair()
    a.s.close("shutting down", 1.0)
    assert a.s.state is State.ENDING
    term = a.s.data_to_send()
    assert term == b"\x05\x00\x00"
    b.s.receive_data(term, 1.0)
    assert b.s.data_to_send() == b"\x05\x01\x00"  # the REPLY
    b.collect()
    assert b.s.closed and "peer ended" in closed_reason(b.events)
    a.s.receive_data(b"\x05\x01\x00", 1.0)
    a.collect()
    assert a.s.closed and closed_reason(a.events) == "shutting down"


def test_sess_term_lets_a_transfer_in_flight_finish():
    a, b = pair()
    a.s.send_bundle(b"x" * 5000, 0.0)
    data = a.s.data_to_send()
    a.s.close("bye", 0.0)
    b.s.receive_data(data + a.s.data_to_send(), 0.0)
    pump(a, b)
    assert b.of(BundleReceived) == [BundleReceived(b"x" * 5000)]
    assert a.of(BundleAcked) == [BundleAcked(0)]
    assert a.s.closed and b.s.closed
    assert a.of(SessionClosed)[0].unacked == ()


def test_new_transfer_after_sess_term_is_refused():
    s, _ = raw_passive()
    s.close("bye", 0.0)
    assert s.data_to_send() == b"\x05\x00\x00"
    s.receive_data(segment(0x03, 0, b"late"), 0.0)
    assert s.data_to_send() == b"\x03\x06" + struct.pack("!Q", 0)  # session terminating
    assert s.events() == [] and not s.closed
    s.receive_data(b"\x05\x01\x00", 0.0)
    assert s.closed and s.events() == [SessionClosed("bye")]


def test_close_times_out_without_a_reply():
    a, b = pair(a_header_timeout=4.0, a_keepalive=0)
    a.s.send_bundle(b"never acked", 0.0)
    a.s.close("bye", 1.0)
    assert a.s.next_deadline() == 5.0
    a.s.handle_timer(5.0)
    a.collect()
    assert a.s.closed and a.of(SessionClosed)[0].unacked == (0,)
    assert a.s.send_bundle(b"late", 6.0) == 1
    assert a.s.events() == [BundleRefused(1, "session closing")]


def test_unacked_transfers_listed_on_eof():
    a, b = pair()
    for i in range(3):
        a.s.send_bundle(b"bundle %d" % i, 0.0)
    a.s.data_to_send()  # lost with the connection
    a.s.receive_data(b"", 0.0)
    a.collect()
    assert a.s.closed
    assert a.of(SessionClosed) == [SessionClosed("EOF: the peer closed the connection",
                                                 (0, 1, 2))]
    assert a.s.queued_bytes == 0 and a.s.counters["eof"] == 1


def test_bundle_above_the_peers_transfer_mru_is_refused_locally():
    a, b = pair(b_transfer_mru=1000)
    assert a.s.send_bundle(b"y" * 1001, 0.0) == 0
    assert a.s.send_bundle(b"y" * 1000, 0.0) == 1
    pump(a, b)
    assert a.of(BundleRefused) == [BundleRefused(0, "too big for peer")]
    assert a.of(BundleAcked) == [BundleAcked(1)]
    assert [len(e.data) for e in b.of(BundleReceived)] == [1000]


def test_header_timeout():
    s = Tcpcl4Session("dtn://b/", active=False, header_timeout=2.0, now=10.0)
    assert s.next_deadline() == 12.0
    s.handle_timer(12.0)
    assert s.closed and closed_reason(s.events()) == "timeout waiting for contact header"
    a, b = pair(a_header_timeout=2.0)  # once up, the header timeout no longer applies
    a.s.handle_timer(2.5)
    assert a.s.established


# -- a raw peer: refusals and extensions ----------------------------------------------------


def test_receiver_refuses_a_transfer_above_its_mru_and_drops_its_segments():
    s, _ = raw_passive(transfer_mru=100)
    length = ext(1, struct.pack("!Q", 500))
    s.receive_data(segment(0x02, 0, b"a" * 50, length) + segment(0x01, 0, b"b" * 50), 0.0)
    assert s.data_to_send() == b"\x03\x02" + struct.pack("!Q", 0)  # XFER_REFUSE no resources
    assert s.events() == [] and s.counters["segments dropped"] == 1
    # no Transfer Length: refused when the bytes pass the MRU
    s.receive_data(segment(0x02, 1, b"c" * 60) + segment(0x01, 1, b"d" * 60), 0.0)
    out = s.data_to_send()
    assert out.endswith(b"\x03\x02" + struct.pack("!Q", 1)) and s.events() == []
    assert out.startswith(struct.pack("!BBQQ", 2, 0x02, 1, 60))  # the first one was acked
    s.receive_data(segment(0x03, 2, b"fine"), 0.0)
    assert s.events() == [BundleReceived(b"fine")]


def test_acks_copy_flags_and_carry_cumulative_length():
    s, _ = raw_passive()
    s.receive_data(segment(0x02, 7, b"ab") + segment(0, 7, b"cd") + segment(0x01, 7, b"e"), 0.0)
    assert s.data_to_send() == b"".join(struct.pack("!BBQQ", 2, f, 7, n)
                                        for f, n in ((2, 2), (0, 4), (1, 5)))
    assert s.events() == [BundleReceived(b"abcde")]


def test_unknown_critical_transfer_extension_is_refused():
    s, _ = raw_passive()
    s.receive_data(segment(0x03, 0, b"zz", ext(0x4242, b"?", critical=True)), 0.0)
    assert s.data_to_send() == b"\x03\x05" + struct.pack("!Q", 0)  # extension failure
    assert s.events() == [] and s.established
    s.receive_data(segment(0x03, 1, b"ok", ext(0x4242, b"?")), 0.0)  # not critical: fine
    assert s.events() == [BundleReceived(b"ok")]


def test_unknown_critical_session_extension_ends_the_session():
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(HEADER + sess_init(exts=ext(0x99, b"x", critical=True)), 0.0)
    assert s.closed and "critical session extension" in closed_reason(s.events())
    assert s.data_to_send().endswith(b"\x05\x00\x04")  # SESS_TERM contact failure


def test_unknown_non_critical_session_extension_is_ignored():
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(HEADER + sess_init(exts=ext(0x99, b"x") + ext(0x98, b"")), 0.0)
    assert s.established and s.events() == [SessionUp("dtn://raw/")]
    assert s.counters["session extensions ignored"] == 2


def test_sender_is_refused_by_peer():
    a, b = pair()
    a.s.send_bundle(b"q" * 10, 0.0)
    a.s.data_to_send()
    a.s.receive_data(b"\x03\x04" + struct.pack("!Q", 0), 0.0)
    assert a.s.events() == [BundleRefused(0, "peer refused: not acceptable")]
    a.s.send_bundle(b"r", 0.0)
    a.s.receive_data(b"\x03\x01" + struct.pack("!Q", 1), 0.0)  # completed = acked
    assert a.s.events() == [BundleAcked(1)]


# -- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_paths(tmp_path_factory):
    return make_ca_and_cert(tmp_path_factory.mktemp("tls"))


def tls_pair(paths, client_paths=None):
    a = Side(Tcpcl4Session("dtn://a/", active=True,
                           ssl_context=client_context(client_paths or paths),
                           server_hostname="localhost"))
    b = Side(Tcpcl4Session("dtn://b/", active=False, ssl_context=server_context(paths)))
    pump(a, b)
    return a, b


def test_bundles_flow_through_tls(tls_paths):
    a, b = tls_pair(tls_paths)
    assert a.s.established and b.s.established
    assert a.s.counters["tls sessions"] == b.s.counters["tls sessions"] == 1
    secret = b"top secret bundle payload " * 100
    a.s.send_bundle(secret, 0.0)
    b.s.send_bundle(b"reply", 0.0)
    a.s.send_bundle(b"z" * 300_000, 0.0)
    pump(a, b, chunk=1000)
    assert [e.data for e in b.of(BundleReceived)] == [secret, b"z" * 300_000]
    assert a.of(BundleReceived) == [BundleReceived(b"reply")]
    assert a.of(BundleAcked) == [BundleAcked(0), BundleAcked(1)]
    assert a.of(SessionUp) == [SessionUp("dtn://b/")]
    wire = b"".join(a.wire)
    assert wire.startswith(b"dtn!\x04\x01") and b"top secret" not in wire
    assert b"dtn://a/" not in wire  # SESS_INIT went inside TLS
    a.s.close("done", 1.0)
    pump(a, b)
    assert a.s.closed and b.s.closed


def test_tls_byte_at_a_time(tls_paths):
    a = Side(Tcpcl4Session("dtn://a/", active=True, ssl_context=client_context(tls_paths),
                           server_hostname="localhost"))
    b = Side(Tcpcl4Session("dtn://b/", active=False, ssl_context=server_context(tls_paths)))
    a.s.send_bundle(b"tiny steps" * 30, 0.0)
    pump(a, b, chunk=1)
    assert b.of(BundleReceived) == [BundleReceived(b"tiny steps" * 30)]
    assert a.of(BundleAcked) == [BundleAcked(0)]


def test_tls_client_with_another_ca_is_closed(tls_paths, tmp_path):
    other = make_ca_and_cert(tmp_path / "other", ca_name="another CA")
    a, b = tls_pair(tls_paths, client_paths=other)
    assert a.s.closed and b.s.closed
    assert closed_reason(a.events).startswith("TLS: certificate verify failed")
    assert closed_reason(b.events).startswith("TLS")
    assert a.s.counters["tls failed"] == 1 and b.s.counters["tls failed"] == 1


def test_tls_required_but_peer_does_not_offer_it(tls_paths):
    a = Side(Tcpcl4Session("dtn://a/", active=True))
    b = Side(Tcpcl4Session("dtn://b/", active=False, ssl_context=server_context(tls_paths)))
    pump(a, b)
    assert b.s.closed and closed_reason(b.events).startswith("contact failure")
    assert b.s.counters["tls required"] == 1
    assert b"\x05\x00\x04" in b"".join(b.wire)  # SESS_TERM contact failure
    assert not a.s.established


def test_tls_offered_by_peer_but_not_required_here_goes_plain():
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(b"dtn!\x04\x01" + sess_init(), 0.0)
    assert s.data_to_send().startswith(HEADER + b"\x07")  # our header, then SESS_INIT, plain
    assert s.established and s.counters["tls sessions"] == 0


def test_client_needs_a_server_hostname(tls_paths):
    with pytest.raises(ValueError, match="server_hostname"):
        Tcpcl4Session("dtn://a/", active=True, ssl_context=client_context(tls_paths))


def test_active_side_requiring_tls_closes_against_a_plain_peer(tls_paths):
    a = Side(Tcpcl4Session("dtn://a/", active=True, ssl_context=client_context(tls_paths),
                           server_hostname="localhost"))
    b = Side(Tcpcl4Session("dtn://b/", active=False))
    pump(a, b)
    assert a.s.closed and b.s.closed  # a requires TLS, b does not offer it
    assert a.s.counters["tls required"] == 1


# -- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "key"), [
    (b"GET / HTTP/1.1\r\n", "bad magic"),
    (b"dtx!\x04\x00", "bad magic"),
    (sess_init(), "bad magic"),  # data before the contact header
    (b"dtn!\x03\x00", "version mismatch"),
])
def test_bad_contact_headers_close(data, key):
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(data, 0.0)
    assert s.closed and s.counters[key] == 1
    assert len(s.events()) == 1


def test_version_mismatch_answers_with_header_and_sess_term():
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(b"dtn!\x03\x00", 0.0)
    assert s.data_to_send() == HEADER + b"\x05\x00\x02"


@pytest.mark.parametrize(("data", "key"), [
    (sess_init(node=b"", node_len=60000), "node id too long"),
    (struct.pack("!BHQQH", 7, 0, 1, 1, 1) + b"n" + struct.pack("!I", 1 << 31),
     "extensions too long"),
    (sess_init(exts=b"\x00\x00\x01\x00\x09abc"), "bad extension"),
    (sess_init(node=b"\xff\xfe"), "bad node id"),
    (sess_init() + struct.pack("!BBQ", 1, 3, 0) + struct.pack("!I", 0) + struct.pack("!Q", 1 << 63),
     "segment too big"),
    (sess_init() + struct.pack("!BBQ", 1, 2, 0) + struct.pack("!I", 0xFFFFFFFF),
     "extensions too long"),
])
def test_absurd_lengths_close(data, key):
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(HEADER + data, 0.0)
    assert s.closed and s.counters[key] == 1, s.counters
    assert s.counters["internal error"] == 0


def test_segment_above_our_mru_closes_before_its_data_arrives():
    s, _ = raw_passive(segment_mru=1000)
    s.receive_data(segment(0x03, 0, b"x" * 1001)[:30], 0.0)
    assert s.closed and s.counters["segment too big"] == 1
    assert s.data_to_send() == b"\x05\x00\x05"


def test_at_most_one_partial_message_is_buffered():
    s, _ = raw_passive(segment_mru=1000)
    stream = b"".join(segment(0x02 if i == 0 else 0, 0, bytes([i]) * 1000) for i in range(10))
    s.receive_data(stream + segment(0x01, 0, b"e" * 1000)[:700], 0.0)
    assert len(s._buf) == 700 and s.counters["segments received"] == 10
    s.receive_data(segment(0x01, 0, b"e" * 1000)[700:], 0.0)
    assert len(s._buf) == 0 and len(s.events()[0].data) == 11_000


def test_unknown_message_type_is_rejected():
    s, _ = raw_passive()
    s.receive_data(b"\x09\x00\x00", 0.0)
    assert s.data_to_send().startswith(b"\x06\x01\x09")  # MSG_REJECT unknown type, header 9
    assert s.counters["unknown message type"] == 1 and s.closed


def test_transfer_before_session_init_is_unexpected():
    s = Tcpcl4Session("dtn://b/", active=False)
    s.receive_data(HEADER + segment(0x03, 0, b"early") + b"\x04", 0.0)
    out = s.data_to_send()
    assert out.endswith(b"\x06\x03\x01\x06\x03\x04")  # MSG_REJECT unexpected, twice
    assert not s.established and s.counters["unexpected message"] == 2 and s.events() == []


def test_byte_at_a_time_session_works():
    a = Side(Tcpcl4Session("dtn://a/", active=True))
    b = Side(Tcpcl4Session("dtn://b/", active=False))
    a.s.send_bundle(b"one byte at a time" * 20, 0.0)
    pump(a, b, chunk=1)
    assert b.of(BundleReceived) == [BundleReceived(b"one byte at a time" * 20)]
    assert a.of(BundleAcked) == [BundleAcked(0)]


# -- Hypothesis ----------------------------------------------------------------------------


_pieces = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda t, rest: bytes([t]) + rest, st.integers(1, 7), st.binary(max_size=40)),
    st.builds(segment, st.integers(0, 3), st.integers(0, 3), st.binary(max_size=300),
              st.sampled_from([b"", ext(1, struct.pack("!Q", 9000)), ext(7, b"x", True)])),
    st.sampled_from([b"\x04", b"\x05\x00\x00", b"\x05\x01\x03", b"\x06\x01\x09",
                     struct.pack("!BBQQ", 2, 1, 0, 5), b"\x03\x04" + bytes(8), sess_init()]),
)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(_pieces, max_size=12),
       st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_arbitrary_bytes_after_the_contact_header_never_raise(init_first, pieces, cuts):
    s = Tcpcl4Session("dtn://b/", active=False, segment_mru=4096, transfer_mru=8192)
    s.send_bundle(b"ours", 0.0)
    stream = HEADER + (sess_init() if init_first else b"") + b"".join(pieces)
    pos = 0
    for cut in cuts:
        s.receive_data(stream[pos : pos + cut], 0.0)
        pos += cut
    s.receive_data(stream[pos:], 0.0)
    s.handle_timer(100.0)
    s.receive_data(b"", 101.0)
    assert s.closed and s.counters["internal error"] == 0
    assert sum(isinstance(e, SessionClosed) for e in s.events()) == 1


def _recorded_stream() -> tuple[bytes, list[bytes]]:
    bundles = [b"", b"a" * 3000, bytes(range(256)) * 40, b"tail"]
    a = Side(Tcpcl4Session("dtn://a/", active=True))
    b = Side(Tcpcl4Session("dtn://b/", active=False, segment_mru=1000))
    for x in bundles:
        a.s.send_bundle(x, 0.0)
    pump(a, b)
    a.s.handle_timer(15.0)  # a keepalive in the stream too
    pump(a, b)
    assert [e.data for e in b.of(BundleReceived)] == bundles
    return b"".join(a.wire), bundles


STREAM, BUNDLES = _recorded_stream()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_of_a_valid_stream_gives_the_same_bundles(cuts):
    s = Tcpcl4Session("dtn://b/", active=False, segment_mru=1000)
    bounds = [0, *sorted(cuts), len(STREAM)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi > lo:  # b"" would be EOF
            s.receive_data(STREAM[lo:hi], 0.0)
    got = [e.data for e in s.events() if isinstance(e, BundleReceived)]
    assert got == BUNDLES and s.established and s.counters["keepalives received"] == 1
