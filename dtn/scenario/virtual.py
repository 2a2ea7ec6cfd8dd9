"""A network of real agents on real SQLite stores, on virtual mission time: the one runner
behind `dtn scenario run --virtual`, `./tools/demo --virtual` and the agent tests.

Time only moves when the net jumps to the next event: an arrival, an agent's or a frame
decoder's deadline, or a callback scheduled with `at`. A 20-minute light time costs nothing to
wait for.

A direction between two nodes is either plain (each bundle arrives whole after the one-way
light time, unless `drop` says otherwise) or emulated (`emulate`): bundles are Reed-Solomon
framed as udp-rs frames them, paced at the direction's rate, and go through the emulator's
channel (loss, bit errors, contact windows, light time from the ephemeris), then through the
receiver's frame decoder, as between real processes.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dtn.agent import Agent, AgentConfig, Deliver, Link, Route, Router, Transmit
from dtn.agent.actions import Action
from dtn.emulator.channel import ChannelDirection, Drop
from dtn.fec import FrameConfig, FrameDecoder, FrameEncoder
from dtn.store import BundleStore, Quota


@dataclass
class VirtualNode:
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
    hold: set[str] = field(default_factory=set)  # endpoints whose deliveries wait (not acked)
    held: list[Deliver] = field(default_factory=list)

    def start(self) -> None:
        store = BundleStore(self.path, quota=self.quota)
        self.agent = Agent(self.node_id, store, self.router, self.config)

    def crash(self) -> None:
        """Drop the agent and its store without a clean close: what was not committed is lost,
        exactly as after kill -9 (SQLite rolls the open transaction back)."""
        self.agent = None
        self.held.clear()  # a new agent offers them again
        gc.collect()

    def release(self, endpoint: str, now: float) -> int:
        """An application takes what waited for `endpoint`; returns how many."""
        self.hold.discard(endpoint)
        taken = [d for d in self.held if d.endpoint == endpoint]
        self.held = [d for d in self.held if d.endpoint != endpoint]
        for delivery in taken:
            self.agent.delivered(delivery.delivery_id, now)
        return len(taken)


@dataclass
class _Emulated:
    """One emulated direction: the sender's framing and pacing, the channel, the receiver's
    frame decoder."""

    channel: ChannelDirection
    encoder: FrameEncoder
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    rate: float = 0.0  # bit/s the sender paces at; 0: unpaced
    free_at: float = -math.inf
    frame_ids: itertools.count = field(default_factory=lambda: itertools.count(1))


class VirtualNet:
    def __init__(self, folder: Path, now: float) -> None:
        self.folder = folder
        self.now = now
        self.nodes: dict[str, VirtualNode] = {}
        self.owlt: dict[tuple[str, str], float] = {}
        self.up: set[tuple[str, str]] = set()
        self.emulated: dict[tuple[str, str], _Emulated] = {}
        self._arrivals: list = []
        self._callbacks: list = []
        self._order = itertools.count()
        # plain directions: whether to lose this bundle (src, dst, data)
        self.drop: Callable[[str, str, bytes], bool] = lambda src, dst, data: False
        self.sent: list[tuple[float, str, str, bytes]] = []
        self.observers: list[Callable[[VirtualNode, Action], None]] = []  # every action
        self.after_collect: list[Callable[[], None]] = []  # once the actions of a step are in

    # === building ==============================================================================

    def add(self, node: VirtualNode) -> VirtualNode:
        """Add a node and start its agent; plain directions to its router's links."""
        for link in node.router.links.values():
            self.owlt[(node.name, link.neighbour)] = link.owlt
        node.start()
        self.nodes[node.name] = node
        return node

    def add_node(self, name: str, number: int, routes: list[Route], links: list[Link],
                 config: AgentConfig | None = None, quota: Quota | None = None) -> VirtualNode:
        return self.add(VirtualNode(name, f"ipn:{number}.0", self.folder / f"{name}.db",
                                    Router(routes, links), config or AgentConfig(), quota))

    def emulate(self, sender: str, receiver: str, channel: ChannelDirection,
                frames: FrameConfig, rate: float = 0.0) -> None:
        """Carry sender -> receiver as RS frames through `channel`, paced at `rate` bit/s."""
        self.emulated[(sender, receiver)] = _Emulated(channel, FrameEncoder(frames), rate=rate)

    def at(self, when: float, callback: Callable[[], None]) -> None:
        """Call `callback()` at mission time `when` (now, if that has passed)."""
        heapq.heappush(self._callbacks, (max(when, self.now), next(self._order), callback))

    # === what happens to nodes and links =======================================================

    def contact(self, a: str, b: str, up: bool) -> None:
        """Open or close the link between a and b (both directions), now."""
        self.set_contact(a, b, up)
        self.set_contact(b, a, up)

    def set_contact(self, node: str, neighbour: str, up: bool) -> None:
        """Tell `node` its link to `neighbour` is up or down, now."""
        agent = self.nodes[node].agent
        if up:
            self.up.add((node, neighbour))
            if agent is not None:
                agent.contact_up(neighbour, self.now)
        else:
            self.up.discard((node, neighbour))
            if agent is not None:
                agent.contact_down(neighbour, self.now)
        self._collect()

    def restart(self, name: str, *, crash: bool = True) -> None:
        if crash:
            self.crash(name)
        self.start(name)

    def crash(self, name: str) -> None:
        """kill -9: the node's agent is gone, and with it whatever frames it had half-decoded."""
        self.nodes[name].crash()
        for (_, receiver), direction in self.emulated.items():
            if receiver == name:
                direction.decoder = FrameDecoder()

    def start(self, name: str) -> None:
        """Start a node (again) from its store, its links as they were."""
        node = self.nodes[name]
        node.start()
        for x, y in self.up:
            if x == name:
                node.agent.contact_up(y, self.now)
        self._collect()

    def lose_in_flight(self) -> int:
        """Everything on its way is lost (the emulator restarted); returns how many."""
        lost = len(self._arrivals)
        self._arrivals.clear()
        return lost

    # === running ===============================================================================

    def _collect(self) -> None:
        for node in self.nodes.values():
            if node.agent is None:
                continue
            self._report_backlogs(node)
            for action in node.agent.next_actions():
                if isinstance(action, Transmit):
                    self._transmit(node.name, action)
                elif isinstance(action, Deliver):
                    if action.endpoint in node.hold:
                        node.held.append(action)
                        continue
                    node.delivered.append(action)
                    if node.ack_deliveries:
                        node.agent.delivered(action.delivery_id, self.now)
                else:
                    node.events.append(action)
                for observer in self.observers:
                    observer(node, action)
        for hook in self.after_collect:
            hook()

    def _report_backlogs(self, node: VirtualNode) -> None:
        """Tell the agent what its paced links still hold, as udp-rs does: framing adds bytes
        the agent's own pacing does not count, and the backlog would outgrow custody timers."""
        for (sender, receiver), direction in self.emulated.items():
            if sender == node.name and direction.rate and (sender, receiver) in self.up:
                queued = max(0.0, direction.free_at - self.now) * direction.rate / 8
                node.agent.link_backlog(receiver, int(queued), self.now)

    def _transmit(self, sender: str, action: Transmit) -> None:
        receiver, data = action.neighbour, action.data
        self.sent.append((self.now, sender, receiver, data))
        if (sender, receiver) not in self.up:
            return
        emulated = self.emulated.get((sender, receiver))
        if emulated is None:
            if not self.drop(sender, receiver, data):
                self._arrive(self.now + self.owlt[(sender, receiver)], receiver, sender, data)
            return
        for datagram in emulated.encoder.encode(next(emulated.frame_ids), data):
            start = max(self.now, emulated.free_at)
            if emulated.rate:
                emulated.free_at = start + len(datagram) * 8 / emulated.rate
            outcome = emulated.channel.submit(datagram, start)
            if not isinstance(outcome, Drop):
                for arrival, copy in outcome:
                    self._arrive(arrival, receiver, sender, copy)

    def _arrive(self, when: float, receiver: str, sender: str, data: bytes) -> None:
        heapq.heappush(self._arrivals, (when, next(self._order), receiver, sender, data))

    def next_event(self) -> float | None:
        times = [queue[0][0] for queue in (self._arrivals, self._callbacks) if queue]
        for node in self.nodes.values():
            if node.agent is not None and (deadline := node.agent.next_deadline()) is not None:
                times.append(max(deadline, self.now))
        for direction in self.emulated.values():
            if (deadline := direction.decoder.next_deadline()) is not None:
                times.append(max(deadline, self.now))
        return min(times, default=None)

    def run_until(self, until: float, max_steps: int = 200_000,
                  done: Callable[[], bool] | None = None) -> None:
        """Run to mission time `until` (or until `done()` says so after a step)."""
        self._collect()
        for _ in range(max_steps):
            when = self.next_event()
            if when is None or when > until:
                self.now = max(self.now, until)
                return
            self.now = when
            self._step()
            if done is not None and done():
                return
        raise AssertionError(f"no quiescence after {max_steps} steps at t={self.now:.3f}")

    def _step(self) -> None:
        while self._callbacks and self._callbacks[0][0] <= self.now:
            heapq.heappop(self._callbacks)[2]()
        batch: dict[tuple[str, str], list[bytes]] = {}
        while self._arrivals and self._arrivals[0][0] <= self.now:
            _, _, receiver, sender, data = heapq.heappop(self._arrivals)
            batch.setdefault((receiver, sender), []).append(data)
        for (receiver, sender), datagrams in batch.items():
            agent = self.nodes[receiver].agent
            if agent is None:
                continue
            emulated = self.emulated.get((sender, receiver))
            if emulated is not None:
                datagrams = emulated.decoder.receive_many(datagrams, self.now)
            if datagrams:
                agent.receive_many(datagrams, sender, self.now)
        for direction in self.emulated.values():
            direction.decoder.expire(self.now)
        for node in self.nodes.values():
            deadline = node.agent.next_deadline() if node.agent else None
            if deadline is not None and deadline <= self.now:
                node.agent.timer(self.now)
        self._collect()
