"""The typed schema layer every config file is read through: TOML in, msgspec Structs out.

A config's shape is a tree of `msgspec.Struct`s declared with `forbid_unknown_fields` (see
`Table`); quantities written with units are fields of the marker types below (`Duration`,
`Rate`, `Size`, `Address`, ...), which msgspec hands to one decode hook that calls the parsers
in `dtn.config.units`. Whatever goes wrong (unreadable file, bad TOML, wrong type, bad unit,
unknown key, a `__post_init__` check) comes out as one `ConfigError` line:

    configs/mars.toml: key `neighbour[0].rate`: expected a rate such as 256000 or
    "256 kbit/s", got 'fast'      (one line in fact)
"""

from __future__ import annotations

import math
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from dtn.clock import ScaledClock, clock_from_config
from dtn.config import units

MAX_CONFIG_BYTES = 1 << 20

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line saying where and why."""


class Table(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base of every config table: unknown keys are errors."""


# Marker types: subclasses of the plain value so that code using a config sees numbers and
# tuples; msgspec passes every raw value of these types to `_decode_hook`.
class Duration(float):
    """Seconds; written 1200, "20min", "1.5h", "250ms" or "1sol"."""


class Rate(float):
    """Bit/s of mission time; written 256000 or "256 kbit/s"."""


class Size(int):
    """Bytes; written 65536 or "64MiB"."""


class Probability(float):
    """A number from 0 to 1."""


class Address(tuple):
    """("127.0.0.1", 4556) from "127.0.0.1:4556"."""


class Instant(float):
    """Mission Unix time: an absolute date, or a duration after the clock epoch."""


class Name(str):
    """1-64 letters, digits, '-', '_' or '.'."""


class LightTime(float):
    """Seconds, or "auto" (held as NaN; test with `.auto`): from dtn.ephemeris."""

    @property
    def auto(self) -> bool:
        return math.isnan(self)


def _light_time(value: object) -> LightTime:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return LightTime(math.nan)
    try:
        return LightTime(units.parse_duration(value))
    except ValueError:
        raise ValueError(f'expected a duration such as "20min", or "auto", got {value!r}') from None


_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"expected a name of 1-64 letters, digits, '-', '_' or '.', got {value!r}")
    return value


_PARSERS: dict[type, Callable[[Any], Any]] = {
    Duration: units.parse_duration,
    Rate: units.parse_rate,
    Size: units.parse_size,
    Probability: units.parse_probability,
    Address: units.parse_address,
    Name: parse_name,
    LightTime: _light_time,
}


def register(kind: type, parse: Callable[[Any], Any]) -> None:
    """Make `kind` a marker type read with `parse` (raw value -> value; ValueError if bad)."""
    _PARSERS[kind] = parse


def _hook(epoch: float) -> Callable[[type, Any], Any]:
    def decode(kind: type, value: Any) -> Any:
        if kind is Instant:
            return Instant(units.parse_instant(value, epoch))
        parse = _PARSERS.get(kind)
        if parse is None:
            raise NotImplementedError
        return kind(parse(value))

    return decode


def convert(document: object, kind: type[T], where: str | Path, epoch: float = 0.0) -> T:
    """`document` (as read from TOML) as the Struct `kind`; ConfigError naming `where`.

    `epoch` is the clock epoch that relative `Instant`s count from."""
    try:
        return msgspec.convert(document, kind, dec_hook=_hook(epoch))
    except msgspec.ValidationError as error:
        message = describe(str(error), kind)
        if message.startswith("key `") and ", got " not in message:
            # msgspec's constraint messages ("Expected `int` >= 1") leave out the value
            found = _lookup(document, message[5 : message.index("`", 5)])
            if found is not _NOTHING:
                message += f", got {found!r}"
        raise ConfigError(f"{where}: {message}") from None


_NOTHING = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _lookup(document: object, path: str) -> object:
    """The raw value at "a.b[0].c" in a TOML document, or _NOTHING."""
    for name, index in _STEP.findall(path):
        try:
            document = document[int(index)] if index else document[name]
        except (KeyError, IndexError, TypeError):
            return _NOTHING
    return document


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]*)`$")


_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")


def describe(message: str, kind: type | None = None) -> str:
    """msgspec's "what - at `$.a.b[0]`" as "key `a.b[0]`: what", on one line."""
    match = _AT.match(message.strip())
    what, path = match.group("what"), (match.group("path") or "").lstrip(".")
    enum = _ENUM.match(what)
    if enum and kind is not None:
        choices = _literal_choices(kind, path)
        if choices:
            what = f"expected one of {', '.join(map(repr, choices))}, got {enum['value']}"
    for pattern, template in ((_UNKNOWN, "unknown key"), (_MISSING, "missing key")):
        found = pattern.match(what)
        if found:
            key = f"{path}.{found['key']}" if path else found["key"]
            return f"{template} `{key}`"
    what = what[:1].lower() + what[1:]  # msgspec's "Expected `int`, got `str`"
    what = " ".join(what.split())
    return f"key `{path}`: {what}" if path else what


class ClockTable(Table):
    """As `dtn.clock.clock_from_config` reads it (shared with the emulator)."""

    time_scale: Annotated[float, msgspec.Meta(gt=0, lt=1e12)] | None = (
        None  # None: $DTN_TIME_SCALE, else 1
    )
    epoch: float | None = None  # None: $DTN_CLOCK_EPOCH, else the start of today (UTC)

    def clock(self) -> ScaledClock:
        return clock_from_config(
            {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}
        )


class _ClockFile(msgspec.Struct):
    """The clock alone, read first: relative instants elsewhere count from its epoch."""

    clock: ClockTable = ClockTable()


def read_clock(document: dict, where: str | Path) -> ScaledClock:
    """The `[clock]` of a document, read before the rest: relative instants count from its
    epoch."""
    table = convert({"clock": document.get("clock", {})}, _ClockFile, where).clock
    try:
        return table.clock()
    except ValueError as error:  # $DTN_TIME_SCALE is not a number
        raise ConfigError(f"{where}: {error}") from None


def read_toml(path: Path) -> dict:
    """The TOML document in `path` (at most MAX_CONFIG_BYTES); ConfigError naming the file."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    return parse_toml(raw, path)


def parse_toml(raw: bytes | str, where: str | Path) -> dict:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{where}: not valid TOML: {' '.join(str(error).split())}") from None


def _literal_choices(kind: type, path: str) -> tuple:
    """The values of the Literal type at `path` ("a.b[0].c") inside the Struct `kind`."""
    current: Any = kind
    for name in re.sub(r"\[\d+\]", "", path).split("."):
        current = _unwrap(current)
        try:
            current = typing.get_type_hints(current)[name]
        except (TypeError, KeyError, NameError):
            return ()
    current = _unwrap(current)
    return typing.get_args(current) if typing.get_origin(current) is typing.Literal else ()


def _unwrap(kind: Any) -> Any:
    """The Struct or Literal inside Optional[...] and list[...]."""
    while typing.get_origin(kind) in (list, typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        structs = [arg for arg in args if isinstance(arg, type) and issubclass(arg, msgspec.Struct)]
        kind = (structs or args)[0]
    return kind
