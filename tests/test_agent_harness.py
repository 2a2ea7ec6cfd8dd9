"""Small networks on dtn.scenario.virtual's VirtualNet (real agents on real SQLite stores,
virtual time) for the agent, custody, routing and fragmentation tests (no tests of its own)."""

from __future__ import annotations

from pathlib import Path

from dtn.agent import AgentConfig, Link, Route
from dtn.agent.custody import CUSTODY_SIGNAL_RECORD_TYPE
from dtn.bundle import Bundle, record_type
from dtn.scenario.virtual import VirtualNet
from dtn.store import Quota

T0 = 1_000_000_000.0  # mission time the tests start at (2001-09-09)


def is_custody_signal(data: bytes) -> bool:
    bundle = Bundle.decode(data)
    return bundle.is_admin_record and record_type(bundle.payload) == CUSTODY_SIGNAL_RECORD_TYPE


def pair(
    tmp_path: Path,
    owlt: float = 1.0,
    config: AgentConfig | None = None,
    a_link: Link | None = None,
    b_quota: Quota | None = None,
) -> VirtualNet:
    """Two nodes, a (ipn:1.0) and b (ipn:2.0), with routes to each other."""
    net = VirtualNet(tmp_path, T0)
    net.add_node("a", 1, [Route("ipn:2.*", ("b",))], [a_link or Link("b", owlt=owlt)], config)
    net.add_node("b", 2, [Route("ipn:1.*", ("a",))], [Link("a", owlt=owlt)], config, quota=b_quota)
    return net


def chain(tmp_path: Path, owlt: float = 1.0, config: AgentConfig | None = None) -> VirtualNet:
    """a (ipn:1.0) - b (ipn:2.0) - c (ipn:3.0), b relaying both ways."""
    net = VirtualNet(tmp_path, T0)
    net.add_node("a", 1, [Route("ipn:*", ("b",))], [Link("b", owlt=owlt)], config)
    net.add_node(
        "b",
        2,
        [Route("ipn:1.*", ("a",)), Route("ipn:3.*", ("c",))],
        [Link("a", owlt=owlt), Link("c", owlt=owlt)],
        config,
    )
    net.add_node("c", 3, [Route("ipn:*", ("b",))], [Link("b", owlt=owlt)], config)
    return net
