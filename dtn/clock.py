"""The one scalable clock that every timer in a run is computed from.

Mission time is Unix seconds as the mission experiences them. A run shares one `time_scale` and
one anchor (`epoch`, a wall-clock Unix time at which mission time equals wall time); processes
that agree on both agree on mission time, so light time, contact windows, lifetimes and
retransmission timers line up between nodes and the emulator:

    mission = epoch + (wall - epoch) * time_scale

Protocol cores never read this clock: the shell reads `now()` and passes it in. Unit tests drive
the cores with plain numbers (virtual time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

DTN_EPOCH_UNIX = 946_684_800  # 2000-01-01T00:00:00Z, the zero of DTN time (RFC 9171 4.2.6)
EPOCH_ENV = "DTN_CLOCK_EPOCH"
SCALE_ENV = "DTN_TIME_SCALE"


def default_epoch() -> float:
    """The anchor: $DTN_CLOCK_EPOCH when a launcher set one, else the start of today (UTC)."""
    value = os.environ.get(EPOCH_ENV)
    if value:
        return float(value)
    return float(int(time.time()) // 86_400 * 86_400)


class ScaledClock:
    """Mission time running `time_scale` times faster than the wall clock."""

    def __init__(self, time_scale: float = 1.0, epoch: float | None = None) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self.epoch = default_epoch() if epoch is None else float(epoch)

    def now(self) -> float:
        """Mission time, Unix seconds."""
        return self.epoch + (time.time() - self.epoch) * self.time_scale

    def wall_delay(self, mission_seconds: float) -> float:
        """Wall-clock seconds that `mission_seconds` of mission time last."""
        return mission_seconds / self.time_scale

    def wall_seconds_until(self, mission_time: float) -> float:
        """Wall-clock seconds from now until mission time reaches `mission_time` (>= 0)."""
        return max(0.0, (mission_time - self.now()) / self.time_scale)


def dtn_time_ms(mission_unix: float) -> int:
    """DTN time (ms since 2000-01-01 UTC) of a mission Unix time."""
    return int(round((mission_unix - DTN_EPOCH_UNIX) * 1000))


def unix_from_dtn_ms(dtn_ms: int) -> float:
    return DTN_EPOCH_UNIX + dtn_ms / 1000


def clock_from_config(table: Mapping[str, object]) -> ScaledClock:
    """The clock a `[clock]` config table describes, shared by node and emulator configs.

    `time_scale` defaults to $DTN_TIME_SCALE, else 1; `epoch` (Unix seconds) to `default_epoch()`.
    Raises ValueError naming the bad key.
    """
    unknown = sorted(set(table) - {"time_scale", "epoch"})
    if unknown:
        raise ValueError(f"unknown key(s) in [clock]: {', '.join(unknown)}")
    scale = table.get("time_scale")
    if scale is None:
        try:
            scale = float(os.environ.get(SCALE_ENV) or 1.0)
        except ValueError:
            raise ValueError(
                f"${SCALE_ENV} must be a number, got {os.environ[SCALE_ENV]!r}"
            ) from None
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e12:
        raise ValueError(f"[clock] time_scale must be a positive number, got {scale!r}")
    epoch = table.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int | float)):
        raise ValueError(f"[clock] epoch must be Unix seconds, got {epoch!r}")
    return ScaledClock(scale, None if epoch is None else float(epoch))
