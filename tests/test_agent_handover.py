"""A link whose convergence layer acknowledges (TCPCL, MTCP, STCP): a bundle sent without
custody stays in the store until the layer says the neighbour has it, goes again when the layer
says it has not, and a restarted node sends again what a layer held when it stopped. An
unpaced layer is given no more than `unpaced_queue` bytes beyond what it reports holding."""

from __future__ import annotations

from dtn.agent import Agent, AgentConfig, Link, Route, Router, Transmit
from dtn.bundle import EID
from dtn.store import BundleStore, State

NOW = 1.9e9


def _agent(path, config: AgentConfig | None = None) -> Agent:
    router = Router([Route("ipn:2.*", ("b",))], [Link("b", custody=False, acknowledged=True)])
    return Agent(EID.parse("ipn:1.0"), BundleStore(path / "a.db"), router, config)


def _sent(agent: Agent) -> list[Transmit]:
    return [a for a in agent.next_actions() if isinstance(a, Transmit)]


def test_acknowledged_bundles_are_done_and_refused_ones_go_again(tmp_path):
    agent = _agent(tmp_path)
    ids = [agent.submit(b"%d" % i, "ipn:2.1", NOW, custody=False) for i in range(3)]
    agent.contact_up("b", NOW)
    first = _sent(agent)
    assert [t.bundle_id for t in first] == ids
    assert {agent.store.known(str(i))[0] for i in ids} == {State.IN_FLIGHT}
    agent.handed_over("b", [first[0].store_id], NOW)
    agent.not_handed_over("b", [first[1].store_id], NOW)
    again = _sent(agent)
    assert [t.bundle_id for t in again] == [ids[1]]  # at once, not at a timer
    assert agent.store.known(str(ids[0]))[0] == State.DONE
    assert agent.store.known(str(ids[2]))[0] == State.IN_FLIGHT  # still with the layer
    assert agent.counters["retransmissions"] == 1
    # no mission-time timer stands in for the layer: the next deadline is the lifetime's end
    assert agent.next_deadline() == NOW + AgentConfig().default_lifetime


def test_a_restart_sends_again_what_a_layer_held(tmp_path):
    agent = _agent(tmp_path)
    bundle_id = agent.submit(b"held by TCP", "ipn:2.1", NOW, custody=False)
    agent.contact_up("b", NOW)
    assert len(_sent(agent)) == 1
    agent.store.close()  # the process ends with the bundle in a session, unacknowledged
    restarted = _agent(tmp_path)
    restarted.contact_up("b", NOW + 1)
    assert [t.bundle_id for t in _sent(restarted)] == [bundle_id]


def test_an_unpaced_layer_that_reports_is_held_at_its_queue_bound(tmp_path):
    agent = _agent(tmp_path, AgentConfig(unpaced_queue=10_000))
    for i in range(20):
        agent.submit(bytes(1000) + b"%d" % i, "ipn:2.1", NOW, custody=False)
    agent.link_backlog("b", 0, NOW)
    agent.contact_up("b", NOW)
    first = _sent(agent)
    assert 9 <= len(first) <= 11  # about 10 KB of ~1 KB bundles
    agent.link_backlog("b", 8_000, NOW)  # more than half the bound still held: no more
    assert _sent(agent) == []
    agent.link_backlog("b", 2_000, NOW)
    assert len(_sent(agent)) >= 7


def test_a_full_unpaced_layer_leaves_no_timer_due_until_it_reports_room(tmp_path):
    # A batch that used up its budget leaves the link due again at once; the layer filling
    # in that next pump must clear it, or the node calls timer() in a busy loop.
    agent = _agent(tmp_path, AgentConfig(unpaced_queue=6_000, transmit_batch=4))
    for i in range(20):
        agent.submit(bytes(1000) + b"%d" % i, "ipn:2.1", NOW, custody=False)
    agent.link_backlog("b", 0, NOW)
    agent.contact_up("b", NOW)
    assert len(_sent(agent)) == 4
    assert agent.next_deadline() <= NOW  # the rest of the batch: at once
    agent.timer(NOW)
    assert 1 <= len(_sent(agent)) <= 3  # up to the queue bound
    assert agent.next_deadline() == NOW + AgentConfig().default_lifetime
    agent.link_backlog("b", 1_000, NOW)  # the layer has room: sending goes on without a timer
    assert len(_sent(agent)) >= 1
