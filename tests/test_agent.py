"""The agent's RFC 9171 section 5 procedures on virtual time with real stores: local delivery,
durability before acknowledgement, lifetime and expiry, bundle age, hop count, status reports,
duplicates and hostile input."""

from __future__ import annotations

import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agent_harness import T0, chain, pair

from dtn.agent import Agent, AgentConfig, Deliver, Link, Route, Router, Transmit
from dtn.bundle import (
    BlockFlags,
    BlockType,
    Bundle,
    BundleFlags,
    CanonicalBlock,
    decode_bundle_age,
    decode_status_report,
)
from dtn.bundle.admin import DELETED, DELIVERED, FORWARDED, RECEIVED
from dtn.clock import dtn_time_ms
from dtn.store import BundleStore, Quota, StoreFull

REPORTS = (
    BundleFlags.REPORT_RECEPTION
    | BundleFlags.REPORT_FORWARDING
    | BundleFlags.REPORT_DELIVERY
    | BundleFlags.REPORT_DELETION
)


def lone_agent(tmp_path, **config) -> Agent:
    return Agent("ipn:1.0", BundleStore(tmp_path / "lone.db"), Router(), AgentConfig(**config))


def test_node_id_must_be_a_node_id(tmp_path):
    with pytest.raises(ValueError, match="not a node ID"):
        Agent("ipn:1.5", BundleStore(tmp_path / "x.db"), Router())


def test_local_submission_is_delivered_after_the_commit(tmp_path):
    agent = lone_agent(tmp_path)
    bundle_id = agent.submit(b"to myself", "ipn:1.7", T0)
    assert agent.store.in_transaction  # nothing is out before next_actions commits
    actions = agent.next_actions()
    assert not agent.store.in_transaction
    assert actions == [Deliver(1, "ipn:1.7", bundle_id, b"to myself")]
    assert agent.delivered(1, T0)
    assert not agent.delivered(1, T0)  # once


def test_accepted_means_durable_and_not_before(tmp_path):
    agent = lone_agent(tmp_path)
    kept = agent.submit(b"kept", "ipn:2.1", T0)
    agent.next_actions()  # the shell would now tell the application "accepted"
    agent.submit(b"never acknowledged", "ipn:2.1", T0)
    del agent  # crash before the next commit
    gc.collect()
    rebuilt = lone_agent(tmp_path)
    assert rebuilt.store.bundle_count == 1
    assert rebuilt.store.known(str(kept)) is not None
    # creation timestamps stay unique across the restart, even on an earlier clock
    assert rebuilt.submit(b"again", "ipn:2.1", T0 - 5) != kept


def test_store_full_is_a_clear_error_for_the_application(tmp_path):
    agent = Agent("ipn:1.0", BundleStore(tmp_path / "q.db", quota=Quota(max_bundles=2)), Router())
    agent.submit(b"1", "ipn:2.1", T0)
    agent.submit(b"2", "ipn:2.1", T0)
    with pytest.raises(StoreFull, match="store full"):
        agent.submit(b"3", "ipn:2.1", T0)
    assert agent.store.bundle_count == 2


def test_bundles_wait_for_the_contact_and_go_in_priority_then_age_order(tmp_path):
    net = pair(tmp_path, owlt=2.0)
    a = net.nodes["a"]
    for name, priority in (("old-bulk", 0), ("old-normal", 1), ("urgent", 2), ("new-normal", 1)):
        a.agent.submit(name.encode(), "ipn:2.1", net.now, priority=priority)
        net.now += 1
    net.run_until(T0 + 3600)
    assert net.sent == []  # no contact, nothing leaves
    net.contact("a", "b", True)
    order = [Bundle.decode(data).payload for _, src, _, data in net.sent if src == "a"]
    assert order == [b"urgent", b"old-normal", b"new-normal", b"old-bulk"]


def test_paced_link_sends_no_more_than_its_rate_allows(tmp_path):
    net = pair(tmp_path, owlt=1.0, a_link=Link("b", owlt=1.0, rate_bps=8_000))  # 1000 B/s
    a, b = net.nodes["a"], net.nodes["b"]
    for i in range(20):
        a.agent.submit(bytes(450) + bytes([i]), "ipn:2.1", net.now)
    net.contact("a", "b", True)
    first_burst = len(net.sent)
    assert 2 <= first_burst <= 4  # about one pacing window (1 s) of bytes
    net.run_until(T0 + 20)
    assert len(b.delivered) == 20
    times = [t for t, src, *_ in net.sent if src == "a"]
    assert times[-1] - times[0] == pytest.approx(20 * 0.5, abs=1.0)


def test_a_link_layer_behind_its_rate_is_handed_no_more_until_it_drains(tmp_path):
    """The pacing counts from what the convergence layer reports it still holds: a layer that
    is 10 s of link time behind gets nothing new, and is fed again once it has caught up."""
    net = pair(tmp_path, owlt=1.0, a_link=Link("b", owlt=1.0, rate_bps=8_000))  # 1000 B/s
    a = net.nodes["a"]
    net.contact("a", "b", True)
    sent = len(net.sent)
    a.agent.link_backlog("b", 10_000, net.now)  # 10 s of link time still queued below
    for i in range(5):
        a.agent.submit(bytes(450) + bytes([i]), "ipn:2.1", net.now)
    net._collect()
    assert len(net.sent) == sent  # nothing handed over
    assert a.agent.next_deadline() == pytest.approx(net.now + 10 - 1, abs=1e-3)  # minus window
    a.agent.link_backlog("b", 0, net.now)  # caught up early
    a.agent.timer(net.now)
    net._collect()
    assert 2 <= len(net.sent) - sent <= 4  # a pacing window's worth again


def test_expiry_during_a_long_outage_with_a_deletion_report(tmp_path):
    net = pair(tmp_path, owlt=1200.0)
    a, b = net.nodes["a"], net.nodes["b"]
    flags = BundleFlags.REPORT_DELETION | BundleFlags.STATUS_TIME_REQUESTED
    bundle_id = a.agent.submit(
        b"stale", "ipn:2.1", net.now, lifetime=3600, report_to="ipn:1.9", flags=flags
    )
    assert a.agent.next_deadline() == pytest.approx(T0 + 3600, abs=1e-3)
    net.run_until(T0 + 4 * 3600)  # the contact never opens
    assert a.agent.store.bundle_count == 0
    assert a.agent.counters["expired"] == 1
    (report,) = [d for d in a.delivered if d.is_admin_record]
    status = decode_status_report(report.payload)
    assert status.reason == 1 and status.assertions[DELETED] == dtn_time_ms(T0 + 3600)
    assert (str(status.source), status.creation_time) == (bundle_id.source, bundle_id.creation_time)
    net.contact("a", "b", True)
    net.run_until(T0 + 5 * 3600)
    assert b.delivered == []


def test_bundle_received_already_expired_is_refused(tmp_path):
    agent = lone_agent(tmp_path)
    old = Bundle.create(
        "ipn:2.1", "ipn:1.1", b"late", creation_time=dtn_time_ms(T0 - 100), lifetime=50_000
    )
    agent.receive(old.encode(), "b", T0)
    assert [a.name for a in agent.next_actions()] == ["refused"]
    assert agent.store.bundle_count == 0


def test_bundle_age_replaces_the_clock(tmp_path):
    net = chain(tmp_path, owlt=100.0, config=AgentConfig(has_clock=False))
    a, c = net.nodes["a"], net.nodes["c"]
    bundle_id = a.agent.submit(b"no clock", "ipn:3.1", net.now, lifetime=1000)
    assert bundle_id.creation_time == 0
    net.now += 50  # it waits 50 s at a, then 100 s light time, then b holds it 200 s
    net.contact("a", "b", True)
    net.run_until(net.now + 300)
    net.contact("b", "c", True)
    net.run_until(net.now + 200)
    (delivery,) = c.delivered
    age_at_c = [
        decode_bundle_age(Bundle.decode(d).block_of_type(BlockType.BUNDLE_AGE).data)
        for _, src, dst, d in net.sent
        if (src, dst) == ("b", "c")
    ]
    assert age_at_c == [50_000 + 100_000 + 200_000]
    # with a shorter lifetime the same trip expires at b: age counts where clocks do not
    late = a.agent.submit(b"too slow", "ipn:3.1", net.now, lifetime=300)
    net.contact("b", "c", False)
    net.run_until(net.now + 1000)
    assert late not in [d.bundle_id for d in c.delivered]
    assert net.nodes["b"].agent.counters["expired"] == 1


def test_hop_limit(tmp_path):
    net = chain(tmp_path, owlt=1.0)
    a, c = net.nodes["a"], net.nodes["c"]
    a.agent.submit(b"one hop only", "ipn:3.1", net.now, hop_limit=1)
    a.agent.submit(b"two hops", "ipn:3.1", net.now, hop_limit=2)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 100)
    assert [d.payload for d in c.delivered] == [b"two hops"]
    assert c.agent.counters["refused"] == 1


def test_status_reports_when_requested(tmp_path):
    net = chain(tmp_path, owlt=1.0)
    a = net.nodes["a"]
    a.agent.submit(
        b"tell me",
        "ipn:3.1",
        net.now,
        report_to="ipn:1.9",
        flags=REPORTS | BundleFlags.STATUS_TIME_REQUESTED,
    )
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 100)
    reports = [decode_status_report(d.payload) for d in a.delivered if d.is_admin_record]
    asserted = sorted(i for r in reports for i, at in enumerate(r.assertions) if at is not None)
    # a forwards; b receives and forwards; c receives and delivers
    assert asserted == sorted([FORWARDED, RECEIVED, FORWARDED, RECEIVED, DELIVERED])
    assert all(r.reason == 0 for r in reports)


def test_duplicates_are_delivered_once(tmp_path):
    agent = lone_agent(tmp_path)
    bundle = Bundle.create("ipn:2.1", "ipn:1.1", b"echo", creation_time=dtn_time_ms(T0))
    for _ in range(3):
        agent.receive(bundle.encode(), "b", T0)
    deliveries = [a for a in agent.next_actions() if isinstance(a, Deliver)]
    assert len(deliveries) == 1
    agent.delivered(deliveries[0].delivery_id, T0)
    agent.receive(bundle.encode(), "b", T0 + 10)  # still known after delivery
    assert not [a for a in agent.next_actions() if isinstance(a, Deliver)]
    assert agent.counters["duplicates"] == 3


def test_unrouted_bundles_wait_for_a_route(tmp_path):
    agent = lone_agent(tmp_path)
    agent.submit(b"somewhere", "ipn:4.1", T0)
    assert [a.name for a in agent.next_actions()] == ["unrouted"]
    agent.router.routes.append(Route("ipn:4.*", ("d",)))
    agent.router.links["d"] = Link("d")
    agent.contact_up("d", T0 + 1)
    assert [type(a) for a in agent.next_actions()] == [Transmit]


def test_unknown_blocks_follow_their_processing_flags(tmp_path):
    agent = lone_agent(tmp_path)
    kept = Bundle.create("ipn:2.1", "ipn:1.1", b"k", creation_time=dtn_time_ms(T0))
    kept.insert_block(CanonicalBlock(240, 2, b"?", BlockFlags.DISCARD_IF_UNPROCESSABLE, 0))
    doomed = Bundle.create("ipn:2.1", "ipn:1.1", b"d", creation_time=dtn_time_ms(T0), sequence=1)
    doomed.insert_block(CanonicalBlock(241, 2, b"?", BlockFlags.DELETE_BUNDLE_IF_UNPROCESSABLE))
    agent.receive(kept.encode(), "b", T0)
    agent.receive(doomed.encode(), "b", T0)
    actions = agent.next_actions()
    (delivery,) = [a for a in actions if isinstance(a, Deliver)]
    assert delivery.payload == b"k"
    assert Bundle.decode(agent.store.get(delivery.delivery_id).data).block_of_type(240) is None
    assert [a.name for a in actions if not isinstance(a, Deliver)] == ["refused"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_hostile_input_is_counted_never_raised(tmp_path, data):
    agent = lone_agent(tmp_path)
    agent.receive(b"\x9f" + data, "mallory", T0)
    agent.receive(data, "mallory", T0)
    agent.next_actions()
    assert agent.counters["malformed"] + agent.counters["refused"] >= 1
    agent.store.close()


def test_oversized_input_is_refused_unread(tmp_path):
    agent = lone_agent(tmp_path, max_bundle_size=100)
    agent.receive(bytes(101), "mallory", T0)
    (event,) = agent.next_actions()
    assert event.name == "malformed" and "max_bundle_size" in event.detail
