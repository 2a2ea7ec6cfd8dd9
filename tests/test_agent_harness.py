"""A virtual-time network of real agents on real SQLite stores, for the agent, custody, routing
and fragmentation tests (no tests of its own).

Time only moves when the harness jumps to the next event: an arrival after a link's one-way
light time, or an agent's deadline. A 20-minute light time costs nothing to wait for.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dtn.agent import Agent, AgentConfig, Deliver, Link, Route, Router, Transmit
from dtn.agent.custody import CUSTODY_SIGNAL_RECORD_TYPE
from dtn.bundle import Bundle, record_type
from dtn.store import BundleStore, Quota

T0 = 1_000_000_000.0  # mission time the tests start at (2001-09-09)


def is_custody_signal(data: bytes) -> bool:
    bundle = Bundle.decode(data)
    return bundle.is_admin_record and record_type(bundle.payload) == CUSTODY_SIGNAL_RECORD_TYPE


@dataclass
class Node:
    name: str
    node_id: str
    path: Path
    router: Router
    config: AgentConfig
    quota: Quota | None = None
    agent: Agent | None = None
    delivered: list[Deliver] = field(default_factory=list)
    events: list = field(default_factory=list)
    ack_deliveries: bool = True

    def start(self) -> None:
        store = BundleStore(self.path, quota=self.quota)
        self.agent = Agent(self.node_id, store, self.router, self.config)

    def crash(self) -> None:
        """Drop the agent and its store without a clean close: what was not committed is lost,
        exactly as after kill -9 (SQLite rolls the open transaction back)."""
        self.agent = None
        gc.collect()


class VirtualNet:
    def __init__(self, tmp_path: Path, now: float = T0) -> None:
        self.tmp_path = tmp_path
        self.now = now
        self.nodes: dict[str, Node] = {}
        self.owlt: dict[tuple[str, str], float] = {}
        self.up: set[tuple[str, str]] = set()
        self._arrivals: list = []
        self._order = itertools.count()
        self.drop: Callable[[str, str, bytes], bool] = lambda src, dst, data: False
        self.sent: list[tuple[float, str, str, bytes]] = []

    def add_node(
        self,
        name: str,
        number: int,
        routes: list[Route],
        links: list[Link],
        config: AgentConfig | None = None,
        quota: Quota | None = None,
    ) -> Node:
        for link in links:
            self.owlt[(name, link.neighbour)] = link.owlt
        node = Node(
            name,
            f"ipn:{number}.0",
            self.tmp_path / f"{name}.db",
            Router(routes, links),
            config or AgentConfig(),
            quota,
        )
        node.start()
        self.nodes[name] = node
        return node

    def contact(self, a: str, b: str, up: bool) -> None:
        """Open or close the link between a and b (both directions), now."""
        for x, y in ((a, b), (b, a)):
            agent = self.nodes[x].agent
            if up:
                self.up.add((x, y))
                agent.contact_up(y, self.now)
            else:
                self.up.discard((x, y))
                agent.contact_down(y, self.now)
        self._collect()

    def restart(self, name: str, *, crash: bool = True) -> None:
        node = self.nodes[name]
        if crash:
            node.crash()
        node.start()
        for x, y in self.up:
            if x == name:
                node.agent.contact_up(y, self.now)
        self._collect()

    def _collect(self) -> None:
        for node in self.nodes.values():
            if node.agent is None:
                continue
            for action in node.agent.next_actions():
                if isinstance(action, Transmit):
                    self.sent.append((self.now, node.name, action.neighbour, action.data))
                    if (node.name, action.neighbour) in self.up and not self.drop(
                        node.name, action.neighbour, action.data
                    ):
                        arrival = self.now + self.owlt[(node.name, action.neighbour)]
                        heapq.heappush(
                            self._arrivals,
                            (arrival, next(self._order), action.neighbour, node.name, action.data),
                        )
                elif isinstance(action, Deliver):
                    node.delivered.append(action)
                    if node.ack_deliveries:
                        node.agent.delivered(action.delivery_id, self.now)
                else:
                    node.events.append(action)

    def next_event(self) -> float | None:
        times = [self._arrivals[0][0]] if self._arrivals else []
        for node in self.nodes.values():
            if node.agent is not None and (deadline := node.agent.next_deadline()) is not None:
                times.append(max(deadline, self.now))
        return min(times, default=None)

    def run_until(self, until: float, max_steps: int = 200_000) -> None:
        self._collect()
        for _ in range(max_steps):
            when = self.next_event()
            if when is None or when > until:
                self.now = max(self.now, until)
                return
            self.now = when
            batch: dict[tuple[str, str], list[bytes]] = {}
            while self._arrivals and self._arrivals[0][0] <= self.now:
                _, _, dst, src, data = heapq.heappop(self._arrivals)
                batch.setdefault((dst, src), []).append(data)
            for (dst, src), datagrams in batch.items():
                if self.nodes[dst].agent is not None:
                    self.nodes[dst].agent.receive_many(datagrams, src, self.now)
            for node in self.nodes.values():
                deadline = node.agent.next_deadline() if node.agent else None
                if deadline is not None and deadline <= self.now:
                    node.agent.timer(self.now)
            self._collect()
        raise AssertionError(f"no quiescence after {max_steps} steps at t={self.now - T0:.3f}")


def pair(
    tmp_path: Path,
    owlt: float = 1.0,
    config: AgentConfig | None = None,
    a_link: Link | None = None,
    b_quota: Quota | None = None,
) -> VirtualNet:
    """Two nodes, a (ipn:1.0) and b (ipn:2.0), with routes to each other."""
    net = VirtualNet(tmp_path)
    net.add_node("a", 1, [Route("ipn:2.*", ("b",))], [a_link or Link("b", owlt=owlt)], config)
    net.add_node("b", 2, [Route("ipn:1.*", ("a",))], [Link("a", owlt=owlt)], config, quota=b_quota)
    return net


def chain(tmp_path: Path, owlt: float = 1.0, config: AgentConfig | None = None) -> VirtualNet:
    """a (ipn:1.0) - b (ipn:2.0) - c (ipn:3.0), b relaying both ways."""
    net = VirtualNet(tmp_path)
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
