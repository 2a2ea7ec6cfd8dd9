"""Proactive fragmentation to a link's maximum and reassembly at the destination, including
fragments lost on the way and brought back by custody retransmission."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_agent_harness import T0, chain

from dtn.agent import AgentConfig, FragmentError, Link, fragment, reassemble
from dtn.agent.fragment import Coverage
from dtn.bundle import BlockFlags, BlockType, Bundle, BundleFlags, CanonicalBlock

SOURCE, DESTINATION = "ipn:1.5", "ipn:3.1"


def make(payload: bytes, flags: int = 0) -> Bundle:
    bundle = Bundle.create(
        SOURCE, DESTINATION, payload, creation_time=5000, sequence=3, flags=flags, hop_limit=9
    )
    bundle.insert_block(CanonicalBlock(200, 5, b"first only", 0, 2))
    bundle.insert_block(CanonicalBlock(201, 6, b"everywhere", BlockFlags.REPLICATE_IN_FRAGMENTS, 2))
    return bundle


@settings(max_examples=150)
@given(st.binary(min_size=2, max_size=3000), st.integers(120, 1500))  # RFC 9171 5.8: 0 < N < M
def test_fragments_fit_and_reassemble(payload, max_size):
    bundle = make(payload)
    pieces = fragment(bundle, max_size)
    assert all(len(piece.encode()) <= max_size for piece in pieces)
    decoded = [Bundle.decode(piece.encode()) for piece in pieces]
    assert all(piece.primary.is_fragment for piece in decoded)
    assert sum(len(p.payload) for p in decoded) == len(payload)
    whole = reassemble(list(reversed(decoded)))
    assert whole.encode() == bundle.encode()


def test_only_replicated_blocks_repeat():
    pieces = fragment(make(bytes(2000)), 600)
    assert len(pieces) > 2
    assert [b.block_type for b in pieces[0].blocks] == [10, 200, 201, 1]
    assert all([b.block_type for b in p.blocks] == [201, 1] for p in pieces[1:])


def test_every_fragment_of_a_bundle_without_a_clock_carries_its_age():
    pieces = fragment(Bundle.create(SOURCE, DESTINATION, bytes(2000), creation_time=0), 600)
    assert len(pieces) > 2
    for piece in pieces:  # RFC 9171 4.4.2: each is a bundle of creation time 0
        assert Bundle.decode(piece.encode()).block_of_type(BlockType.BUNDLE_AGE) is not None


def test_fragmenting_a_fragment_keeps_adu_offsets():
    bundle = make(bytes(range(256)) * 8)
    halves = fragment(bundle, 1300)
    quarters = [q for half in halves for q in fragment(half, 500)]
    assert {q.primary.total_adu_length for q in quarters} == {2048}
    assert reassemble(quarters).payload == bundle.payload


def test_must_not_fragment_and_too_small_are_refused():
    with pytest.raises(FragmentError, match="must not"):
        fragment(make(bytes(1000), BundleFlags.MUST_NOT_FRAGMENT), 500)
    with pytest.raises(FragmentError, match="cannot hold"):
        fragment(make(bytes(1000)), 40)


def fragmenting_chain(tmp_path, max_size: int):
    net = chain(tmp_path, owlt=60.0, config=AgentConfig(custody_margin=10.0))
    net.nodes["b"].router.links["c"] = Link("c", owlt=60.0, max_bundle_size=max_size)
    return net


def test_relay_fragments_for_a_small_link_and_destination_reassembles_once(tmp_path):
    net = fragmenting_chain(tmp_path, 700)
    a, b, c = (net.nodes[n] for n in "abc")
    payload = bytes(range(256)) * 20
    bundle_id = a.agent.submit(payload, DESTINATION, net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    seen: list[int] = []
    lost: set[int] = set()

    def lose_three_fragments_once(src, dst, data):
        piece = Bundle.decode(data)
        if src != "b" or not piece.primary.is_fragment:
            return False
        offset = piece.primary.fragment_offset
        if offset not in seen:
            seen.append(offset)
            if seen.index(offset) in (0, 2, 5):  # first copies of three fragments vanish
                lost.add(offset)
                return True
        return False

    net.drop = lose_three_fragments_once
    net.run_until(T0 + 2000)
    assert len(lost) == 3
    assert [(d.bundle_id, d.payload) for d in c.delivered] == [(bundle_id, payload)]
    sizes = [len(data) for _, src, dst, data in net.sent if (src, dst) == ("b", "c")]
    assert max(sizes) <= 700 and len(sizes) > 8
    assert b.agent.counters["fragmented"] == 1
    assert b.agent.counters["retransmissions"] == 3
    assert c.agent.counters["reassembled"] == 1
    assert a.agent.store.bundle_count == b.agent.store.bundle_count == 0


def test_late_fragment_of_a_delivered_bundle_is_a_duplicate(tmp_path):
    net = fragmenting_chain(tmp_path, 700)
    a, c = net.nodes["a"], net.nodes["c"]
    a.agent.submit(bytes(3000), DESTINATION, net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    assert len(c.delivered) == 1
    piece = next(data for _, src, _, data in net.sent if src == "b")
    c.agent.receive(piece, "b", net.now)
    c.agent.next_actions()
    assert c.agent.counters["duplicates"] == 1
    assert len(c.delivered) == 1


def test_unfragmentable_bundle_too_large_for_the_link_is_deleted_with_a_report(tmp_path):
    net = fragmenting_chain(tmp_path, 700)
    a, c = net.nodes["a"], net.nodes["c"]
    a.agent.submit(
        bytes(3000),
        DESTINATION,
        net.now,
        report_to="ipn:1.9",
        flags=BundleFlags.MUST_NOT_FRAGMENT | BundleFlags.REPORT_DELETION,
    )
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    assert c.delivered == []
    reports = [d for d in a.delivered if d.is_admin_record]
    assert len(reports) == 1 and reports[0].endpoint == "ipn:1.9"


def test_a_large_adu_is_reassembled_into_a_file_that_outlives_a_crash(tmp_path):
    net = chain(tmp_path, owlt=60.0, config=AgentConfig(custody_margin=10.0, large_adu=2000))
    net.nodes["b"].router.links["c"] = Link("c", owlt=60.0, max_bundle_size=700)
    a, c = net.nodes["a"], net.nodes["c"]
    c.ack_deliveries = False
    payload = bytes(range(256)) * 20
    a.agent.submit(payload, DESTINATION, net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    (offer,) = c.delivered
    assert offer.payload == b"" and offer.bundle.payload == b""
    assert offer.payload_file.read_bytes() == payload
    assert not offer.bundle.primary.is_fragment
    net.restart("c")  # kill -9 before the application took it: offered again, from the file
    net.run_until(net.now + 1)
    again = c.delivered[-1]
    assert again.delivery_id == offer.delivery_id and again.payload_file == offer.payload_file
    assert c.agent.delivered(offer.delivery_id, net.now)
    c.agent.next_actions()
    assert not offer.payload_file.exists()
    assert list(c.agent.store.payload_dir.iterdir()) == []
    assert c.agent.store.bundle_count == 0


def test_fragment_above_is_a_preference_a_must_not_fragment_bundle_ignores(tmp_path):
    net = chain(tmp_path, owlt=60.0, config=AgentConfig(custody_margin=10.0))
    net.nodes["b"].router.links["c"] = Link("c", owlt=60.0, fragment_above=700)
    a, c = net.nodes["a"], net.nodes["c"]
    cut = bytes(range(256)) * 20
    whole = bytes(reversed(range(256))) * 20
    a.agent.submit(cut, DESTINATION, net.now)
    a.agent.submit(whole, DESTINATION, net.now, flags=BundleFlags.MUST_NOT_FRAGMENT)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 1000)
    to_c = [Bundle.decode(data) for _, src, dst, data in net.sent if (src, dst) == ("b", "c")]
    fragments = [b for b in to_c if b.primary.is_fragment]
    assert fragments and all(len(b.encode()) <= 700 for b in fragments)
    assert [len(b.payload) for b in to_c if not b.primary.is_fragment] == [len(whole)]
    assert sorted(d.payload for d in c.delivered) == sorted([cut, whole])


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 40)), max_size=12),
       st.integers(0, 130))
def test_coverage_is_the_union_of_its_spans(spans, total):
    held = set()
    for offset, length in spans:
        held.update(range(offset, offset + length))
    # Nothing to cover: covered once any span starts at 0 (an empty ADU's one fragment).
    expected = held >= set(range(total)) if total else any(o == 0 for o, _ in spans)
    assert Coverage(spans).covers(total) == expected
    assert Coverage(reversed(spans)).covers(total) == expected  # arrival order does not matter


def arriving(payload: bytes, lifetime: int = 3_600_000) -> Bundle:
    """A bundle from a node without a clock: its age block says it is fresh on arrival."""
    return Bundle.create(SOURCE, DESTINATION, payload, creation_time=0, sequence=3,
                         lifetime=lifetime)


def test_fragments_of_one_adu_cost_no_pass_over_the_others(tmp_path):
    net = chain(tmp_path)
    c = net.nodes["c"]
    payload = bytes(range(256)) * 40
    pieces = fragment(arriving(payload), 300)
    queries = 0
    spans = c.agent.store.fragment_spans

    def counted(adu):
        nonlocal queries
        queries += 1
        return spans(adu)

    c.agent.store.fragment_spans = counted
    for piece in pieces:
        c.agent.receive(piece.encode(), "b", net.now)
    net.run_until(net.now + 1)
    assert len(pieces) > 40
    assert queries == 2  # the first fragment's, and the check against the store at the end
    assert [d.payload for d in c.delivered] == [payload]


def test_fragments_that_expired_are_waited_for_again(tmp_path):
    net = chain(tmp_path)
    c = net.nodes["c"]
    payload = bytes(range(256)) * 8
    first, second, *rest = fragment(arriving(payload, lifetime=60_000), 400)
    for piece in (first, second):
        c.agent.receive(piece.encode(), "b", net.now)
    net.run_until(net.now + 61)  # their lifetime, counted from arrival, ends
    assert c.agent.counters["expired"] == 2
    for piece in rest:
        c.agent.receive(piece.encode(), "b", net.now)
    net.run_until(net.now + 1)
    assert c.delivered == []
    for piece in (first, second):
        c.agent.receive(piece.encode(), "b", net.now)
    net.run_until(net.now + 1)
    assert [d.payload for d in c.delivered] == [payload]
    assert c.agent.counters["reassembled"] == 1
