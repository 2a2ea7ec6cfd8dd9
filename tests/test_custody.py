"""Custody transfer: wire formats, aggregation, retransmission timing, lost and duplicated
signals, refusals, and crashes mid-transfer, on virtual time with real stores."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_agent_harness import T0, chain, is_custody_signal, pair

from dtn.agent import AgentConfig, CustodyBlock, CustodyReason, CustodySignal, Link
from dtn.agent.custody import CUSTODY_BLOCK_TYPE, MAX_SIGNAL_RANGES, RangeSet, SignalAggregator
from dtn.bundle import EID, BlockType, Bundle, BundleError
from dtn.store import Quota

OWLT = 1200.0  # 20 minutes
MARGIN = AgentConfig().custody_margin


def merged(ids: set[int]) -> list[tuple[int, int]]:
    ranges: list[list[int]] = []
    for value in sorted(ids):
        if ranges and ranges[-1][1] == value - 1:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    return [tuple(r) for r in ranges]


# --- wire formats -----------------------------------------------------------------------------


def test_custody_block_round_trip_and_exact_bytes():
    block = CustodyBlock(300, EID.parse("ipn:5.0"))
    assert block.encode() == bytes.fromhex("82 19012c 82 02 82 05 00".replace(" ", ""))
    assert CustodyBlock.decode(block.encode()) == block


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x82\x01",
        b"\x83\x01\x82\x02\x82\x05\x00\x00",
        b"\x82\x01\x82\x01\x00",
        b"\x82\x01\x82\x02\x82\x05\x00\x00",
    ],
)
def test_custody_block_rejects_malformed(data):
    with pytest.raises(BundleError):
        CustodyBlock.decode(data)


def test_custody_signal_exact_bytes():
    signal = CustodySignal(True, 0, ((5, 7), (10, 10)))
    # [70000, [true, 0, [5, 3, 2, 1]]]: runs are (gap since the previous run, length)
    expected = bytes.fromhex("82 1a00011170 83 f5 00 84 05 03 02 01".replace(" ", ""))
    assert signal.encode() == expected
    assert CustodySignal.decode(signal.encode()) == signal


@settings(max_examples=200)
@given(st.sets(st.integers(0, 2**40), min_size=1, max_size=300), st.booleans(), st.integers(0, 255))
def test_custody_signal_round_trip(ids, accepted, reason):
    signal = CustodySignal(accepted, reason, tuple(merged(ids)))
    decoded = CustodySignal.decode(signal.encode())
    assert decoded == signal
    assert decoded.id_count == len(ids)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_custody_signal_decoder_never_crashes(data):
    with contextlib.suppress(BundleError):
        CustodySignal.decode(data)


def test_custody_signal_bounds_ranges():
    too_many = CustodySignal(True, 0, tuple((3 * i, 3 * i) for i in range(MAX_SIGNAL_RANGES + 1)))
    with pytest.raises(BundleError, match="fills"):
        CustodySignal.decode(too_many.encode())
    adjacent = b"\x82\x1a\x00\x01\x11\x70\x83\xf5\x00\x84\x05\x01\x00\x01"
    with pytest.raises(BundleError, match="adjacent"):
        CustodySignal.decode(adjacent)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 200), max_size=200))
def test_range_set_merges(values):
    ranges = RangeSet()
    for value in values:
        ranges.add(value)
    assert list(ranges.take(10_000)) == merged(set(values))


def test_aggregator_waits_for_the_delay_then_sends_one_signal_per_disposition():
    aggregator = SignalAggregator(delay=2.0, max_ranges=256)
    for i in range(1000):
        aggregator.add("ipn:1.0", i, True, 0, now=10.0)
    aggregator.add("ipn:1.0", 5000, False, CustodyReason.DEPLETED_STORAGE, now=11.0)
    assert aggregator.due == 12.0
    assert aggregator.take_due(11.9) == []
    signals = aggregator.take_due(12.0)
    assert [(c, s.accepted, s.ranges) for c, s in signals] == [
        ("ipn:1.0", True, ((0, 999),)),
        ("ipn:1.0", False, ((5000, 5000),)),
    ]
    assert aggregator.due is None


# --- aggregation end to end -------------------------------------------------------------------


def test_ten_thousand_bundles_are_released_by_a_handful_of_signals(tmp_path):
    net = pair(tmp_path, owlt=OWLT)
    a, b = net.nodes["a"], net.nodes["b"]
    for i in range(10_000):
        a.agent.submit(i.to_bytes(4, "big") * 256, "ipn:2.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 3 * OWLT)
    signals = [s for s in net.sent if s[1] == "b" and is_custody_signal(s[3])]
    assert len({d.bundle_id for d in b.delivered}) == 10_000 == len(b.delivered)
    assert len(signals) <= 5
    assert a.agent.counters["custody_released"] == 10_000
    assert a.agent.counters["retransmissions"] == 0
    assert a.agent.store.bundle_count == 0


# --- retransmission timer ---------------------------------------------------------------------


def test_retransmission_after_exactly_the_timeout_of_link_up_time(tmp_path):
    net = pair(tmp_path, owlt=OWLT)
    a = net.nodes["a"]
    net.drop = lambda src, dst, data: src == "b" and is_custody_signal(data)
    a.agent.submit(b"x", "ipn:2.1", net.now)
    net.contact("a", "b", True)
    sent_at = net.now
    timeout = 2 * OWLT + MARGIN
    assert a.agent.next_deadline() == pytest.approx(sent_at + timeout, abs=1e-6)
    net.run_until(sent_at + timeout - 0.001)
    assert a.agent.counters["retransmissions"] == 0
    # the link goes down for an hour: the timer stops with it
    net.contact("a", "b", False)
    net.run_until(net.now + 3600)
    net.contact("a", "b", True)
    assert a.agent.next_deadline() == pytest.approx(net.now + 0.001, abs=1e-6)
    net.run_until(net.now + 0.001)
    assert a.agent.counters["retransmissions"] == 1
    transmissions = [t for t, src, _, data in net.sent if src == "a"]
    assert transmissions == [sent_at, pytest.approx(sent_at + timeout + 3600, abs=1e-6)]


def test_a_bundle_a_signal_skipped_goes_again_before_its_timer(tmp_path):
    """A signal that accepts a bundle sent 10 s after another, and not that one, means the
    other was lost: it goes again when the signal comes, not 2 x light time + margin after it
    was sent; one left out by a signal for a bundle sent just after it is not sent again."""
    net = pair(tmp_path, owlt=1.0)
    a, b = net.nodes["a"], net.nodes["b"]
    dropped = []

    def drop_first_copy_of_first(src, dst, data):
        if src == "a" and not dropped and not is_custody_signal(data):
            dropped.append(net.now)
            return True
        return False

    net.drop = drop_first_copy_of_first
    net.contact("a", "b", True)
    lost = a.agent.submit(b"lost", "ipn:2.1", net.now)
    net.run_until(T0 + 10)
    a.agent.submit(b"taken", "ipn:2.1", net.now)
    net.run_until(T0 + 20)
    assert a.agent.counters["fast_retransmissions"] == 1
    resent = [t for t, src, _, data in net.sent if src == "a" and Bundle.decode(data).id == lost]
    assert resent == [T0, pytest.approx(T0 + 10 + 2 * 1.0 + AgentConfig().signal_delay, abs=0.01)]
    assert sorted(d.payload for d in b.delivered) == [b"lost", b"taken"]
    a.agent.submit(b"one", "ipn:2.1", net.now)
    a.agent.submit(b"two", "ipn:2.1", net.now)  # sent in the same instant: no order to go by
    net.run_until(net.now + 10)
    assert a.agent.counters["fast_retransmissions"] == 1


def test_lost_signals_are_recovered_by_retransmission_and_delivery_stays_single(tmp_path):
    net = pair(tmp_path, owlt=OWLT)
    a, b = net.nodes["a"], net.nodes["b"]
    lost = {"signals": 0}

    def lose_first_two_signals(src, dst, data):
        if src == "b" and is_custody_signal(data) and lost["signals"] < 2:
            lost["signals"] += 1
            return True
        return False

    net.drop = lose_first_two_signals
    ids = [a.agent.submit(b"payload %d" % i, "ipn:2.1", net.now) for i in range(50)]
    net.contact("a", "b", True)
    net.run_until(T0 + 10 * (2 * OWLT + MARGIN))
    assert lost["signals"] == 2
    assert sorted(str(d.bundle_id) for d in b.delivered) == sorted(str(i) for i in ids)
    assert a.agent.counters["retransmissions"] == 100
    assert b.agent.counters["duplicates"] == 100
    assert a.agent.store.bundle_count == 0


def test_duplicated_signals_are_harmless(tmp_path):
    net = pair(tmp_path, owlt=10.0)
    a = net.nodes["a"]
    a.agent.submit(b"x", "ipn:2.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 100)
    signal = next(data for _, src, _, data in net.sent if src == "b" and is_custody_signal(data))
    for _ in range(3):
        a.agent.receive(signal, "b", net.now)
    a.agent.next_actions()
    assert a.agent.counters["signals_received"] == 4
    assert a.agent.counters["custody_released"] == 1


# --- duplicates and refusals ------------------------------------------------------------------


def test_duplicate_from_same_custodian_is_accepted_again_and_from_another_is_redundant(tmp_path):
    net = chain(tmp_path, owlt=5.0)
    a, b, c = (net.nodes[n] for n in "abc")
    a.agent.submit(b"once", "ipn:3.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 60)
    first = next(data for _, src, _, data in net.sent if src == "a")
    b.agent.receive(first, "a", net.now)  # the same custodian again: accepted
    stray = Bundle.decode(first)
    other = EID.parse("ipn:9.0")  # another custodian names itself in both per-hop blocks
    stray.block_of_type(CUSTODY_BLOCK_TYPE).data = CustodyBlock(77, other).encode()
    stray.block_of_type(BlockType.PREVIOUS_NODE).data = other.to_cbor()
    b.agent.receive(stray.encode(), "a", net.now)  # another custodian: refused as redundant
    b.agent.next_actions()
    aggregated = b.agent._signals.take_due(net.now + 10)
    assert {(c, s.accepted, s.reason) for c, s in aggregated} == {
        ("ipn:1.0", True, 0),
        ("ipn:9.0", False, CustodyReason.REDUNDANT_RECEPTION),
    }
    net.contact("b", "c", True)
    net.run_until(T0 + 200)
    assert len(c.delivered) == 1


def test_store_full_refuses_custody_and_the_custodian_keeps_the_bundle(tmp_path):
    net = pair(tmp_path, owlt=10.0, b_quota=Quota(max_bundles=3))
    a, b = net.nodes["a"], net.nodes["b"]
    b.ack_deliveries = False  # the application does not read: b's store fills up
    ids = [a.agent.submit(b"%d" % i, "ipn:2.1", net.now) for i in range(5)]
    net.contact("a", "b", True)
    net.run_until(T0 + 30)
    assert len(b.delivered) == 3
    refusals = [e for e in b.events if e.name == "refused"]
    assert len(refusals) == 2 and "DEPLETED_STORAGE" in refusals[0].detail
    assert a.agent.counters["custody_refused"] == 2
    assert a.agent.store.bundle_count == 2  # kept, waiting to retry
    for delivery in b.delivered:  # the application catches up
        b.agent.delivered(delivery.delivery_id, net.now)
    net.run_until(T0 + 30 + 3 * (20 + MARGIN))
    assert sorted(str(d.bundle_id) for d in b.delivered) == sorted(str(i) for i in ids)
    assert a.agent.store.bundle_count == 0


def test_no_route_refuses_custody(tmp_path):
    net = chain(tmp_path, owlt=1.0)
    a, b = net.nodes["a"], net.nodes["b"]
    a.agent.submit(b"lost", "ipn:7.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    assert a.agent.counters["custody_refused"] == 1
    assert any("NO_KNOWN_ROUTE" in e.detail for e in b.events if e.name == "refused")
    assert a.agent.store.bundle_count == 1


def test_expired_refusal_releases(tmp_path):
    net = pair(tmp_path, owlt=OWLT)
    a, b = net.nodes["a"], net.nodes["b"]
    a.agent.submit(b"short-lived", "ipn:2.1", net.now, lifetime=OWLT / 2)
    net.contact("a", "b", True)
    net.run_until(T0 + 3 * OWLT)
    assert b.delivered == []
    assert a.agent.counters["custody_released"] == 1 or a.agent.counters["expired"] == 1
    assert a.agent.store.bundle_count == 0


# --- crashes ----------------------------------------------------------------------------------


def test_crash_of_relay_and_source_mid_transfer_loses_nothing_and_delivers_once(tmp_path):
    net = chain(tmp_path, owlt=OWLT)
    a, b, c = (net.nodes[n] for n in "abc")
    ids = [a.agent.submit(b"bundle %d" % i, "ipn:3.1", net.now) for i in range(300)]
    net.run_until(net.now)  # commit: the application is told "accepted" now
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + OWLT + 0.5)  # b has received and accepted everything, no signal yet
    assert b.agent.store.bundle_count == 300
    net.restart("b")  # b crashes: its pending signals are lost
    net.run_until(T0 + 2 * OWLT + 1)  # c has the bundles
    net.restart("a")  # a crashes too: its custody timers must survive in the store
    net.restart("c")
    net.run_until(T0 + 12 * OWLT)
    assert sorted(str(d.bundle_id) for d in c.delivered) == sorted(str(i) for i in ids)
    assert a.agent.store.bundle_count == b.agent.store.bundle_count == 0
    assert a.agent.counters["retransmissions"] > 0  # b's lost signals were made up for


def test_crash_between_receive_and_commit_is_recovered_by_retransmission(tmp_path):
    net = pair(tmp_path, owlt=5.0)
    a, b = net.nodes["a"], net.nodes["b"]
    a.agent.submit(b"fragile", "ipn:2.1", net.now)
    net.drop = lambda src, dst, data: True  # carry the first copy by hand
    net.contact("a", "b", True)
    net.run_until(T0 + 1)
    net.drop = lambda src, dst, data: False
    b.agent.receive(net.sent[0][3], "a", T0 + 5)
    net.nodes["b"].crash()  # before next_actions: nothing committed, no signal sent
    net.restart("b", crash=False)
    assert b.agent.store.bundle_count == 0
    net.run_until(T0 + 200)
    assert [d.payload for d in b.delivered] == [b"fragile"]
    assert a.agent.counters["retransmissions"] == 1


def test_undelivered_bundles_are_offered_again_after_a_crash(tmp_path):
    net = pair(tmp_path, owlt=1.0)
    a, b = net.nodes["a"], net.nodes["b"]
    b.ack_deliveries = False
    for i in range(3):
        a.agent.submit(b"%d" % i, "ipn:2.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 5)
    b.agent.delivered(b.delivered[0].delivery_id, net.now)  # the app took only the first
    net.run_until(T0 + 6)
    net.restart("b")
    net.run_until(T0 + 7)
    offered = [d.payload for d in b.delivered]
    assert offered == [b"0", b"1", b"2", b"1", b"2"]


def test_contact_plan_driven_twenty_minute_light_time_through_a_relay(tmp_path):
    config = AgentConfig(signal_delay=5.0)
    net = chain(tmp_path, owlt=OWLT, config=config)
    for i in range(20):
        net.nodes["a"].agent.submit(b"%d" % i, "ipn:3.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + OWLT + 10)
    net.contact("a", "b", False)
    net.run_until(T0 + 5 * 3600)  # b holds everything for five hours
    assert net.nodes["c"].delivered == []
    net.contact("b", "c", True)
    net.run_until(T0 + 5 * 3600 + OWLT + 1)
    assert len(net.nodes["c"].delivered) == 20
    net.contact("a", "b", True)  # a hears about custody when the link is back
    net.run_until(T0 + 6 * 3600)
    assert net.nodes["a"].agent.store.bundle_count == 0


def test_link_without_custody_forwards_and_forgets(tmp_path):
    net = pair(tmp_path, owlt=1.0, a_link=Link("b", owlt=1.0, custody=False))
    a, b = net.nodes["a"], net.nodes["b"]
    a.agent.submit(b"fire and forget", "ipn:2.1", net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 100)
    assert len(b.delivered) == 1
    assert a.agent.store.bundle_count == 0
    assert not any(is_custody_signal(data) for *_, data in net.sent)
