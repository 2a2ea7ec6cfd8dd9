"""A node's TOML config (every key: docs/config.md), and what the node builds from it.

Relative paths: `store.path` and `api.socket` resolve against the data folder (`data_dir`
argument, else $DTN_DATA_DIR, else the config file's folder); `security.keyfile` and neighbour
`contacts` files against the config file's folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dtn.agent import AgentConfig, Contact, ContactPlan, Link, Route, Router
from dtn.bundle import EID
from dtn.bundle.eid import IPN_SCHEME
from dtn.clock import ScaledClock
from dtn.codepoints import DEFAULT_CODEPOINTS, CodePoints
from dtn.config.schedule import ScheduleTable, schedule_from
from dtn.config.schema import (
    Address,
    ClockTable,
    ConfigError,
    Duration,
    Instant,
    LightTime,
    Name,
    Rate,
    Size,
    Table,
    convert,
    read_clock,
    read_toml,
    register,
)
from dtn.contacts import ContactSchedule
from dtn.ephemeris import earth_mars_light_time
from dtn.fec.frame import FrameConfig
from dtn.fec.pack import frame_room
from dtn.security import KeyringError, PolicyError
from dtn.security.keyfile import load_keyring
from dtn.security.keyring import Keyring
from dtn.security.policy import SecurityPolicy
from dtn.store import Quota

DATA_DIR_ENV = "DTN_DATA_DIR"
DEFAULT_CONTACT_HORIZON = 30 * 86_400.0  # s of contact plan built ahead (periodic passes)
_DEFAULTS = AgentConfig()


class NodeId(str):
    """An `ipn:` or `dtn:` endpoint ID."""


def _node_id(value: object) -> NodeId:
    if not isinstance(value, str):
        raise ValueError(f'expected a node ID such as "ipn:2.0", got {value!r}')
    try:
        EID.parse(value)
    except ValueError:
        raise ValueError(f'expected a node ID such as "ipn:2.0", got {value!r}') from None
    return NodeId(value)


class Mode(int):
    """File permission bits, written as an octal string "0600"."""


def _mode(value: object) -> Mode:
    if isinstance(value, str) and value.isdigit() and all(c in "01234567" for c in value):
        mode = int(value, 8)
        if mode <= 0o777:
            return Mode(mode)
    raise ValueError(f'expected an octal mode such as "0600", got {value!r}')


register(NodeId, _node_id)
register(Mode, _mode)


class NodeTable(Table):
    id: NodeId
    has_clock: bool = True


class StoreTable(Table):
    path: str = "dtn.db"
    max_bytes: Size | None = None
    max_bundles: int | None = None
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"

    def __post_init__(self) -> None:
        if self.max_bundles is not None and self.max_bundles < 1:
            raise ValueError("max_bundles must be at least 1")


class ApiTable(Table):
    socket: str = "dtn.sock"
    mode: Mode = Mode(0o600)
    max_message: Size = Size(16 << 20)


class MetricsTable(Table):
    address: Address | None = None  # None: no metrics endpoint


class LogTable(Table):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class AgentTable(Table):
    custody_margin: Duration = Duration(_DEFAULTS.custody_margin)
    signal_delay: Duration = Duration(_DEFAULTS.signal_delay)
    signal_max_ranges: int = _DEFAULTS.signal_max_ranges
    default_lifetime: Duration = Duration(_DEFAULTS.default_lifetime)
    admin_lifetime: Duration = Duration(_DEFAULTS.admin_lifetime)
    max_bundle_size: Size = Size(_DEFAULTS.max_bundle_size)
    transmit_batch: int = _DEFAULTS.transmit_batch
    pacing_window: Duration = Duration(_DEFAULTS.pacing_window)
    purge_batch: int = _DEFAULTS.purge_batch
    large_adu: Size = Size(_DEFAULTS.large_adu)
    fragment_size: Size = Size(_DEFAULTS.fragment_size)

    def __post_init__(self) -> None:
        if not 4096 <= self.fragment_size <= self.max_bundle_size:
            raise ValueError("fragment_size must be at least 4 KiB and at most max_bundle_size")
        for key in ("signal_max_ranges", "transmit_batch", "purge_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1")
        if not self.default_lifetime > 0:
            raise ValueError("default_lifetime must be > 0")


class FecTable(Table):
    frame_size: int = 8192
    depth: int = 4
    linger: Duration = Duration(0.05)
    reassembly_timeout: Duration = Duration(600.0)
    # Bundles longer than this many frames are fragmented before they go out (0: never), so a
    # lost datagram costs a custody retransmission of a few frames, not of a whole bundle.
    bundle_frames: int = 4

    def __post_init__(self) -> None:
        if not 256 <= self.frame_size <= 65_507:
            raise ValueError("frame_size must be 256-65507 bytes")
        FrameConfig(self.frame_size, self.depth)  # its checks: depth one of dtn.fec's
        if not 0 <= self.bundle_frames <= 65_536:
            raise ValueError("bundle_frames must be 0-65536")

    def fragment_above(self) -> int | None:
        """The bundle size above which bundles are fragmented for udp-rs (None: never)."""
        if not self.bundle_frames:
            return None
        return self.bundle_frames * frame_room(FrameConfig(self.frame_size, self.depth))


STREAM_LAYERS = ("tcpcl3", "tcpcl4", "mtcp", "stcp")
LTP_LAYERS = ("ltp", "ltp+rs")


class LtpTable(Table):
    """LTP (RFC 5326) for an ltp or ltp+rs neighbour. Engine ids default to the node numbers
    of ipn node IDs (ours, and the neighbour's `node_id`), as ION numbers its engines."""

    engine_id: int | None = None  # the neighbour's engine
    local_engine_id: int | None = None  # ours
    segment_size: Size = Size(1024)  # data bytes per data segment (ION's default span)
    aggregation_size: Size = Size(64 << 10)  # a block goes once it holds this much
    aggregation_time: Duration = Duration(1.0)  # or once its first bundle waited this long
    timeout_margin: Duration = Duration(1.0)  # added to 2 x light time for LTP's timers
    max_retransmissions: int = 10

    def __post_init__(self) -> None:
        for key in ("engine_id", "local_engine_id"):
            value = getattr(self, key)
            if value is not None and not 1 <= value < 1 << 63:
                raise ValueError(f"{key} must be 1..2^63-1")
        if not 64 <= self.segment_size <= 65_000:
            raise ValueError("segment_size must be 64-65000 bytes")
        if not self.aggregation_size >= 1:
            raise ValueError("aggregation_size must be at least 1 byte")
        if not self.max_retransmissions >= 1:
            raise ValueError("max_retransmissions must be at least 1")


class TlsTable(Table):
    """TLS for a tcpcl4 neighbour (paths: against the config file's folder). Required once
    given: a peer that does not offer TLS is refused."""

    certificate: str | None = None  # PEM: this node's certificate chain (a listener needs one)
    key: str | None = None  # PEM: its private key
    ca: str | None = None  # PEM: the CA certificates a peer's certificate must chain to
    server_name: str | None = None  # the name the neighbour's certificate must carry

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("certificate and key go together")


class NeighbourTable(Table):
    name: Name
    listen: Address | None = None
    address: Address | None = None
    node_id: NodeId | None = None
    cla: Literal["udp-rs", "tcpcl3", "tcpcl4", "mtcp", "stcp", "ltp", "ltp+rs"] = "udp-rs"
    # Stream layers: open the connection to `address` (false: send over the one the neighbour
    # opens to `listen`); keepalive in wall seconds (0: none); TCPCL segment size.
    connect: bool = True
    keepalive: Duration = Duration(15.0)
    segment_size: Size = Size(1 << 20)
    tls: TlsTable | None = None
    ltp: LtpTable = LtpTable()
    rate: Rate | None = None  # mission bit/s; None: unpaced
    light_time: LightTime = LightTime(0.0)
    ephemeris_date: Instant | None = None  # for "auto": the planets' date at the clock epoch
    # Default: custody over udp-rs; over the other layers their own acknowledgements make the
    # hop reliable (and LTP's retransmission rounds outlast a custody timer).
    custody: bool | None = None
    max_bundle_size: Size | None = None
    contacts: str | ScheduleTable | None = None
    contacts_horizon: Duration = Duration(DEFAULT_CONTACT_HORIZON)

    def __post_init__(self) -> None:
        if self.ephemeris_date is not None and not self.light_time.auto:
            raise ValueError('ephemeris_date needs light_time = "auto"')
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be > 0 (leave it out for an unpaced link)")
        if not self.contacts_horizon > 0:
            raise ValueError("contacts_horizon must be > 0")
        if not self.streams and (self.listen is None or self.address is None):
            raise ValueError(f"{self.cla} needs both listen and address")
        if self.connect and self.address is None and self.streams:
            raise ValueError("connect = true needs an address (or set connect = false)")
        if not self.connect and self.listen is None:
            raise ValueError("connect = false needs a listen address")
        if self.tls is not None and self.cla != "tcpcl4":
            raise ValueError("tls is for cla = \"tcpcl4\"")
        if not 0 <= self.keepalive <= 65_535:
            raise ValueError("keepalive must be 0-65535 s")
        if not 1024 <= self.segment_size <= 1 << 30:
            raise ValueError("segment_size must be 1 KiB to 1 GiB")

    @property
    def takes_custody(self) -> bool:
        return self.cla == "udp-rs" if self.custody is None else self.custody

    @property
    def streams(self) -> bool:
        """Whether the layer is a TCP stream (not udp-rs)."""
        return self.cla in STREAM_LAYERS


class RouteTable(Table):
    pattern: str
    via: list[Name]

    def __post_init__(self) -> None:
        if not self.via:
            raise ValueError("via must name at least one neighbour")


class CodePointsTable(Table):
    """The private numbers this node writes and reads (dtn.codepoints); every node of a
    network must agree on them."""

    custody_block: int = DEFAULT_CODEPOINTS.custody_block
    compression_block: int = DEFAULT_CODEPOINTS.compression_block
    custody_signal: int = DEFAULT_CODEPOINTS.custody_signal

    def __post_init__(self) -> None:
        self.codepoints()  # CodePoints' own checks

    def codepoints(self) -> CodePoints:
        return CodePoints(self.custody_block, self.compression_block, self.custody_signal)


class NodeFile(Table):
    """The file's shape; `NodeConfig` adds what resolving it against its place needs."""

    node: NodeTable
    clock: ClockTable = ClockTable()
    store: StoreTable = StoreTable()
    api: ApiTable = ApiTable()
    metrics: MetricsTable = MetricsTable()
    log: LogTable = LogTable()
    agent: AgentTable = AgentTable()
    fec: FecTable = FecTable()
    codepoints: CodePointsTable = CodePointsTable()
    security: dict | None = None  # read by SecurityPolicy.from_config
    neighbour: list[NeighbourTable] = []
    route: list[RouteTable] = []


@dataclass(frozen=True)
class NodeConfig:
    """A checked node config with its paths resolved (absolute `Path`s)."""

    path: Path  # the config file
    file: NodeFile  # every section as written (units parsed)
    store_path: Path
    api_socket: Path
    keyfile: Path | None
    time_scale: float
    epoch: float
    policy: SecurityPolicy
    schedules: dict[str, ContactSchedule] = field(default_factory=dict)  # by neighbour name

    @property
    def node_id(self) -> str:
        return self.file.node.id

    @property
    def neighbours(self) -> list[NeighbourTable]:
        return self.file.neighbour

    def clock(self) -> ScaledClock:
        return ScaledClock(self.time_scale, self.epoch)

    def agent_config(self) -> AgentConfig:
        agent = self.file.agent
        return AgentConfig(
            custody_margin=float(agent.custody_margin),
            signal_delay=float(agent.signal_delay),
            signal_max_ranges=agent.signal_max_ranges,
            default_lifetime=float(agent.default_lifetime),
            admin_lifetime=float(agent.admin_lifetime),
            max_bundle_size=int(agent.max_bundle_size),
            transmit_batch=agent.transmit_batch,
            pacing_window=float(agent.pacing_window),
            purge_batch=agent.purge_batch,
            large_adu=int(agent.large_adu),
            fragment_size=int(agent.fragment_size),
            has_clock=self.file.node.has_clock,
            codepoints=self.file.codepoints.codepoints(),
        )

    def ltp_engines(self, neighbour: NeighbourTable) -> tuple[int, int]:
        """(our engine id, the neighbour's) for an ltp neighbour: as configured, else the node
        numbers of the ipn node IDs. ConfigError when neither is given."""
        def number(eid: str | None) -> int | None:
            parsed = None if eid is None else EID.parse(eid)
            return parsed.ssp[0] if parsed is not None and parsed.scheme == IPN_SCHEME else None

        local = neighbour.ltp.local_engine_id or number(self.node_id)
        remote = neighbour.ltp.engine_id or number(neighbour.node_id)
        if local is None or remote is None:
            raise ConfigError(f"{self.path}: neighbour {neighbour.name}: set ltp.engine_id and "
                              "ltp.local_engine_id (engine ids come from ipn node IDs only)")
        return local, remote

    def quota(self) -> Quota:
        store = self.file.store
        return Quota(
            max_bytes=None if store.max_bytes is None else int(store.max_bytes),
            max_bundles=store.max_bundles,
        )

    def security_policy(self) -> SecurityPolicy:
        return self.policy

    def keyring(self) -> Keyring:
        """The key file's keys, checked against the policy's rules (ConfigError if not)."""
        if self.keyfile is None:
            return Keyring()
        try:
            keyring = load_keyring(self.keyfile)
            self.policy.check_keys(keyring)
        except (KeyringError, PolicyError) as error:
            raise ConfigError(f"{self.path}: {' '.join(str(error).split())}") from None
        return keyring

    def light_time(self, neighbour: NeighbourTable, at: float) -> float:
        """One-way light time to `neighbour` at mission time `at`: the fixed value, or for
        `auto` the Earth–Mars light time from dtn.ephemeris at `at` shifted by ephemeris_date."""
        if not neighbour.light_time.auto:
            return float(neighbour.light_time)
        offset = 0.0 if neighbour.ephemeris_date is None else neighbour.ephemeris_date - self.epoch
        return earth_mars_light_time(at + offset)

    def router(self, epoch: float) -> Router:
        """Routes, links and contact plan as of mission time `epoch`.

        A Link's owlt is the light time at `epoch` (for `auto`: from dtn.ephemeris); a contact
        window's owlt is the light time at the window's start. A schedule with periodic passes is
        unbounded, so the plan holds the windows of the `contacts_horizon` (default 30 days)
        after `epoch`; a node running longer builds the router again."""
        links, contacts = [], []
        for neighbour in self.neighbours:
            links.append(
                Link(
                    neighbour=neighbour.name,
                    owlt=self.light_time(neighbour, epoch),
                    rate_bps=None if neighbour.rate is None else float(neighbour.rate),
                    max_bundle_size=None
                    if neighbour.max_bundle_size is None
                    else int(neighbour.max_bundle_size),
                    custody=neighbour.takes_custody,
                    fragment_above=self.file.fec.fragment_above()
                    if neighbour.cla == "udp-rs" else None,
                    acknowledged=neighbour.cla != "udp-rs",
                )
            )
            schedule = self.schedules.get(neighbour.name)
            if schedule is not None:
                end = epoch + neighbour.contacts_horizon
                for start, stop in windows(schedule, epoch, end):
                    owlt = self.light_time(neighbour, start) if neighbour.light_time.auto else None
                    contacts.append(Contact(neighbour.name, start, stop, owlt=owlt))
        routes = [Route(route.pattern, tuple(route.via)) for route in self.file.route]
        return Router(routes, links, ContactPlan(contacts))


def windows(schedule: ContactSchedule, start: float, end: float) -> list[tuple[float, float]]:
    """The intervals within [start, end] in which `schedule` is up."""
    result = []
    t = start
    while t < end:
        up, _, until = schedule.state_at(t)
        stop = min(until, end)
        if up and stop > t:
            result.append((t, stop))
        if not math.isfinite(until) or until <= t:
            break
        t = until
    return result


def load_node_config(path: str | os.PathLike, data_dir: Path | None = None) -> NodeConfig:
    """Read and check a node config; ConfigError (one line, naming file and key) if unusable."""
    path = Path(path)
    document = read_toml(path)
    return build_node_config(document, path, data_dir)


def build_node_config(document: dict, path: Path, data_dir: Path | None = None) -> NodeConfig:
    """The NodeConfig of a TOML document read from `path` (which places relative paths)."""
    clock = read_clock(document, path)
    raw = convert(document, NodeFile, path, clock.epoch)
    config_dir = path.parent.absolute()
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir = Path(os.environ[DATA_DIR_ENV])
    data = (data_dir or config_dir).absolute()
    names = [neighbour.name for neighbour in raw.neighbour]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError(f"{path}: key `neighbour[{index}].name`: {name!r} is used twice")
    for index, route in enumerate(raw.route):
        for hop, name in enumerate(route.via):
            if name not in names:
                raise ConfigError(
                    f"{path}: key `route[{index}].via[{hop}]`: expected a neighbour's name "
                    f"({', '.join(names) or 'none defined'}), got {name!r}"
                )
    try:
        policy = SecurityPolicy.from_config(raw.security)
    except PolicyError as error:
        raise ConfigError(f"{path}: {' '.join(str(error).split())}") from None
    keyfile = None if policy.keyfile is None else config_dir / policy.keyfile
    if keyfile is not None:  # the policy names the resolved file too
        policy = SecurityPolicy(policy.rules, str(keyfile))
    schedules = {
        neighbour.name: schedule_from(
            neighbour.contacts,
            clock.epoch,
            config_dir,
            f"{path}: key `neighbour[{index}].contacts`",
        )
        for index, neighbour in enumerate(raw.neighbour)
        if neighbour.contacts is not None
    }
    return NodeConfig(
        path=path,
        file=raw,
        store_path=data / raw.store.path,
        api_socket=data / raw.api.socket,
        keyfile=keyfile,
        time_scale=clock.time_scale,
        epoch=clock.epoch,
        policy=policy,
        schedules=schedules,
    )


__all__ = ["NodeConfig", "NodeFile", "load_node_config", "build_node_config"]
