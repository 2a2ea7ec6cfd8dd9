"""What the node daemon needs of the agent: per-bundle custody choice, creation timestamps for
bundles made outside it, the bundle with each Deliver, and events that name their subject."""

from __future__ import annotations

from test_agent_harness import T0, pair

from dtn.agent.custody import CUSTODY_BLOCK_TYPE
from dtn.bundle import Bundle, BundleFlags


def _made_outside(agent, payload: bytes, **options) -> Bundle:
    creation, sequence = agent.next_creation(T0)
    return Bundle.create(agent.node_id, "ipn:2.1", payload, creation_time=creation,
                         sequence=sequence, **options)


def test_a_bundle_submitted_without_custody_goes_without_the_block_and_is_forgotten(tmp_path):
    net = pair(tmp_path)
    a = net.nodes["a"].agent
    plain = a.submit_bundle(_made_outside(a, b"plain"), T0, custody=False)
    held = a.submit_bundle(_made_outside(a, b"held"), T0)
    net.contact("a", "b", True)
    sent = {Bundle.decode(data).id: Bundle.decode(data) for _, src, _, data in net.sent
            if src == "a"}
    assert sent[plain].block_of_type(CUSTODY_BLOCK_TYPE) is None
    assert sent[held].block_of_type(CUSTODY_BLOCK_TYPE) is not None
    assert a.store.known(str(plain))[0].name == "DONE"  # forwarded and forgotten at once
    assert a.store.known(str(held))[0].name == "IN_FLIGHT"
    net.run_until(T0 + 60)
    assert a.store.known(str(held))[0].name == "DONE"  # released by b's custody signal
    assert any(e.name == "custody_released" for e in net.nodes["a"].events)
    assert sorted(d.payload for d in net.nodes["b"].delivered) == [b"held", b"plain"]


def test_timestamps_made_outside_are_unique_and_deliver_carries_the_bundle(tmp_path):
    net = pair(tmp_path)
    a = net.nodes["a"].agent
    stamps = [a.next_creation(T0) for _ in range(3)]
    assert len(set(stamps)) == 3
    a.submit(b"x", "ipn:2.1", T0)
    assert a.next_creation(T0) > max(stamps)  # submit shares the same sequence
    net.contact("a", "b", True)
    net.run_until(T0 + 60)
    (delivery,) = net.nodes["b"].delivered
    assert delivery.bundle is not None and delivery.bundle.payload == b"x"
    assert delivery.bundle.id == delivery.bundle_id


def test_a_delivery_report_event_names_the_reported_bundle(tmp_path):
    net = pair(tmp_path)
    a = net.nodes["a"].agent
    bundle = _made_outside(a, b"report me", flags=BundleFlags.REPORT_DELIVERY,
                           report_to="ipn:1.0")
    a.submit_bundle(bundle, T0)
    net.contact("a", "b", True)
    net.run_until(T0 + 60)
    reports = [e for e in net.nodes["a"].events if e.name == "status_report"]
    assert [(e.bundle_id, e.detail) for e in reports] == [(bundle.id, "delivered")]
