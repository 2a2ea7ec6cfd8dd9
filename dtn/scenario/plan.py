"""What a scenario sends and when, and what its bundles should take: shared by both modes so
that they send the same bytes at the same mission times."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from dtn.config.node import windows
from dtn.emulator.config import EmulatorConfig
from dtn.ephemeris import earth_mars_light_time
from dtn.scenario.config import Scenario, TrafficTable
from dtn.scenario.record import BundleRecord, LinkRecord

REFUSED_RETRY = 60.0  # mission seconds an application waits to send again after store_full
# A fill_store fault stores bundles of these sizes, each until the store refuses one, so that
# what is left is too small for any bundle
FILL_SIZES = (64 * 1024, 4096, 256)
FILL_MAX = 100_000  # bundles at most, whatever the quota


def filler(size: int, index: int) -> bytes:
    """Random, so that compression cannot shrink what is meant to fill a store."""
    return np.random.default_rng((size, index)).bytes(size)


def fill_text(node: str, count: int, size: int) -> str:
    return f"store of {node} filled ({count} bundles, {size / 1024:.0f} KiB)"


@dataclass(frozen=True)
class Send:
    at: float  # mission seconds after the start
    traffic: TrafficTable
    index: int

    @property
    def key(self) -> str:
        return f"{self.traffic.name}#{self.index}"


def sends(scenario: Scenario) -> list[Send]:
    """Every bundle of every traffic entry, in the order they are due."""
    due = [Send(t.start + i * t.interval, t, i) for t in scenario.file.traffic
           for i in range(t.count)]
    return sorted(due, key=lambda send: send.at)


def payload(scenario: Scenario, send: Send) -> bytes:
    """The bytes of one send: the file, seeded random bytes, or telemetry-like JSON lines
    (which compress), always the same for the same scenario."""
    traffic = send.traffic
    if traffic.file is not None:
        return (scenario.path.parent / traffic.file).read_bytes()
    if traffic.content == "telemetry":
        line = json.dumps({"source": traffic.source, "seq": send.index, "temp_c": -63.2,
                           "pressure_pa": 610 + send.index % 50}).encode() + b"\n"
        return (line * (traffic.size // len(line) + 1))[: traffic.size]
    seed = int.from_bytes(hashlib.sha256(f"{scenario.file.seed}/{send.key}".encode()).digest()[:8])
    return np.random.default_rng(seed).bytes(traffic.size)


def new_record(send: Send, data: bytes, at: float) -> BundleRecord:
    traffic = send.traffic
    return BundleRecord(key=send.key, source=traffic.source, destination=traffic.to,
                        size=len(data), sha256=hashlib.sha256(data).hexdigest(), sent_at=at)


def one_way(scenario: Scenario, source: str, destination: str, at: float) -> float:
    """The light time along the path from `source` to `destination` at mission time `at`
    (absolute): the sum of each hop's delay in the direction travelled."""
    total, here = 0.0, source
    for link in scenario.path_between(source, destination):
        direction = "a_to_b" if link.a == here else "b_to_a"
        light = scenario.owlt(link, direction)
        if light.auto:
            offset = 0.0 if light.date is None else light.date - scenario.epoch
            total += earth_mars_light_time(at + offset)
        else:
            total += light.seconds
        here = link.b if link.a == here else link.a
    return total


def path_light_times(scenario: Scenario, bundles: list[BundleRecord]) -> dict[str, float]:
    """`one_way` for each bundle, at the time it was sent."""
    result = {}
    for bundle in bundles:
        target = scenario.node_of(bundle.destination)
        light = one_way(scenario, bundle.source, target, scenario.epoch + bundle.sent_at)
        result[bundle.key] = light if math.isfinite(light) else 0.0
    return result


def link_records(scenario: Scenario, emulator: EmulatorConfig, end: float) -> list[LinkRecord]:
    """Each link at the start: its one-way light time (a to b) and when it is up until `end`
    (absolute), as the emulator will carry it (planned windows, and `cut` faults taken out)."""
    start, records = scenario.epoch, []
    for link in emulator.links:
        schedule = link.a_to_b.contacts
        up = [(start, end)] if schedule is None else windows(schedule, start, end)
        light = one_way(scenario, link.a.name, link.b.name, start)
        records.append(LinkRecord(link.name, link.a.name, link.b.name,
                                  light if math.isfinite(light) else 0.0,
                                  [(a - start, b - start) for a, b in up]))
    return records
