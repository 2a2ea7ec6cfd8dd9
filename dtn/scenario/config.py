"""A scenario file (docs/scenarios.md): nodes, links, traffic, faults and expectations, and the
node and emulator configs made of it.

Both modes run from the same made configs: real mode writes them as TOML for `dtn node run` and
`dtn emulate`; virtual mode reads them with the same loaders and drives the cores. Every time in
a scenario counts from its start, which is the clock epoch of the run (contact windows written
as durations are relative to it, as in any node or emulator config).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from dtn.config.node import RouteTable
from dtn.config.schedule import IntervalTable, ScheduleTable
from dtn.config.schema import (
    ConfigError,
    Duration,
    Name,
    Probability,
    Size,
    Table,
    convert,
    read_toml,
)
from dtn.emulator.config import ChannelTable
from dtn.security.keyfile import generate_key, write_keyring
from dtn.security.keyring import Keyring

DEFAULT_TIME_SCALE = 1000.0
KEYFILE = "keys.toml"  # each run's own key file, in its folder (`write_run_keys`)
LINK_KEY = "scenario-link"  # its one key: every pair of the run's nodes shares it
MAX_BUNDLES = 100_000  # over all traffic entries: a scenario is a test, not a load generator
# A fill_store fault fills a node's store with bundles for this service of the node itself,
# which no application registers until the fault ends (so they stay stored).
FILL_SERVICE = 65535


class NodeTable(Table):
    name: Name
    number: Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]  # the node is ipn:NUMBER.0
    endpoints: list[str] = []  # registered by the scenario's applications; default ipn:N.1
    max_bytes: Size | None = None  # store quota
    max_bundles: int | None = None
    route: list[RouteTable] = []  # default: each neighbour's node, and everything via a
    # node's only neighbour

    @property
    def eid(self) -> str:
        return f"ipn:{self.number}.0"

    @property
    def application_endpoints(self) -> list[str]:
        return self.endpoints or [f"ipn:{self.number}.1"]

    @property
    def fill_endpoint(self) -> str:
        return f"ipn:{self.number}.{FILL_SERVICE}"


class LinkTable(ChannelTable, kw_only=True):
    """The emulator's channel keys (delay, rate, ber, burst, loss, contacts, ...) between two
    of the scenario's nodes, with per-direction overrides."""

    a: Name
    b: Name
    name: Name | None = None  # default "a-b"
    a_to_b: ChannelTable = ChannelTable()
    b_to_a: ChannelTable = ChannelTable()

    @property
    def link_name(self) -> str:
        return self.name or f"{self.a}-{self.b}"


class TrafficTable(Table, kw_only=True):
    name: Name
    source: Name = msgspec.field(name="from")
    to: str  # destination EID
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_BUNDLES)] = 1
    size: Size = Size(1024)
    file: str | None = None  # send this file (relative to the scenario) instead, `count` times
    content: Literal["random", "telemetry"] = "random"  # telemetry compresses, random does not
    start: Duration = Duration(0.0)
    interval: Duration = Duration(0.0)
    lifetime: Duration | None = None  # None: the node's default
    custody: bool = True
    priority: Annotated[int, msgspec.Meta(ge=0, le=2)] = 1
    report: bool = False


class AppTable(Table, kw_only=True):
    """A user's own program, run in real mode beside a node: it talks to the node's API
    ($DTN_API_SOCKET) and passes when it exits 0 within its time."""

    name: Name
    node: Name
    # argv, run in the scenario's folder; "python" is the Python that runs dtn
    run: Annotated[list[str], msgspec.Meta(min_length=1)]
    at: Duration = Duration(0.0)
    timeout: Duration | None = None  # mission time it may take; None: until the run ends


class FaultTable(Table, kw_only=True):
    at: Duration
    action: Literal["kill", "restart_emulator", "cut", "fill_store"]
    node: Name | None = None  # kill, fill_store: which node
    restart_after: Duration | None = None  # kill: when to start it again (None: never)
    link: Name | None = None  # cut: which link; an outage the nodes were not told of
    duration: Duration | None = None  # cut: how long; fill_store: how long it stays full
    # (None: to the end)

    def __post_init__(self) -> None:
        if self.action in ("kill", "fill_store") and self.node is None:
            raise ValueError(f"a {self.action} fault names its `node`")
        if self.action == "cut" and (self.link is None or self.duration is None):
            raise ValueError("a cut fault names its `link` and `duration`")


class ExpectTable(Table):
    delivered: Probability = Probability(1.0)  # fraction of the bundles sent
    exactly_once: bool = True
    byte_identical: bool = True
    within_light_times: Annotated[float, msgspec.Meta(gt=0)] | None = None
    max_retransmissions: Annotated[int, msgspec.Meta(ge=0)] | None = None
    none_expired: bool = True
    none_in_custody: bool = True  # at the end no node holds a bundle waiting for a signal


class ScenarioFile(Table):
    duration: Duration  # mission time the run may take at most
    node: list[NodeTable]
    link: list[LinkTable]
    traffic: list[TrafficTable] = []
    app: list[AppTable] = []
    fault: list[FaultTable] = []
    expect: ExpectTable = ExpectTable()
    name: Name | None = None  # default: the file's stem
    description: str = ""
    seed: Annotated[int, msgspec.Meta(ge=0)] = 1
    time_scale: Annotated[float, msgspec.Meta(gt=0, le=1e6)] = DEFAULT_TIME_SCALE  # real mode
    security: bool = True  # payloads between the nodes encrypted (BCB, the example key)
    agent: dict = {}  # extra [agent] keys for every node (docs/config.md)
    fec: dict = {}  # extra [fec] keys for every node


@dataclass(frozen=True)
class Scenario:
    path: Path
    file: ScenarioFile
    document: dict  # as read, to resolve again against another epoch
    epoch: float  # mission Unix time of the start; relative instants in `file` count from it

    def at_epoch(self, epoch: float) -> Scenario:
        """The same scenario starting at mission time `epoch`."""
        return Scenario(self.path, convert(self.document, ScenarioFile, self.path, epoch),
                        self.document, epoch)

    @property
    def name(self) -> str:
        return self.file.name or self.path.stem

    def node(self, name: str) -> NodeTable:
        return next(node for node in self.file.node if node.name == name)

    def neighbours(self, name: str) -> list[tuple[LinkTable, str]]:
        """(link, neighbour's name) for each link of node `name`, in file order."""
        result = []
        for link in self.file.link:
            if link.a == name:
                result.append((link, link.b))
            elif link.b == name:
                result.append((link, link.a))
        return result

    def node_of(self, eid: str) -> str | None:
        """The scenario node an `ipn:` EID belongs to."""
        try:
            number = int(eid.removeprefix("ipn:").split(".")[0])
        except ValueError:
            return None
        return next((node.name for node in self.file.node if node.number == number), None)

    def path_between(self, source: str, destination: str) -> list[LinkTable]:
        """The links of the shortest path between two nodes (breadth first), [] if none."""
        came: dict[str, tuple[str, LinkTable] | None] = {source: None}
        queue = deque([source])
        while queue:
            here = queue.popleft()
            for link, there in self.neighbours(here):
                if there not in came:
                    came[there] = (here, link)
                    queue.append(there)
        if destination not in came:
            return []
        hops = []
        while (step := came[destination]) is not None:
            destination, link = step
            hops.append(link)
        return hops[::-1]

    def owlt(self, link: LinkTable, direction: str) -> LightTimeSpec:
        table = getattr(link, direction)
        delay = table.delay if table.delay is not None else link.delay
        date = table.ephemeris_date if table.ephemeris_date is not None else link.ephemeris_date
        return LightTimeSpec(0.0 if delay is None else float(delay), date)


@dataclass(frozen=True)
class LightTimeSpec:
    """A direction's light time as written: seconds, or NaN for "auto" at `date`."""

    seconds: float
    date: float | None

    @property
    def auto(self) -> bool:
        return math.isnan(self.seconds)


def load_scenario(path: str | Path, epoch: float = 0.0) -> Scenario:
    """Read and check a scenario file; its relative instants count from `epoch`."""
    path = Path(path)
    document = read_toml(path)
    scenario = Scenario(path, convert(document, ScenarioFile, path, epoch), document, epoch)
    _check(scenario)
    return scenario


def _check(scenario: Scenario) -> None:
    file, where = scenario.file, scenario.path
    names = [node.name for node in file.node]
    if len(names) < 2:
        raise ConfigError(f"{where}: a scenario needs at least two [[node]]s")
    for key, values in (("node", names), ("node number", [n.number for n in file.node]),
                        ("link", [link.link_name for link in file.link]),
                        ("traffic", [t.name for t in file.traffic]),
                        ("app", [a.name for a in file.app])):
        for index, value in enumerate(values):
            if values.index(value) != index:
                raise ConfigError(f"{where}: {key} {value!r} is used twice")
    for index, link in enumerate(file.link):
        for side in ("a", "b"):
            if getattr(link, side) not in names:
                raise ConfigError(f"{where}: key `link[{index}].{side}`: expected a node's name "
                                  f"({', '.join(names)}), got {getattr(link, side)!r}")
        if link.a == link.b:
            raise ConfigError(f"{where}: key `link[{index}]`: a link joins two different nodes")
    if sum(t.count for t in file.traffic) > MAX_BUNDLES:
        raise ConfigError(f"{where}: more than {MAX_BUNDLES} bundles in all traffic")
    for index, traffic in enumerate(file.traffic):
        if traffic.source not in names:
            raise ConfigError(f"{where}: key `traffic[{index}].from`: expected a node's name, "
                              f"got {traffic.source!r}")
        target = scenario.node_of(traffic.to)
        if target is None:
            raise ConfigError(f"{where}: key `traffic[{index}].to`: {traffic.to!r} is no "
                              "endpoint of a scenario node (ipn:NUMBER.SERVICE)")
        if traffic.to not in scenario.node(target).application_endpoints:
            raise ConfigError(f"{where}: key `traffic[{index}].to`: {traffic.to!r} is not in "
                              f"the endpoints of node {target!r}")
        if not scenario.path_between(traffic.source, target):
            raise ConfigError(f"{where}: key `traffic[{index}]`: no path of links from "
                              f"{traffic.source!r} to {target!r}")
        if traffic.file is not None and not (where.parent / traffic.file).is_file():
            raise ConfigError(f"{where}: key `traffic[{index}].file`: no file "
                              f"{where.parent / traffic.file}")
    for node in file.node:
        if node.fill_endpoint in node.endpoints:
            raise ConfigError(f"{where}: node {node.name!r}: {node.fill_endpoint} is kept for "
                              "fill_store faults")
    for index, app in enumerate(file.app):
        if app.node not in names:
            raise ConfigError(f"{where}: key `app[{index}].node`: expected a node's name, "
                              f"got {app.node!r}")
    links = [link.link_name for link in file.link]
    for index, fault in enumerate(file.fault):
        if fault.node is not None and fault.node not in names:
            raise ConfigError(f"{where}: key `fault[{index}].node`: expected a node's name, "
                              f"got {fault.node!r}")
        if fault.link is not None and fault.link not in links:
            raise ConfigError(f"{where}: key `fault[{index}].link`: expected a link's name "
                              f"({', '.join(links)}), got {fault.link!r}")


# === the configs a run is made of ==============================================================


@dataclass(frozen=True)
class Ports:
    """Per link: where node a and node b receive, and the emulator's sockets towards each."""

    a_listen: int
    b_listen: int
    to_b: int  # the emulator listens here for a's traffic
    to_a: int


def write_run_keys(folder: Path) -> None:
    """A fresh random key for this run's BCBs (no well-known demo key, nothing to ship)."""
    write_keyring(folder / KEYFILE, Keyring({LINK_KEY: generate_key()}))


def node_document(scenario: Scenario, name: str, ports: dict[str, Ports],
                  log_format: str = "text") -> dict:
    """The node config (as a TOML document) of scenario node `name`."""
    node = scenario.node(name)
    file = scenario.file
    neighbours, routes = [], []
    for link, other in scenario.neighbours(name):
        port = ports[link.link_name]
        forward = link.a == name
        direction = "a_to_b" if forward else "b_to_a"
        light = scenario.owlt(link, direction)
        neighbour = {
            "name": other,
            "node_id": scenario.node(other).eid,
            "listen": f"127.0.0.1:{port.a_listen if forward else port.b_listen}",
            "address": f"127.0.0.1:{port.to_b if forward else port.to_a}",
            "light_time": "auto" if light.auto else light.seconds,
        }
        if light.date is not None:
            neighbour["ephemeris_date"] = light.date
        rate = _channel_value(link, direction, "rate")
        if rate is not None:
            neighbour["rate"] = float(rate)
        contacts = _channel_value(link, direction, "contacts")
        if contacts is not None:  # the planned windows; a `cut` is not in the plan
            neighbour["contacts"] = _schedule_document(contacts)
        neighbours.append(neighbour)
        if not node.route:
            routes.append({"pattern": f"ipn:{scenario.node(other).number}.*", "via": [other]})
    if node.route:
        routes = [{"pattern": r.pattern, "via": list(r.via)} for r in node.route]
    elif len(neighbours) == 1:
        routes.append({"pattern": "ipn:*", "via": [neighbours[0]["name"]]})
    store: dict = {"path": f"{name}.db", "synchronous": "NORMAL"}
    if node.max_bytes is not None:
        store["max_bytes"] = int(node.max_bytes)
    if node.max_bundles is not None:
        store["max_bundles"] = node.max_bundles
    document = {
        "node": {"id": node.eid},
        "clock": {"time_scale": file.time_scale},
        "store": store,
        "api": {"socket": f"{name}.sock"},
        "log": {"format": log_format},
        "agent": dict(file.agent),
        "fec": dict(file.fec),
        "neighbour": neighbours,
        "route": routes,
    }
    if file.security:
        others = [n for n in file.node if n.name != name]
        document["security"] = {
            "keyfile": KEYFILE,
            "rule": [{"destination": f"ipn:{other.number}.*", "source": f"ipn:{other.number}.*",
                      "bcb": "A256GCM", "key": LINK_KEY} for other in others],
        }
    return document


def emulator_document(scenario: Scenario, ports: dict[str, Ports]) -> dict:
    """The emulator config (as a TOML document): every link, with each `cut` fault added to
    its outages (the emulator drops; the nodes, not told, find out by custody timeouts)."""
    links = []
    for link in scenario.file.link:
        port = ports[link.link_name]
        table = _channel_document(link)
        table.update(
            name=link.link_name,
            a={"name": link.a, "node": f"127.0.0.1:{port.a_listen}",
               "listen": f"127.0.0.1:{port.to_b}"},
            b={"name": link.b, "node": f"127.0.0.1:{port.b_listen}",
               "listen": f"127.0.0.1:{port.to_a}"},
        )
        for direction in ("a_to_b", "b_to_a"):
            overrides = _channel_document(getattr(link, direction))
            if overrides:
                table[direction] = overrides
        start = scenario.epoch
        cuts = [{"start": _iso(start + fault.at), "end": _iso(start + fault.at + fault.duration),
                 "name": "cut"}
                for fault in scenario.file.fault
                if fault.action == "cut" and fault.link == link.link_name]
        if cuts:
            for owner in [table] + [table[d] for d in ("a_to_b", "b_to_a") if d in table
                                    and "contacts" in table[d]]:
                contacts = owner.setdefault("contacts", {})
                contacts["outages"] = contacts.get("outages", []) + cuts
        links.append(table)
    return {"seed": scenario.file.seed, "clock": {"time_scale": scenario.file.time_scale},
            "link": links}


def _channel_value(link: LinkTable, direction: str, key: str) -> object:
    value = getattr(getattr(link, direction), key)
    return getattr(link, key) if value is None else value


_CHANNEL_KEYS = tuple(ChannelTable.__struct_fields__)


def _channel_document(table: ChannelTable) -> dict:
    """The channel keys set in `table`, as TOML values (seconds, bit/s, bytes as numbers)."""
    document = {}
    for key in _CHANNEL_KEYS:
        value = getattr(table, key)
        if value is None:
            continue
        if key == "delay":
            value = "auto" if math.isnan(value) else float(value)
        elif key == "contacts":
            value = _schedule_document(value)
        elif isinstance(value, msgspec.Struct):
            value = msgspec.structs.asdict(value)
        elif key == "ephemeris_date":
            value = _iso(value)
        document[key] = value
    return document


def _schedule_document(schedule: str | ScheduleTable) -> dict | str:
    """A schedule as TOML: instants as ISO dates (absolute, so that any epoch reads them the
    same) — the scenario's relative instants were resolved against the run's epoch already."""
    if isinstance(schedule, str):
        return schedule

    def interval(table: IntervalTable) -> dict:
        return {"start": _iso(table.start), "end": _iso(table.end), "name": table.name}

    document: dict = {}
    if schedule.windows:
        document["windows"] = [interval(w) for w in schedule.windows]
    if schedule.outages:
        document["outages"] = [interval(o) for o in schedule.outages]
    if schedule.passes is not None:
        passes = {"period": float(schedule.passes.period),
                  "duration": float(schedule.passes.duration)}
        if schedule.passes.first is not None:
            passes["first"] = _iso(schedule.passes.first)
        document["passes"] = passes
    return document


def _iso(instant: float) -> str:
    return dt.datetime.fromtimestamp(instant, dt.UTC).isoformat()
