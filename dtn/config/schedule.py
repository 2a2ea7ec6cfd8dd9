"""The contact schedule format (windows, periodic passes, outages) that emulator links and node
neighbours share; see docs/emulator.md. Read into a `dtn.contacts.ContactSchedule`."""

from __future__ import annotations

from pathlib import Path

from dtn.config.schema import ConfigError, Duration, Instant, Table, convert, read_toml
from dtn.contacts import ContactSchedule, Passes


class IntervalTable(Table):
    start: Instant
    end: Instant
    name: str = ""

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("start must come before end")


class PassesTable(Table):
    period: Duration
    duration: Duration
    first: Instant | None = None  # None: the clock epoch

    def __post_init__(self) -> None:
        if not 0 < self.duration <= self.period:
            raise ValueError("need 0 < duration <= period")


class ScheduleTable(Table):
    windows: list[IntervalTable] = []
    outages: list[IntervalTable] = []
    passes: PassesTable | None = None

    def schedule(self, epoch: float) -> ContactSchedule:
        passes = self.passes
        return ContactSchedule(
            windows=tuple((w.start, w.end) for w in self.windows),
            outages=tuple((o.start, o.end) for o in self.outages),
            passes=None
            if passes is None
            else Passes(
                period=passes.period,
                duration=passes.duration,
                first=epoch if passes.first is None else passes.first,
            ),
        )


def schedule_from(
    value: str | dict | ScheduleTable, epoch: float, base_dir: Path, where: str
) -> ContactSchedule:
    """A schedule from an inline table or a TOML file named relative to `base_dir`."""
    if isinstance(value, ScheduleTable):
        return value.schedule(epoch)
    if isinstance(value, str):
        path = base_dir / value
        try:
            return convert(read_toml(path), ScheduleTable, path, epoch).schedule(epoch)
        except ConfigError as error:
            raise ConfigError(f"{where}: contacts file {error}") from None
    return convert(value, ScheduleTable, where, epoch).schedule(epoch)


__all__ = ["ScheduleTable", "schedule_from"]
