"""The emulator's TOML config (see docs/emulator.md for the full, commented shape).

    seed = 1
    [clock]            time_scale, epoch (as for the nodes)
    [emulator]         memory_cap, spool_dir, metrics, stats_interval, late_threshold
    [[link]]           name; a = {name, node, listen}; b = {...}; channel keys;
    [link.a_to_b]      channel keys for one direction only (also [link.b_to_a])

Channel keys: delay, ephemeris_date, rate, queue, ber, burst, loss, duplicate, reorder,
reorder_delay, contacts. Set on the link they apply to both directions.

Everything read is checked; a problem raises `ConfigError` whose message is one line naming the
file, the place in it and what was expected.
"""

from __future__ import annotations

import tomllib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtn.clock import ScaledClock, clock_from_config
from dtn.config.units import (
    parse_address,
    parse_duration,
    parse_instant,
    parse_probability,
    parse_rate,
    parse_size,
)
from dtn.contacts import ContactSchedule, Passes
from dtn.emulator.biterrors import BurstParams
from dtn.emulator.channel import DEFAULT_QUEUE_BYTES, DirectionParams

DEFAULT_MEMORY_CAP = 64 << 20
DEFAULT_LATE_THRESHOLD = 0.005  # wall seconds
MAX_CONFIG_BYTES = 1 << 20
CHANNEL_KEYS = (
    "delay",
    "ephemeris_date",
    "rate",
    "queue",
    "ber",
    "burst",
    "loss",
    "duplicate",
    "reorder",
    "reorder_delay",
    "contacts",
)
DIRECTIONS = ("a_to_b", "b_to_a")
_MISSING = object()


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line saying where and why."""


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


class _Table:
    """A TOML table being read: typed access with the location in errors, unknown keys refused."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {data!r}")
        self.data = data
        self.where = where
        self._used: set[str] = set()

    def take(self, key: str, parse: Callable[[Any], Any], default: object = _MISSING) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.where}: missing key {key!r}")
            return default
        try:
            return parse(self.data[key])
        except ConfigError:
            raise
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{self.where}.{key}: {error}") from None

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {', '.join(map(repr, unknown))}")


def load_config(path: str | Path) -> EmulatorConfig:
    """Read and check an emulator config file."""
    path = Path(path)
    document = _read_toml(path)
    try:
        return _build(document, path)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def parse_config(text: str, base_dir: Path = Path(".")) -> EmulatorConfig:
    """Check an emulator config given as TOML text (contacts files resolve under `base_dir`)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"not valid TOML: {error}") from None
    return _build(document, base_dir / "<config>")


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _build(document: dict, path: Path) -> EmulatorConfig:
    top = _Table(document, "config")
    clock_table = top.take("clock", lambda value: _Table(value, "[clock]").data, {})
    try:
        clock = clock_from_config(clock_table)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    seed = top.take("seed", _seed, 0)
    emulator = _Table(top.take("emulator", lambda value: value, {}), "[emulator]")
    settings = {
        "memory_cap": emulator.take("memory_cap", parse_size, DEFAULT_MEMORY_CAP),
        "spool_dir": emulator.take("spool_dir", lambda value: path.parent / _text(value), None),
        "metrics": emulator.take("metrics", parse_address, None),
        "stats_interval": emulator.take("stats_interval", parse_duration, 0.0),
        "late_threshold": emulator.take("late_threshold", parse_duration, DEFAULT_LATE_THRESHOLD),
    }
    emulator.finish()
    raw_links = top.take("link", _array_of_tables, [])
    top.finish()
    if not raw_links:
        raise ConfigError("no [[link]] defined")
    links = tuple(
        _link(raw, index, clock.epoch, path.parent) for index, raw in enumerate(raw_links)
    )
    _check_unique(links)
    return EmulatorConfig(
        links=links, time_scale=clock.time_scale, epoch=clock.epoch, seed=seed, **settings
    )


def _link(raw: object, index: int, epoch: float, base_dir: Path) -> LinkConfig:
    table = _Table(raw, f"link[{index}]")
    name = table.take("name", _name)
    table.where = f"link {name!r}"
    a = _side(table.take("a", lambda value: value), f"link {name!r} a", "a")
    b = _side(table.take("b", lambda value: value), f"link {name!r} b", "b")
    directions = {
        direction: _Table(
            table.take(direction, lambda value: value, {}), f"{table.where}.{direction}"
        )
        for direction in DIRECTIONS
    }
    shared = {key: table.data[key] for key in CHANNEL_KEYS if key in table.data}
    for key in shared:
        table.take(key, lambda value: value)
    table.finish()
    params = {}
    for direction, overrides in directions.items():
        params[direction] = _direction(table, shared, overrides, epoch, base_dir)
        overrides.finish()
    return LinkConfig(name=name, a=a, b=b, **params)


def _direction(
    link: _Table, shared: dict, overrides: _Table, epoch: float, base_dir: Path
) -> DirectionParams:
    def value(key: str, parse: Callable[[Any], Any], default: object) -> Any:
        if key in overrides.data:
            return overrides.take(key, parse)
        if key in shared:
            return _Table(shared, link.where).take(key, parse)
        return default

    delay = value("delay", _delay, 0.0)
    ephemeris_date = value("ephemeris_date", lambda raw: parse_instant(raw, epoch), None)
    if ephemeris_date is not None and delay is not None:
        raise ConfigError(f'{overrides.where}: ephemeris_date needs delay = "auto"')
    # ber and burst are one choice (the error model): a direction that sets either replaces
    # what the link sets.
    errors = overrides if {"ber", "burst"} & set(overrides.data) else _Table(shared, link.where)
    ber = errors.take("ber", parse_probability, 0.0)
    burst = errors.take("burst", _burst, None)
    if burst is not None and ber:
        raise ConfigError(f"{errors.where}: set ber or burst, not both")
    return DirectionParams(
        delay=delay,
        ephemeris_offset=0.0 if ephemeris_date is None else ephemeris_date - epoch,
        rate=value("rate", parse_rate, 0.0),
        queue_bytes=value("queue", parse_size, DEFAULT_QUEUE_BYTES),
        ber=ber,
        burst=burst,
        loss=value("loss", parse_probability, 0.0),
        duplicate=value("duplicate", parse_probability, 0.0),
        reorder=value("reorder", parse_probability, 0.0),
        reorder_delay=value("reorder_delay", parse_duration, 1.0),
        contacts=value("contacts", lambda raw: _contacts(raw, epoch, base_dir), None),
    )


def _side(raw: object, where: str, default_name: str) -> Side:
    table = _Table(raw, where)
    side = Side(
        name=table.take("name", _name, default_name),
        node=table.take("node", parse_address),
        listen=table.take("listen", parse_address),
    )
    table.finish()
    return side


def _contacts(raw: object, epoch: float, base_dir: Path) -> ContactSchedule:
    """A schedule from an inline table or from a TOML file named relative to the config."""
    if isinstance(raw, str):
        path = base_dir / raw
        try:
            return _schedule(_read_toml(path), str(path), epoch)
        except ConfigError as error:
            raise ConfigError(f"contacts file {error}") from None
    return _schedule(raw, "contacts", epoch)


def _schedule(raw: object, where: str, epoch: float) -> ContactSchedule:
    table = _Table(raw, where)

    def interval(item: object, place: str) -> tuple[float, float]:
        entry = _Table(item, place)
        start = entry.take("start", lambda value: parse_instant(value, epoch))
        end = entry.take("end", lambda value: parse_instant(value, epoch))
        entry.take("name", _text, "")
        entry.finish()
        if not start < end:
            raise ConfigError(f"{place}: start must come before end")
        return start, end

    windows = tuple(
        interval(item, f"{where} windows[{i}]")
        for i, item in enumerate(table.take("windows", _array_of_tables, []))
    )
    outages = tuple(
        interval(item, f"{where} outages[{i}]")
        for i, item in enumerate(table.take("outages", _array_of_tables, []))
    )
    passes = table.take("passes", lambda value: _passes(value, f"{where} passes", epoch), None)
    table.finish()
    return ContactSchedule(windows=windows, passes=passes, outages=outages)


def _passes(raw: object, where: str, epoch: float) -> Passes:
    table = _Table(raw, where)
    period = table.take("period", parse_duration)
    duration = table.take("duration", parse_duration)
    first = table.take("first", lambda value: parse_instant(value, epoch), epoch)
    table.finish()
    if not 0 < duration <= period:
        raise ConfigError(f"{where}: need 0 < duration <= period")
    return Passes(period=period, duration=duration, first=first)


def _burst(raw: object) -> BurstParams:
    table = _Table(raw, "burst")
    values = {
        "ber_good": table.take("ber_good", parse_probability),
        "ber_bad": table.take("ber_bad", parse_probability),
        "mean_good_bits": table.take("mean_good_bits", _at_least_one),
        "mean_bad_bits": table.take("mean_bad_bits", _at_least_one),
    }
    table.finish()
    return BurstParams(**values)


def _delay(raw: object) -> float | None:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    return parse_duration(raw)


def _check_unique(links: tuple[LinkConfig, ...]) -> None:
    names = [link.name for link in links]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"link name {name!r} is used twice")
    listens = [side.listen for link in links for side in (link.a, link.b) if side.listen[1]]
    for address in listens:
        if listens.count(address) > 1:
            raise ConfigError(f"listen address {address[0]}:{address[1]} is used twice")


def _array_of_tables(raw: object) -> list:
    if not isinstance(raw, list):
        raise ValueError(f"expected an array of tables, got {raw!r}")
    return raw


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def _name(raw: object) -> str:
    name = _text(raw)
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"expected a name of 1-64 letters, digits, '-', '_' or '.', got {raw!r}")
    return name


def _seed(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"expected a non-negative integer, got {raw!r}")
    return raw


def _at_least_one(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 1 <= raw < float("inf"):
        raise ValueError(f"expected a number >= 1, got {raw!r}")
    return float(raw)
