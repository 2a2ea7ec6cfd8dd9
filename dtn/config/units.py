"""Parsing of the quantities node and emulator configs are written in: durations, rates, sizes,
instants and UDP addresses.

Every parser takes the raw TOML value and returns a plain number (seconds, bit/s, bytes, Unix
seconds) or raises `ValueError` with a message that names what was expected; the schema layer
(dtn.config.schema) adds the file and the key the value sits at.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re

SOL_SECONDS = 88_775.244  # a mean Mars solar day

_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_DURATION_UNITS = {
    "": 1.0,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86_400.0,
    "sol": SOL_SECONDS,
    "sols": SOL_SECONDS,
}
_RATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
}
_DURATION_RE = re.compile(rf"^{_NUMBER}\s*([a-z]*)$")
_RATE_RE = re.compile(rf"^{_NUMBER}\s*([kmg]?)\s*(?:bit/s|bps|b/s)?$")
_SIZE_RE = re.compile(rf"^{_NUMBER}\s*([a-z]*)$")


def _finite_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {what}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite {what}, got {value!r}")
    return number


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string like "20min", "1.5h", "250ms", "1sol"."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.strip().lower())
        if not match or match.group(2) not in _DURATION_UNITS:
            raise ValueError(
                f'expected a duration such as 1200, "20min", "3h" or "1sol", got {value!r}'
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        seconds = _finite_number(value, "a duration in seconds")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def parse_rate(value: object) -> float:
    """Bit/s from a number (bit/s) or a string like "256 kbit/s", "6Mbps", "2M"; 0 = unlimited."""
    if isinstance(value, str):
        match = _RATE_RE.match(value.strip().lower())
        if not match:
            raise ValueError(f'expected a rate such as 256000 or "256 kbit/s", got {value!r}')
        rate = float(match.group(1)) * _RATE_PREFIXES[match.group(2)]
    else:
        rate = _finite_number(value, "a rate in bit/s")
    if rate < 0:
        raise ValueError(f"a rate cannot be negative, got {value!r}")
    return rate


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like "64MiB", "1 GB", "512k"."""
    if isinstance(value, str):
        match = _SIZE_RE.match(value.strip().lower())
        if not match or match.group(2) not in _SIZE_UNITS:
            raise ValueError(f'expected a size such as 65536 or "64MiB", got {value!r}')
        size = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        size = _finite_number(value, "a size in bytes")
    if size < 0:
        raise ValueError(f"a size cannot be negative, got {value!r}")
    return int(size)


def parse_probability(value: object) -> float:
    probability = _finite_number(value, "a probability")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"expected a probability between 0 and 1, got {value!r}")
    return probability


def _utc_timestamp(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def parse_instant(value: object, epoch: float) -> float:
    """Mission Unix time from an absolute date (TOML datetime/date or ISO 8601 string, UTC when no
    offset is given) or from an offset after the clock's epoch (seconds, or a duration string)."""
    if isinstance(value, dt.datetime):
        return _utc_timestamp(value)
    if isinstance(value, dt.date):
        return _utc_timestamp(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        text = value.strip()
        if re.match(r"^\d{4}-\d{2}-\d{2}", text):
            try:
                return _utc_timestamp(dt.datetime.fromisoformat(text))
            except ValueError:
                raise ValueError(f"expected an ISO 8601 date, got {value!r}") from None
        return epoch + parse_duration(text)
    return epoch + parse_duration(value)


def parse_address(value: object) -> tuple[str, int]:
    """("127.0.0.1", 4556) from "127.0.0.1:4556" (an IPv4 literal and a port, 0 = any free port)."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f'expected "IPv4:port", got {value!r}')
    host, _, port_text = value.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"expected an IPv4 address before the port, got {value!r}") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected a port 0-65535 after the address, got {value!r}")
    return host, int(port_text)
