"""Bundles recorded from NASA ION 4.1.3 and µD3TN 0.13 are accepted by the agent: delivered
when they are for this node, forwarded with their foreign blocks intact when they are not. ION
uses private block type 193 for its quality-of-service block, so a block under a private number
must be recognised by its content, never by the number alone."""

from __future__ import annotations

import pytest
from conftest import load_vectors

from dtn.agent import Agent, AgentConfig, Deliver, Link, Route, Router, Transmit
from dtn.agent.custody import CUSTODY_BLOCK_TYPE
from dtn.bundle import EID, BlockType, Bundle, CanonicalBlock
from dtn.clock import unix_from_dtn_ms
from dtn.codepoints import CodePoints
from dtn.store import BundleStore

PEER_BUNDLES = [
    pytest.param(bundle, id=bundle["id"])
    for name in ("peers/ion_bundles.json", "peers/ud3tn_bundles.json")
    for bundle in load_vectors(name)["bundles"]
]
_PER_HOP = (BlockType.PREVIOUS_NODE, BlockType.BUNDLE_AGE, BlockType.HOP_COUNT)


def _agent(tmp_path, node: str, config: AgentConfig | None = None) -> Agent:
    router = Router([Route("*", ("next",))], [Link("next", custody=True)])
    return Agent(EID.parse(node), BundleStore(tmp_path / "store.db"), router, config)


def _arrival(bundle: Bundle) -> float:
    created = bundle.primary.creation_time
    # soon after it was made: ION gives its status reports a lifetime of one second
    return unix_from_dtn_ms(created) + 0.1 if created else 1.9e9


def _foreign(bundle: Bundle) -> list[tuple[int, int, bytes]]:
    return [(b.block_type, b.flags, b.data) for b in bundle.blocks
            if b.block_type not in (*_PER_HOP, BlockType.PAYLOAD)]


@pytest.mark.parametrize("vector", PEER_BUNDLES)
def test_a_peer_bundle_for_this_node_is_accepted(tmp_path, vector):
    data = bytes.fromhex(vector["hex"])
    bundle = Bundle.decode(data)
    destination = bundle.primary.destination
    agent = _agent(tmp_path, str(destination.node_id))
    agent.receive(data, "next", _arrival(bundle))
    actions = agent.next_actions()
    names = [getattr(a, "name", "") for a in actions]
    assert "malformed" not in names and "refused" not in names, actions
    delivered = [a.bundle.payload for a in actions if isinstance(a, Deliver)]
    if bundle.is_admin_record and destination == destination.node_id:  # status reports: told
        assert "status_report" in names and not delivered, actions
    else:  # µD3TN's BIBE record goes to an application's endpoint, like any payload
        assert delivered == [bundle.payload]


@pytest.mark.parametrize("vector", PEER_BUNDLES)
def test_a_peer_bundle_for_another_node_is_forwarded_with_its_foreign_blocks(tmp_path, vector):
    data = bytes.fromhex(vector["hex"])
    bundle = Bundle.decode(data)
    agent = _agent(tmp_path, "ipn:77.0")
    now = _arrival(bundle)
    agent.receive(data, "next", now)
    agent.contact_up("next", now)
    sent = [Bundle.decode(a.data) for a in agent.next_actions() if isinstance(a, Transmit)]
    forwarded = next(b for b in sent if b.id == bundle.id)  # the others: status reports
    ours = forwarded.block_of_type(CUSTODY_BLOCK_TYPE)
    if bundle.is_admin_record:  # administrative records go without custody
        assert ours is None
    else:
        assert ours is not None and ours.data.endswith(EID.parse("ipn:77.0").to_cbor())
    assert [f for f in _foreign(forwarded) if f[0] != CUSTODY_BLOCK_TYPE] == _foreign(bundle)
    assert forwarded.payload == bundle.payload


def test_ion_qos_block_under_our_custody_number_is_not_read_as_custody(tmp_path):
    """A node configured with ION's number 193 for its custody block still forwards ION's
    quality-of-service block (type 193, four integers) untouched and sends no custody
    signal for it."""
    vector = load_vectors("peers/ion_bundles.json")["bundles"][0]
    data = bytes.fromhex(vector["hex"])
    config = AgentConfig(codepoints=CodePoints(custody_block=193, compression_block=194))
    agent = _agent(tmp_path, "ipn:77.0", config)
    now = _arrival(Bundle.decode(data))
    agent.receive(data, "next", now)
    agent.contact_up("next", now)
    actions = agent.next_actions()
    sent = [Bundle.decode(a.data) for a in actions if isinstance(a, Transmit)]
    qos = [b for b in sent[0].blocks if b.block_type == 193]
    assert [(b.flags, b.data) for b in qos] == [(1, bytes.fromhex("8400010000")),
                                                (0x10, qos[1].data)]  # ION's, then ours
    assert not agent._signals.take_due(now + 3600)  # nobody to answer: ION's block is not ours


def test_a_foreign_block_under_our_number_is_handled_by_its_flags(tmp_path):
    """Another stack's block that asks for deletion when unprocessable deletes the bundle,
    although its number is our custody block's."""
    agent = _agent(tmp_path, "ipn:77.0")
    bundle = Bundle.create("ipn:5.1", "ipn:9.1", b"x", creation_time=800_000_000_000,
                           lifetime=3_600_000)
    bundle.insert_block(CanonicalBlock(CUSTODY_BLOCK_TYPE, 2, b"\x84\x00\x01\x00\x00", 0x04, 0))
    agent.receive(bundle.encode(), "next", unix_from_dtn_ms(800_000_000_000) + 1)
    events = {getattr(a, "name", "") for a in agent.next_actions()}
    assert "refused" in events and agent.store.bundle_count == 0


def test_code_points_are_configurable_and_checked(tmp_path):
    config = AgentConfig(codepoints=CodePoints(custody_block=230, compression_block=231))
    agent = _agent(tmp_path, "ipn:1.0", config)
    agent.submit(b"held", "ipn:2.1", 1.9e9)
    agent.contact_up("next", 1.9e9)
    sent = [Bundle.decode(a.data) for a in agent.next_actions() if isinstance(a, Transmit)]
    assert [b.block_type for b in sent[0].blocks if b.block_type >= 192] == [230]
    for bad in ({"custody_block": 12}, {"custody_block": 222}, {"custody_signal": 1}):
        with pytest.raises(ValueError):
            CodePoints(**bad)
