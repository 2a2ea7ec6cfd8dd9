"""RFC 9171 section 5 (bundle processing) and the section 6.1 status reports it triggers, one
test per row of the section 5 table in docs/conformance.md, through the agent on virtual time."""

from __future__ import annotations

import pytest
from test_agent import lone_agent
from test_agent_harness import T0, chain, pair
from test_fragment import fragmenting_chain

from dtn.agent import Agent, Deliver, FragmentError, fragment
from dtn.api.protocol import SCHEMA
from dtn.bundle import (
    BlockFlags,
    BlockType,
    Bundle,
    BundleFlags,
    CanonicalBlock,
    CRCType,
    ReasonCode,
    decode_hop_count,
    decode_previous_node,
    decode_status_report,
)
from dtn.bundle.admin import DELETED, DELIVERED, RECEIVED
from dtn.clock import dtn_time_ms


def _sent(net, src: str, dst: str) -> list[Bundle]:
    return [Bundle.decode(data) for _, s, d, data in net.sent if (s, d) == (src, dst)]


def _reports(deliveries: list[Deliver]) -> list:
    return [decode_status_report(d.payload) for d in deliveries if d.is_admin_record]


def _asserted(report) -> list[int]:
    return [i for i, at in enumerate(report.assertions) if at is not None]


def _incoming(payload: bytes = b"x", flags: int = 0, **fields) -> Bundle:
    return Bundle.create(
        "ipn:2.1", "ipn:1.1", payload, creation_time=dtn_time_ms(T0), flags=flags, **fields
    )


def test_5_1_status_reports_can_be_disabled(tmp_path):
    agent = lone_agent(tmp_path, status_reports=False)
    every = BundleFlags.REPORT_RECEPTION | BundleFlags.REPORT_DELIVERY | BundleFlags.REPORT_DELETION
    expired = Bundle.create(
        "ipn:2.1", "ipn:1.1", b"late", creation_time=dtn_time_ms(T0 - 100), lifetime=50_000,
        flags=every, report_to="ipn:1.9",
    )
    agent.receive(expired.encode(), "b", T0)
    agent.receive(_damaged_payload(every, report_to="ipn:1.9", sequence=1), "b", T0)
    agent.receive(_incoming(b"kept", every, report_to="ipn:1.9", sequence=2).encode(), "b", T0)
    (delivery,) = [a for a in agent.next_actions() if isinstance(a, Deliver)]
    assert delivery.payload == b"kept"
    agent.delivered(delivery.delivery_id, T0)
    assert agent.next_actions() == []
    assert agent.counters["status_reports"] == 0


def test_5_2_transmission_reaches_the_destination(tmp_path):
    net = pair(tmp_path)
    bundle_id = net.nodes["a"].agent.submit(b"hello", "ipn:2.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    assert [(d.bundle_id, d.payload) for d in net.nodes["b"].delivered] == [(bundle_id, b"hello")]


@pytest.mark.parametrize("source", ["ipn:9.1", "dtn:none"])
def test_5_2_source_is_an_endpoint_of_this_node(tmp_path, source):
    agent = lone_agent(tmp_path)
    foreign = Bundle.create(source, "ipn:2.1", b"x", creation_time=dtn_time_ms(T0),
                            flags=BundleFlags.MUST_NOT_FRAGMENT)
    with pytest.raises(ValueError, match="not an endpoint of ipn:1.0"):
        agent.submit_bundle(foreign, T0)
    own = Bundle.create("ipn:1.3", "ipn:2.1", b"x", creation_time=dtn_time_ms(T0))
    assert agent.submit_bundle(own, T0) == own.id


def test_5_4_forwarding_increments_hop_count(tmp_path):
    net = chain(tmp_path)
    net.nodes["a"].agent.submit(b"hop", "ipn:3.1", net.now, hop_limit=5)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 10)
    counts = [
        decode_hop_count(b.block_of_type(BlockType.HOP_COUNT).data).count
        for b in _sent(net, "a", "b") + _sent(net, "b", "c")
    ]
    assert counts == [1, 2]


def test_5_4_forwarding_replaces_previous_node(tmp_path):
    net = chain(tmp_path)
    net.nodes["a"].agent.submit(b"prev", "ipn:3.1", net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 10)
    ((to_b,), (to_c,)) = _sent(net, "a", "b"), _sent(net, "b", "c")
    previous = [
        str(decode_previous_node(b.block_of_type(BlockType.PREVIOUS_NODE).data))
        for b in (to_b, to_c)
    ]
    assert previous == ["ipn:1.0", "ipn:2.0"]
    assert len([b for b in to_c.blocks if b.block_type == BlockType.PREVIOUS_NODE]) == 1


def _damaged_payload(flags: int = 0, **fields) -> bytes:
    """A bundle whose payload block fails its CRC, its primary block intact."""
    data = bytearray(_incoming(b"payload bytes", flags, **fields).encode())
    data[data.index(b"payload bytes")] ^= 0x01
    return bytes(data)


def _events_and_reports(agent, data: bytes) -> tuple[list[str], list]:
    agent.receive(data, "b", T0)
    actions = agent.next_actions()
    events = [a.name for a in actions if not isinstance(a, Deliver)]
    return events, _reports([a for a in actions if isinstance(a, Deliver)])


def test_5_6_reception_crc_failure_deletes(tmp_path):
    agent = lone_agent(tmp_path)
    agent.receive(_damaged_payload(report_to="ipn:1.9"), "b", T0)
    (event,) = agent.next_actions()
    assert event.name == "malformed" and "CRC" in event.detail
    assert agent.store.bundle_count == 0


def test_5_6_step_3_unintelligible_block_deleted_with_report_when_requested(tmp_path):
    agent = lone_agent(tmp_path)
    asked = BundleFlags.REPORT_DELETION | BundleFlags.REPORT_RECEPTION
    events, reports = _events_and_reports(agent, _damaged_payload(asked, report_to="ipn:1.9"))
    assert events == ["malformed"]
    # Step 2's reception report comes first, then §5.10's deletion report.
    assert [(_asserted(r), r.reason) for r in reports] == [
        ([RECEIVED], ReasonCode.NO_INFORMATION),
        ([DELETED], ReasonCode.BLOCK_UNINTELLIGIBLE),
    ]
    assert {(str(r.source), r.creation_time) for r in reports} == {("ipn:2.1", dtn_time_ms(T0))}
    assert agent.store.bundle_count == 2  # the two reports; the bundle is gone


def test_5_6_step_3_malformed_cbor_after_the_primary_block_is_reported(tmp_path):
    agent = lone_agent(tmp_path)
    whole = _incoming(b"cut short", BundleFlags.REPORT_DELETION, report_to="ipn:1.9").encode()
    events, reports = _events_and_reports(agent, whole[:-5])
    assert events == ["malformed"]
    assert [(_asserted(r), r.reason) for r in reports] == [
        ([DELETED], ReasonCode.BLOCK_UNINTELLIGIBLE)
    ]


def test_5_6_step_3_no_report_unless_the_primary_block_checks(tmp_path):
    agent = lone_agent(tmp_path)
    data = bytearray(_incoming(b"x", BundleFlags.REPORT_DELETION, report_to="ipn:1.9").encode())
    # The report-to EID becomes ipn:1.8, and the primary block's CRC says so.
    data[data.index(b"\x82\x02\x82\x01\x09") + 4] ^= 0x01
    events, reports = _events_and_reports(agent, bytes(data))
    assert events == ["malformed"] and reports == []
    assert agent.counters["status_reports"] == 0


def test_5_6_step_3_no_report_for_a_primary_block_without_crc(tmp_path):
    agent = lone_agent(tmp_path)
    unchecked = _incoming(b"payload bytes", BundleFlags.REPORT_DELETION, report_to="ipn:1.9",
                          crc_type=CRCType.NONE)
    events, reports = _events_and_reports(agent, unchecked.encode())  # no CRC, no BIB
    assert events == ["malformed"] and reports == []


def test_5_6_step_3_no_report_unless_requested(tmp_path):
    agent = lone_agent(tmp_path)
    events, reports = _events_and_reports(agent, _damaged_payload(report_to="ipn:1.9"))
    assert events == ["malformed"] and reports == []
    assert agent.store.bundle_count == 0


def test_5_6_reception_intact_bundle_is_kept(tmp_path):
    agent = lone_agent(tmp_path)
    agent.receive(_incoming(b"payload bytes").encode(), "b", T0)
    assert [type(a) for a in agent.next_actions()] == [Deliver]
    assert agent.store.bundle_count == 1


def test_5_6_reception_report_only_when_requested(tmp_path):
    (tmp_path / "asked").mkdir()
    (tmp_path / "silent").mkdir()
    asked = lone_agent(tmp_path / "asked")
    asked.receive(_incoming(flags=BundleFlags.REPORT_RECEPTION, report_to="ipn:1.9").encode(),
                  "b", T0)
    reports = _reports([a for a in asked.next_actions() if isinstance(a, Deliver)])
    assert [_asserted(r) for r in reports] == [[RECEIVED]]
    silent = lone_agent(tmp_path / "silent")
    silent.receive(_incoming(report_to="ipn:1.9").encode(), "b", T0)
    assert _reports([a for a in silent.next_actions() if isinstance(a, Deliver)]) == []


def _with_unsupported_block(block_flags: int, flags: int = 0) -> bytes:
    bundle = _incoming(b"x", flags, report_to="ipn:1.9")
    bundle.insert_block(CanonicalBlock(241, 2, b"?", block_flags))
    return bundle.encode()


def test_5_6_step_4_unsupported_block_reports_block_unsupported(tmp_path):
    agent = lone_agent(tmp_path)
    events, reports = _events_and_reports(
        agent, _with_unsupported_block(BlockFlags.REPORT_IF_UNPROCESSABLE)
    )
    assert events == []  # kept, and delivered
    assert [(_asserted(r), r.reason) for r in reports] == [
        ([RECEIVED], ReasonCode.BLOCK_UNSUPPORTED)
    ]


def test_5_6_step_4_unsupported_block_deletes_for_block_unsupported(tmp_path):
    agent = lone_agent(tmp_path)
    events, reports = _events_and_reports(
        agent,
        _with_unsupported_block(BlockFlags.DELETE_BUNDLE_IF_UNPROCESSABLE,
                                BundleFlags.REPORT_DELETION),
    )
    assert events == ["refused"]
    assert [(_asserted(r), r.reason) for r in reports] == [
        ([DELETED], ReasonCode.BLOCK_UNSUPPORTED)
    ]


def test_5_6_step_2_reception_report_precedes_deletion(tmp_path):
    agent = lone_agent(tmp_path)
    expired = Bundle.create(
        "ipn:2.1", "ipn:1.1", b"late", creation_time=dtn_time_ms(T0 - 100), lifetime=50_000,
        flags=BundleFlags.REPORT_RECEPTION | BundleFlags.REPORT_DELETION, report_to="ipn:1.9",
    )
    events, reports = _events_and_reports(agent, expired.encode())
    assert events == ["refused"]
    assert [(_asserted(r), r.reason) for r in reports] == [
        ([RECEIVED], ReasonCode.NO_INFORMATION),
        ([DELETED], ReasonCode.LIFETIME_EXPIRED),
    ]


def test_5_7_local_delivery_once_with_report(tmp_path):
    net = pair(tmp_path)
    net.nodes["a"].agent.submit(
        b"deliver me", "ipn:2.1", net.now, report_to="ipn:1.9", flags=BundleFlags.REPORT_DELIVERY
    )
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    assert [d.payload for d in net.nodes["b"].delivered] == [b"deliver me"]
    assert [_asserted(r) for r in _reports(net.nodes["a"].delivered)] == [[DELIVERED]]


def test_5_7_no_delivery_report_unless_requested(tmp_path):
    net = pair(tmp_path)
    net.nodes["a"].agent.submit(b"quiet", "ipn:2.1", net.now, report_to="ipn:1.9")
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    assert [d.payload for d in net.nodes["b"].delivered] == [b"quiet"]
    assert _reports(net.nodes["a"].delivered) == []


def _split_me() -> Bundle:
    bundle = Bundle.create("ipn:1.5", "ipn:3.1", bytes(range(256)) * 8, creation_time=5000)
    bundle.insert_block(CanonicalBlock(200, 2, b"first only", 0, 2))
    bundle.insert_block(CanonicalBlock(201, 3, b"everywhere", BlockFlags.REPLICATE_IN_FRAGMENTS, 2))
    return bundle


def test_5_8_fragments_follow_the_fragmentation_rules():
    bundle = _split_me()
    pieces = [Bundle.decode(piece.encode()) for piece in fragment(bundle, 700)]  # CRCs re-made
    whole = len(bundle.payload)
    assert len(pieces) > 2 and all(0 < len(p.payload) < whole for p in pieces)
    assert b"".join(p.payload for p in pieces) == bundle.payload
    assert [p.primary.fragment_offset for p in pieces] == [
        sum(len(q.payload) for q in pieces[:i]) for i in range(len(pieces))
    ]
    for piece in pieces:
        assert piece.primary.is_fragment and piece.primary.total_adu_length == whole
        assert piece.primary.crc_type == bundle.primary.crc_type
        assert (piece.primary.source, piece.primary.creation_time, piece.primary.sequence) == (
            bundle.primary.source, bundle.primary.creation_time, bundle.primary.sequence
        )
    assert [b.block_type for b in pieces[0].blocks] == [200, 201, BlockType.PAYLOAD]
    assert all([b.block_type for b in p.blocks] == [201, BlockType.PAYLOAD] for p in pieces[1:])


@pytest.mark.parametrize("payload", [b"", b"x"])
def test_5_8_a_payload_too_short_to_split_is_not_fragmented(payload):
    bundle = Bundle.create("ipn:1.5", "ipn:3.1", payload, creation_time=5000)
    bundle.insert_block(CanonicalBlock(200, 2, bytes(500), 0, 2))
    with pytest.raises(FragmentError, match="cannot be split"):
        fragment(bundle, 300)


def test_5_4_2_forwarding_failure_deletes_an_unsplittable_bundle_with_a_report(tmp_path):
    net = fragmenting_chain(tmp_path, 300)
    a, c = net.nodes["a"], net.nodes["c"]
    bundle = Bundle.create(
        "ipn:1.1", "ipn:3.1", b"", creation_time=dtn_time_ms(T0),
        flags=BundleFlags.REPORT_DELETION, report_to="ipn:1.9",
    )
    bundle.insert_block(CanonicalBlock(200, 2, bytes(500), 0, 2))  # too large for b -> c
    a.agent.submit_bundle(bundle, net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    assert c.delivered == []
    assert net.nodes["b"].agent.counters["refused"] == 1
    assert [(_asserted(r), r.reason) for r in _reports(a.delivered)] == [
        ([DELETED], ReasonCode.NO_KNOWN_ROUTE)
    ]
    assert net.nodes["b"].agent.store.bundle_count == 0


def test_5_9_reassembly_ends_the_fragments_retention(tmp_path):
    net = fragmenting_chain(tmp_path, 700)
    a, c = net.nodes["a"], net.nodes["c"]
    payload = bytes(range(256)) * 12
    a.agent.submit(payload, "ipn:3.1", net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    assert [d.payload for d in c.delivered] == [payload]
    (whole,) = [d.bundle for d in c.delivered]
    assert not whole.primary.is_fragment
    assert c.agent.counters["reassembled"] == 1
    assert c.agent.store.bundle_count == 0  # the fragments went with the delivered whole


def test_5_10_deletion_discards_with_report_when_requested(tmp_path):
    agent = lone_agent(tmp_path)
    doomed = Bundle.create(
        "ipn:2.1", "ipn:1.1", b"late", creation_time=dtn_time_ms(T0 - 100), lifetime=50_000,
        flags=BundleFlags.REPORT_DELETION, report_to="ipn:1.9",
    )
    agent.receive(doomed.encode(), "b", T0)
    actions = agent.next_actions()
    assert [a.name for a in actions if not isinstance(a, Deliver)] == ["refused"]
    (report,) = _reports([a for a in actions if isinstance(a, Deliver)])
    assert _asserted(report) == [DELETED] and report.reason == 1  # lifetime expired
    assert agent.store.bundle_count == 1  # the report only; the bundle is gone


def test_5_10_deletion_without_report_flag_is_silent(tmp_path):
    agent = lone_agent(tmp_path)
    doomed = Bundle.create(
        "ipn:2.1", "ipn:1.1", b"late", creation_time=dtn_time_ms(T0 - 100), lifetime=50_000,
        report_to="ipn:1.9",
    )
    agent.receive(doomed.encode(), "b", T0)
    assert [a.name for a in agent.next_actions()] == ["refused"]
    assert agent.store.bundle_count == 0


def test_6_1_no_report_to_the_null_endpoint(tmp_path):
    agent = lone_agent(tmp_path)
    agent.receive(_incoming(flags=BundleFlags.REPORT_RECEPTION, report_to="dtn:none").encode(),
                  "b", T0)
    assert _reports([a for a in agent.next_actions() if isinstance(a, Deliver)]) == []
    assert agent.counters["status_reports"] == 0


def test_6_1_admin_record_for_this_node_is_consumed_not_delivered(tmp_path):
    net = pair(tmp_path)
    subject = net.nodes["a"].agent.submit(
        b"ack me", "ipn:2.1", net.now, report_to="ipn:1.0", flags=BundleFlags.REPORT_DELIVERY
    )
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    a = net.nodes["a"]
    assert a.delivered == []
    (event,) = [e for e in a.events if e.name == "status_report"]
    assert event.bundle_id.source == subject.source
    assert event.bundle_id.creation_time == subject.creation_time


def test_5_12_no_request_cancels_a_transmission():
    """RFC 9171 §5.12 applies once a transmission can be canceled: neither the agent nor the
    application API offers that, so a bundle once submitted goes until it expires."""
    assert not [name for name in dir(Agent) if "cancel" in name]
    assert not [op for op in SCHEMA if "cancel" in op]


def test_6_2_report_on_a_fragment_names_its_offset_and_length(tmp_path):
    agent = lone_agent(tmp_path)
    (_, second) = fragment(
        _incoming(bytes(600), BundleFlags.REPORT_RECEPTION, report_to="ipn:1.9"), 400
    )
    events, (report,) = _events_and_reports(agent, second.encode())
    assert _asserted(report) == [RECEIVED]
    assert (report.fragment_offset, report.fragment_length) == (
        second.primary.fragment_offset, len(second.payload)
    )
    assert report.fragment_offset > 0
