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
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dtn.agent import Deliver, Link, Route
from dtn.emulator.channel import ChannelDirection, DirectionParams
from dtn.fec import FrameConfig
from dtn.scenario.virtual import VirtualNet, VirtualNode

MISSION_START = 1_795_651_200.0  # 2026-11-26T00:00:00Z, mission time (Unix seconds)
LIGHT_TIME = 20 * 60.0


class Mission:
    """Earth and Mars on dtn.scenario.virtual's VirtualNet, both directions emulated (framing,
    channel, decoding), narrated as it goes."""

    def __init__(self, folder: Path, seed: int, loss: float, ber: float) -> None:
        self.log: list[str] = []
        self._pending_delivery: tuple | None = None
        self._counted: dict[str, Counter] = {}
        self._narrated: dict[str, int] = {}
        self.net = VirtualNet(folder, MISSION_START)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self.net.add_node("earth", 1, [Route("ipn:2.*", ("mars",))], [Link("mars", LIGHT_TIME)])
        self.net.add_node("mars", 2, [Route("ipn:1.*", ("earth",))], [Link("earth", LIGHT_TIME)])
        self.nodes = self.net.nodes
        frames = FrameConfig(frame_size=8192, depth=4)
        for (sender, receiver), rate, seed_sequence in ((("earth", "mars"), 256_000, seeds[0]),
                                                       (("mars", "earth"), 2_000_000, seeds[1])):
            params = DirectionParams(delay=LIGHT_TIME, rate=rate, ber=ber, loss=loss)
            self.net.emulate(sender, receiver, ChannelDirection(params, seed_sequence), frames,
                             rate)
        self.net.after_collect.append(self._narrate_step)
        self.net.contact("earth", "mars", True)

    @property
    def now(self) -> float:
        return self.net.now

    def say(self, text: str) -> None:
        self._flush_deliveries()
        self._print(self.now, text)

    def _print(self, at: float, text: str) -> None:
        hours, rest = divmod(at - MISSION_START, 3600)
        self.log.append(f"T+{int(hours):02d}:{int(rest // 60):02d}:{rest % 60:06.3f}  {text}")
        print(self.log[-1])

    def _delivered(self, node: VirtualNode, deliveries: list[Deliver]) -> None:
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
            self._print(since, f"{name.title()} delivers {count} bundle(s), {size:,} B, to "
                        f"{endpoint}")

    def _narrate_step(self) -> None:
        for node in self.nodes.values():
            fresh = node.delivered[self._narrated.get(node.name, 0):]
            self._narrated[node.name] = len(node.delivered)
            delivered = [d for d in fresh if not d.is_admin_record]
            if delivered:
                self._delivered(node, delivered)
            counters = Counter(node.agent.counters)
            self._narrate(node.name.title(), counters - self._counted.get(node.name, Counter()))
            self._counted[node.name] = counters

    def _narrate(self, name: str, change: Counter) -> None:
        if change["signals_sent"]:
            self.say(f"{name} takes custody: sends {change['signals_sent']} custody signal(s)")
        if change["custody_released"]:
            self.say(f"{name} hears custody accepted: releases "
                     f"{change['custody_released']} bundle(s) from its store")
        if change["retransmissions"]:
            self.say(f"{name}'s custody timer runs out: retransmits "
                     f"{change['retransmissions']} bundle(s)")
        if change["duplicates"]:
            self.say(f"{name} drops {change['duplicates']} duplicate(s)")

    def run(self, until: float) -> None:
        self.net.run_until(until)


def delivered_payloads(node: VirtualNode) -> list[Deliver]:
    return [d for d in node.delivered if not d.is_admin_record]


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
            delivered = delivered_payloads(node)
            unique = len({d.bundle_id for d in delivered})
            ok &= unique == sent == len(delivered)
            mission.say(f"{node.name.title()} has delivered {unique} of {sent} bundles sent to "
                        f"it, {len(delivered) - unique} twice")
        report(mission, time.perf_counter() - started)
    return 0 if ok else 1


def report(mission: Mission, wall: float) -> None:
    print()
    for (_, receiver), direction in mission.net.emulated.items():
        counters = mission.nodes[receiver].agent.counters
        fec = direction.decoder.counters
        print(f"{receiver.title():5}: custody signals sent {counters['signals_sent']} received "
              f"{counters['signals_received']}, retransmissions {counters['retransmissions']}, "
              f"duplicates {counters['duplicates']}; FEC frames {fec.frames_received} "
              f"(corrected {fec.frames_corrected}, symbols {fec.symbols_corrected}, dropped "
              f"{sum(fec.frames_dropped.values())})")
    for (_, receiver), direction in mission.net.emulated.items():
        stats = direction.channel.stats
        dropped = {reason: count for reason, count in stats.dropped.items() if count}
        print(f"link to {receiver.title():5}: {stats.datagrams_in} datagrams, "
              f"{stats.bits_flipped} bits flipped, dropped {dropped}")
    print(f"\n{(mission.now - MISSION_START) / 3600:.1f} h of mission time in {wall:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
