"""The Earth–Mars demo between real processes on 127.0.0.1: the link emulator and two node
daemons on one scaled clock (20-minute light time at x1000), driven through `dtn.AsyncClient`.

Mars sends telemetry and a 5 MB science file to Earth, Earth sends a drive command to Mars;
every bundle asks for a delivery report, so the sender sees custody taken by the next hop and
delivery at the destination, light time later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from dtn.client import AsyncClient
from dtn.scenario.processes import Network, copy_configs

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
WALL_LIMIT = 60.0


class Narrator:
    def __init__(self, epoch: float, scale: float) -> None:
        self.epoch, self.scale = epoch, scale

    def say(self, text: str, mission: float | None = None) -> None:
        if mission is None:
            mission = self.epoch + (time.time() - self.epoch) * self.scale
        minutes, seconds = divmod(mission - self.epoch, 60)
        print(f"T+{int(minutes):3d}:{seconds:06.3f} mission  {text}", flush=True)


async def _follow(client: AsyncClient, narrator: Narrator, who: str, pending: set[str]) -> None:
    sent: dict[str, int] = {}
    while pending:
        event = await client.events()
        if event is None:
            return
        what = {"forwarded": "handed to the link", "custody_accepted": "custody taken by the "
                "next hop", "delivered": "delivery report: arrived"}.get(event.event, event.event)
        if event.event == "forwarded":
            sent[event.bundle_id] = sent.get(event.bundle_id, 0) + 1
            if sent[event.bundle_id] > 1:
                what = ("custody timer ran out (no signal within 2 light times): retransmitted, "
                        f"try {sent[event.bundle_id]}")
        narrator.say(f"{who}: {event.bundle_id} {what}", event.at)
        if event.event == "delivered":
            pending.discard(event.bundle_id)


async def _receive(client: AsyncClient, narrator: Narrator, who: str, expected: dict[str, str],
                   got: dict[str, str]) -> None:
    while len(got) < len(expected):
        item = await client.receive()
        if item is None:
            return
        digest = hashlib.sha256(item.data).hexdigest()
        got[item.bundle_id] = digest
        intact = "intact" if expected.get(item.bundle_id) == digest else "DAMAGED OR UNKNOWN"
        narrator.say(f"{who} receives {item.bundle_id}: {len(item.data):,} B from {item.source}, "
                     f"{intact}")
        await client.ack(item)


async def _exchange(net: Network, narrator: Narrator, telemetry: int, file_size: int) -> bool:
    earth_socket, mars_socket = net.socket("earth", "earth.sock"), net.socket("mars", "mars.sock")
    async with AsyncClient(earth_socket) as earth, AsyncClient(mars_socket) as mars, \
            AsyncClient(earth_socket) as earth_inbox, AsyncClient(mars_socket) as mars_inbox:
        await earth_inbox.register("ipn:1.1")
        await mars_inbox.register("ipn:2.1")
        to_earth: dict[str, str] = {}
        to_mars: dict[str, str] = {}
        for i in range(telemetry):
            record = json.dumps({"sol": 1412, "seq": i, "temp_c": -63.2 + i % 7,
                                 "pressure_pa": 610 + i}).encode() * 20
            bundle_id = await mars.send("ipn:1.1", record, report=True)
            to_earth[bundle_id] = hashlib.sha256(record).hexdigest()
        narrator.say(f"Mars accepted {telemetry} telemetry bundles for ipn:1.1 (durable in its "
                     "store before the API said so)")
        science = Path(net.folder) / "science.bin"
        science.write_bytes(os.urandom(file_size))
        bundle_id = await mars.send("ipn:1.1", science, report=True)
        to_earth[bundle_id] = hashlib.sha256(science.read_bytes()).hexdigest()
        narrator.say(f"Mars accepted a {file_size / 1e6:.0f} MB science file: {bundle_id}")
        command = json.dumps({"cmd": "drive", "meters": 12.5}).encode()
        bundle_id = await earth.send("ipn:2.1", command, report=True)
        to_mars[bundle_id] = hashlib.sha256(command).hexdigest()
        narrator.say(f"Earth accepted a drive command for ipn:2.1: {bundle_id}")
        for client, ids in ((mars, to_earth), (earth, to_mars)):
            for bundle_id in ids:
                await client.watch(bundle_id)
        got_earth: dict[str, str] = {}
        got_mars: dict[str, str] = {}
        await asyncio.gather(
            _receive(earth_inbox, narrator, "Earth", to_earth, got_earth),
            _receive(mars_inbox, narrator, "Mars", to_mars, got_mars),
            _follow(mars, narrator, "Mars", set(to_earth)),
            _follow(earth, narrator, "Earth", set(to_mars)),
        )
        return got_earth == to_earth and got_mars == to_mars


def run(telemetry: int = 20, file_size: int = 5_000_000) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dtn-demo-") as folder_name:
        folder = Path(folder_name)
        earth, mars, emulator = copy_configs(
            [CONFIGS / "earth.toml", CONFIGS / "mars.toml", CONFIGS / "earth-mars-ci.toml"],
            folder, keyfile=CONFIGS / "keys-example.toml")
        with Network(folder) as net:
            net.emulator(emulator)
            net.node("earth", earth)
            net.node("mars", mars)
            net.wait_ready()
            narrator = Narrator(net.epoch, 1000.0)
            narrator.say("emulator, Earth (ipn:1.0) and Mars (ipn:2.0) running as processes; "
                         "one-way light time 20 min, 256 kbit/s, BER 1e-6, 0.1% loss, x1000")
            try:
                ok = asyncio.run(asyncio.wait_for(_exchange(net, narrator, telemetry, file_size),
                                                  WALL_LIMIT))
            except TimeoutError:
                ok = False
                narrator.say(f"not everything arrived within {WALL_LIMIT:.0f} s of wall time")
            codes = net.stop()
            for name in ("earth", "mars"):
                print(f"  {name} log: {net.processes[name].tail(3)}")
        narrator.say(f"{'everything arrived intact' if ok else 'FAILED'}; processes stopped "
                     f"{codes}; {time.monotonic() - started:.1f} s wall")
    return 0 if ok else 1
