"""The Earth–Mars demo on the embedded defaults: `./tools/demo` runs real node and emulator
processes (tools/demo_real.py); `./tools/demo --virtual` runs the cores in one process, as below.

Two bundle agents, Earth (ipn:1.0) and Mars (ipn:2.0), each on a real SQLite store in a temporary
folder, talk over an emulated deep-space link: 20 minutes of light time each way, 256 kbit/s up
and 2 Mbit/s down, bit errors at 1e-5 and one datagram in 50 lost. Every bundle is
Reed-Solomon framed on the way out and corrected on the way in; custody transfer retransmits what
the link loses. Everything runs on virtual mission time: the protocol cores are sans-I/O, so the
demo jumps from event to event and a 40-minute round trip takes a fraction of a second.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtn.agent import Agent, Deliver, Link, Route, Router, Transmit
from dtn.emulator.channel import ChannelDirection, DirectionParams, Drop
from dtn.fec import FrameConfig, FrameDecoder, FrameEncoder
from dtn.store import BundleStore

MISSION_START = 1_795_651_200.0  # 2026-11-26T00:00:00Z, mission time (Unix seconds)
LIGHT_TIME = 20 * 60.0


@dataclass
class Node:
    name: str
    agent: Agent
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    delivered: list[Deliver] = field(default_factory=list)


@dataclass
class Direction:
    """One direction of the link: the sender's framer, the channel, the receiver."""

    sender: Node
    receiver: Node
    channel: ChannelDirection
    encoder: FrameEncoder
    frame_ids: itertools.count = field(default_factory=lambda: itertools.count(1))


class Mission:
    """Agents, framers and channels on one virtual clock: time jumps to the next event."""

    def __init__(self, folder: Path, seed: int, loss: float, ber: float) -> None:
        self.now = MISSION_START
        self.log: list[str] = []
        self._pending_delivery: tuple | None = None
        self._counted: dict[str, Counter] = {}
        self._arrivals: list = []
        self._order = itertools.count()
        seeds = np.random.SeedSequence(seed).spawn(2)
        earth = self._node("Earth", "ipn:1.0", folder, "mars", "ipn:2.*")
        mars = self._node("Mars", "ipn:2.0", folder, "earth", "ipn:1.*")
        self.nodes = {"earth": earth, "mars": mars}
        frames = FrameEncoder(FrameConfig(frame_size=8192, depth=4))
        uplink = DirectionParams(delay=LIGHT_TIME, rate=256_000, ber=ber, loss=loss)
        downlink = DirectionParams(delay=LIGHT_TIME, rate=2_000_000, ber=ber, loss=loss)
        self.links = {
            "mars": Direction(earth, mars, ChannelDirection(uplink, seeds[0]), frames),
            "earth": Direction(mars, earth, ChannelDirection(downlink, seeds[1]), frames),
        }
        for node, neighbour in ((earth, "mars"), (mars, "earth")):
            node.agent.contact_up(neighbour, self.now)

    @staticmethod
    def _node(name: str, node_id: str, folder: Path, neighbour: str, pattern: str) -> Node:
        store = BundleStore(folder / f"{name.lower()}.db")
        router = Router([Route(pattern, (neighbour,))], [Link(neighbour, owlt=LIGHT_TIME)])
        return Node(name, Agent(node_id, store, router))

    def say(self, text: str) -> None:
        self._flush_deliveries()
        self._print(self.now, text)

    def _print(self, at: float, text: str) -> None:
        hours, rest = divmod(at - MISSION_START, 3600)
        self.log.append(f"T+{int(hours):02d}:{int(rest // 60):02d}:{rest % 60:06.3f}  {text}")
        print(self.log[-1])

    def _delivered(self, node: Node, deliveries: list[Deliver]) -> None:
        """Deliveries in a row to one endpoint make one line, printed when something else
        happens."""
        size = sum(len(d.payload) for d in deliveries)
        key = (node.name, deliveries[0].endpoint)
        pending = self._pending_delivery
        if pending is not None and pending[0] == key:
            self._pending_delivery = (key, pending[1], pending[2] + len(deliveries),
                                      pending[3] + size)
        else:
            self._flush_deliveries()
            self._pending_delivery = (key, self.now, len(deliveries), size)

    def _flush_deliveries(self) -> None:
        if self._pending_delivery is not None:
            (name, endpoint), since, count, size = self._pending_delivery
            self._pending_delivery = None
            self._print(since, f"{name} delivers {count} bundle(s), {size:,} B, to {endpoint}")

    def _collect(self) -> None:
        for node in self.nodes.values():
            delivered = []
            for action in node.agent.next_actions():
                if isinstance(action, Transmit):
                    self._transmit(self.links[action.neighbour], action.data)
                elif isinstance(action, Deliver):
                    node.agent.delivered(action.delivery_id, self.now)
                    if not action.is_admin_record:
                        delivered.append(action)
            node.delivered.extend(delivered)
            if delivered:
                self._delivered(node, delivered)
            counters = Counter(node.agent.counters)
            self._narrate(node, counters - self._counted.get(node.name, Counter()))
            self._counted[node.name] = counters

    def _narrate(self, node: Node, change: Counter) -> None:
        if change["signals_sent"]:
            self.say(f"{node.name} takes custody: sends {change['signals_sent']} custody signal(s)")
        if change["custody_released"]:
            self.say(f"{node.name} hears custody accepted: releases "
                     f"{change['custody_released']} bundle(s) from its store")
        if change["retransmissions"]:
            self.say(f"{node.name}'s custody timer runs out: retransmits "
                     f"{change['retransmissions']} bundle(s)")
        if change["duplicates"]:
            self.say(f"{node.name} drops {change['duplicates']} duplicate(s)")

    def _transmit(self, link: Direction, bundle: bytes) -> None:
        for datagram in link.encoder.encode(next(link.frame_ids), bundle):
            outcome = link.channel.submit(datagram, self.now)
            if isinstance(outcome, Drop):
                continue
            for arrival, data in outcome:
                heapq.heappush(self._arrivals, (arrival, next(self._order), link, data))

    def _deadline(self) -> float | None:
        times = [self._arrivals[0][0]] if self._arrivals else []
        for node in self.nodes.values():
            for deadline in (node.agent.next_deadline(), node.decoder.next_deadline()):
                if deadline is not None:
                    times.append(max(deadline, self.now))
        return min(times, default=None)

    def run(self, until: float) -> None:
        self._collect()
        while (when := self._deadline()) is not None and when <= until:
            self.now = when
            batches: dict[int, tuple[Direction, list[bytes]]] = {}
            while self._arrivals and self._arrivals[0][0] <= self.now:
                _, _, link, data = heapq.heappop(self._arrivals)
                batches.setdefault(id(link), (link, []))[1].append(data)
            for link, datagrams in batches.values():
                bundles = link.receiver.decoder.receive_many(datagrams, self.now)
                if bundles:
                    link.receiver.agent.receive_many(bundles, link.sender.name.lower(), self.now)
            for node in self.nodes.values():
                node.decoder.expire(self.now)
                deadline = node.agent.next_deadline()
                if deadline is not None and deadline <= self.now:
                    node.agent.timer(self.now)
            self._collect()
        self.now = max(self.now, until)


def telemetry(count: int) -> list[bytes]:
    """Mars surface telemetry: JSON lines, as a rover would send them."""
    return [json.dumps({"sol": 1412, "seq": i, "temp_c": -63.2 + i % 7, "pressure_pa": 610 + i,
                        "battery": 0.82, "notes": "nominal"}).encode() * 40 for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--loss", type=float, default=0.02, help="datagram loss probability")
    parser.add_argument("--ber", type=float, default=1e-5, help="bit error rate")
    parser.add_argument("--commands", type=int, default=5, help="bundles Earth sends")
    parser.add_argument("--telemetry", type=int, default=100, help="bundles Mars sends")
    parser.add_argument("--virtual", action="store_true",
                        help="run the cores in one process on virtual time instead of real "
                        "node and emulator processes")
    args = parser.parse_args(argv)
    if not args.virtual:
        from tools.demo_real import run

        return run()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dtn-demo-") as folder:
        mission = Mission(Path(folder), args.seed, args.loss, args.ber)
        earth, mars = mission.nodes["earth"], mission.nodes["mars"]
        mission.say(f"link up: one-way light time {LIGHT_TIME / 60:.0f} min, BER {args.ber:g}, "
                    f"loss {args.loss:g}; Earth 256 kbit/s up, Mars 2 Mbit/s down")
        for i in range(args.commands):
            command = json.dumps({"cmd": "drive", "id": i, "meters": 12.5 * (i + 1)}).encode()
            earth.agent.submit(command, "ipn:2.1", mission.now)
        for record in telemetry(args.telemetry):
            mars.agent.submit(record, "ipn:1.1", mission.now)
        mission.say(f"Earth accepts {args.commands} commands for ipn:2.1; Mars accepts "
                    f"{args.telemetry} telemetry bundles for ipn:1.1 (each durable in its store)")
        mission.run(MISSION_START + 6 * 3600)
        ok = True
        for node, sent in ((mars, args.commands), (earth, args.telemetry)):
            unique = len({d.bundle_id for d in node.delivered})
            ok &= unique == sent == len(node.delivered)
            mission.say(f"{node.name} has delivered {unique} of {sent} bundles sent to it, "
                        f"{len(node.delivered) - unique} twice")
        report(mission, time.perf_counter() - started)
    return 0 if ok else 1


def report(mission: Mission, wall: float) -> None:
    print()
    for node in mission.nodes.values():
        counters = node.agent.counters
        fec = node.decoder.counters
        print(f"{node.name:5}: custody signals sent {counters['signals_sent']} received "
              f"{counters['signals_received']}, retransmissions {counters['retransmissions']}, "
              f"duplicates {counters['duplicates']}; FEC frames {fec.frames_received} "
              f"(corrected {fec.frames_corrected}, symbols {fec.symbols_corrected}, dropped "
              f"{sum(fec.frames_dropped.values())})")
    for name, link in mission.links.items():
        stats = link.channel.stats
        print(f"link to {name:5}: {stats.datagrams_in} datagrams, {stats.bits_flipped} bits "
              f"flipped, dropped {dict((k, v) for k, v in stats.dropped.items() if v)}")
    print(f"\n{(mission.now - MISSION_START) / 3600:.1f} h of mission time in {wall:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
