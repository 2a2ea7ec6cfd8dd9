"""The emulator's TOML config (see docs/emulator.md for the full, commented shape).

    seed = 1
    [clock]            time_scale, epoch (as for the nodes)
    [emulator]         memory_cap, spool_dir, metrics, stats_interval, late_threshold
    [[link]]           name; a = {name, node, listen}; b = {...}; channel keys;
    [link.a_to_b]      channel keys for one direction only (also [link.b_to_a])

Channel keys: delay, ephemeris_date, rate, queue, ber, burst, loss, duplicate, reorder,
reorder_delay, contacts. Set on the link they apply to both directions.

Read through the shared schema layer (dtn.config.schema): a problem raises `ConfigError` whose
message is one line naming the file, the key and what was expected.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np

from dtn.clock import ScaledClock
from dtn.config.schedule import ScheduleTable, schedule_from
from dtn.config.schema import (
    Address,
    ConfigError,
    Duration,
    Instant,
    LightTime,
    Name,
    Probability,
    Rate,
    Size,
    Table,
    convert,
    parse_toml,
    read_clock,
    read_toml,
)
from dtn.emulator.biterrors import BurstParams
from dtn.emulator.channel import DEFAULT_QUEUE_BYTES, DirectionParams

DEFAULT_MEMORY_CAP = 64 << 20
DEFAULT_LATE_THRESHOLD = 0.005  # wall seconds
DIRECTIONS = ("a_to_b", "b_to_a")

__all__ = ["ConfigError", "EmulatorConfig", "LinkConfig", "Side", "load_config", "parse_config"]


@dataclass(frozen=True)
class Side:
    name: str
    node: tuple[str, int]  # where the node on this side listens: traffic for it is sent here
    listen: tuple[str, int]  # where the proxy listens for this node's traffic to the other side


@dataclass(frozen=True)
class LinkConfig:
    name: str
    a: Side
    b: Side
    a_to_b: DirectionParams
    b_to_a: DirectionParams


@dataclass(frozen=True)
class EmulatorConfig:
    links: tuple[LinkConfig, ...]
    time_scale: float = 1.0
    epoch: float = 0.0
    seed: int = 0
    memory_cap: int = DEFAULT_MEMORY_CAP
    spool_dir: Path | None = None
    metrics: tuple[str, int] | None = None
    stats_interval: float = 0.0  # wall seconds; 0: no periodic stats log
    late_threshold: float = DEFAULT_LATE_THRESHOLD  # wall seconds

    def clock(self) -> ScaledClock:
        return ScaledClock(self.time_scale, self.epoch)

    def direction_seed(self, link: LinkConfig, direction: str) -> np.random.SeedSequence:
        """The seed of one direction's random streams: fixed by the config seed and the names."""
        key = zlib.crc32(f"{link.name}/{direction}".encode())
        return np.random.SeedSequence(self.seed, spawn_key=(key,))


# The file's shape. Channel keys default to None ("not set here") so that a direction table
# can override the link's value and the link's value can stand for both directions.
AtLeastOne = Annotated[float, msgspec.Meta(ge=1)]


class BurstTable(Table):
    ber_good: Probability
    ber_bad: Probability
    mean_good_bits: AtLeastOne
    mean_bad_bits: AtLeastOne


class ChannelTable(Table):
    delay: LightTime | None = None  # "auto": the Earth–Mars light time from dtn.ephemeris
    ephemeris_date: Instant | None = None
    rate: Rate | None = None
    queue: Size | None = None
    ber: Probability | None = None
    burst: BurstTable | None = None
    loss: Probability | None = None
    duplicate: Probability | None = None
    reorder: Probability | None = None
    reorder_delay: Duration | None = None
    contacts: str | ScheduleTable | None = None


class SideTable(Table):
    node: Address
    listen: Address
    name: Name | None = None  # None: "a" or "b"


class LinkTable(ChannelTable, kw_only=True):
    name: Name
    a: SideTable
    b: SideTable
    a_to_b: ChannelTable = ChannelTable()
    b_to_a: ChannelTable = ChannelTable()


class EmulatorTable(Table):
    memory_cap: Size = Size(DEFAULT_MEMORY_CAP)
    spool_dir: str | None = None  # relative: to the config file's folder
    metrics: Address | None = None
    stats_interval: Duration = Duration(0.0)
    late_threshold: Duration = Duration(DEFAULT_LATE_THRESHOLD)


class EmulatorFile(Table):
    seed: Annotated[int, msgspec.Meta(ge=0)] = 0
    clock: dict = {}  # read first, by read_clock
    emulator: EmulatorTable = EmulatorTable()
    link: list[LinkTable] = []


def load_config(path: str | Path) -> EmulatorConfig:
    """Read and check an emulator config file."""
    path = Path(path)
    return build_config(read_toml(path), path)


def parse_config(text: str, base_dir: Path = Path(".")) -> EmulatorConfig:
    """Check an emulator config given as TOML text (contacts files resolve under `base_dir`)."""
    where = base_dir / "<config>"
    return build_config(parse_toml(text, where), where)


def build_config(document: dict, path: Path) -> EmulatorConfig:
    """Check an emulator config given as a TOML document; `path` names it in errors and
    contacts files resolve beside it."""
    clock = read_clock(document, path)
    raw = convert(document, EmulatorFile, path, clock.epoch)
    if not raw.link:
        raise ConfigError(f"{path}: no [[link]] defined")
    links = tuple(_link(link, index, clock.epoch, path) for index, link in enumerate(raw.link))
    _check_unique(links, path)
    settings = raw.emulator
    return EmulatorConfig(
        links=links,
        time_scale=clock.time_scale,
        epoch=clock.epoch,
        seed=raw.seed,
        memory_cap=int(settings.memory_cap),
        spool_dir=None if settings.spool_dir is None else path.parent / settings.spool_dir,
        metrics=None if settings.metrics is None else tuple(settings.metrics),
        stats_interval=float(settings.stats_interval),
        late_threshold=float(settings.late_threshold),
    )


def _link(raw: LinkTable, index: int, epoch: float, path: Path) -> LinkConfig:
    where = f"{path}: key `link[{index}]"
    params = {
        direction: _direction(raw, getattr(raw, direction), f"{where}", direction, epoch, path)
        for direction in DIRECTIONS
    }
    return LinkConfig(
        name=raw.name,
        a=Side(raw.a.name or "a", tuple(raw.a.node), tuple(raw.a.listen)),
        b=Side(raw.b.name or "b", tuple(raw.b.node), tuple(raw.b.listen)),
        **params,
    )


def _direction(
    link: LinkTable,
    overrides: ChannelTable,
    link_where: str,
    direction: str,
    epoch: float,
    path: Path,
) -> DirectionParams:
    """One direction's parameters: its own table's keys, else the link's, else the defaults.
    `link_where` is "FILE: key `link[i]" (without the closing backquote)."""
    where = f"{link_where}.{direction}`"

    def value(key: str, default: object) -> object:
        for table in (overrides, link):
            if getattr(table, key) is not None:
                return getattr(table, key)
        return default

    delay = value("delay", LightTime(0.0))
    ephemeris_date = value("ephemeris_date", None)
    if ephemeris_date is not None and not delay.auto:
        raise ConfigError(f'{where}: ephemeris_date needs delay = "auto"')
    # ber and burst are one choice (the error model): a direction that sets either replaces
    # what the link sets.
    errors = overrides if overrides.ber is not None or overrides.burst is not None else link
    if errors.ber and errors.burst is not None:
        raise ConfigError(f"{where}: set ber or burst, not both")
    burst = errors.burst
    contacts = value("contacts", None)
    return DirectionParams(
        delay=None if delay.auto else float(delay),
        ephemeris_offset=0.0 if ephemeris_date is None else ephemeris_date - epoch,
        rate=float(value("rate", 0.0)),
        queue_bytes=int(value("queue", DEFAULT_QUEUE_BYTES)),
        ber=float(errors.ber or 0.0),
        burst=None
        if burst is None
        else BurstParams(burst.ber_good, burst.ber_bad, burst.mean_good_bits, burst.mean_bad_bits),
        loss=float(value("loss", 0.0)),
        duplicate=float(value("duplicate", 0.0)),
        reorder=float(value("reorder", 0.0)),
        reorder_delay=float(value("reorder_delay", 1.0)),
        contacts=None
        if contacts is None
        else schedule_from(
            contacts,
            epoch,
            path.parent,
            f"{where[:-1] if overrides.contacts is not None else link_where}.contacts`",
        ),
    )


def _check_unique(links: tuple[LinkConfig, ...], path: Path) -> None:
    names = [link.name for link in links]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError(f"{path}: key `link[{index}].name`: {name!r} is used twice")
    listens = [side.listen for link in links for side in (link.a, link.b) if side.listen[1]]
    for address in listens:
        if listens.count(address) > 1:
            raise ConfigError(f"{path}: listen address {address[0]}:{address[1]} is used twice")
