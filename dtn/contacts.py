"""When a link can carry traffic: explicit windows, periodic passes, and outages.

A schedule is up at mission time t when t lies in an explicit window or a periodic pass (if the
schedule has neither, it is up by default) and in no outage. Times are the sender's mission time:
a datagram whose transmission starts while the link is down is dropped.

`state_at(t)` also returns the interval around t over which the state holds, so a channel can
cache it and only look the schedule up again when time leaves that interval.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[float, float]


def merge_intervals(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sorted, disjoint intervals covering the same time as `intervals`."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def _interval_state(starts: list[float], intervals: tuple[Interval, ...], t: float):
    """(inside, since, until) of t relative to sorted disjoint intervals."""
    index = bisect.bisect_right(starts, t) - 1
    if index >= 0 and t < intervals[index][1]:
        return True, intervals[index][0], intervals[index][1]
    since = intervals[index][1] if index >= 0 else -math.inf
    until = intervals[index + 1][0] if index + 1 < len(intervals) else math.inf
    return False, since, until


@dataclass(frozen=True)
class Passes:
    """A pass of `duration` seconds every `period` seconds, one of them starting at `first`."""

    period: float
    duration: float
    first: float

    def __post_init__(self) -> None:
        if not 0 < self.duration <= self.period:
            raise ValueError("passes need 0 < duration <= period")

    def state(self, t: float) -> tuple[bool, float, float]:
        index = math.floor((t - self.first) / self.period)
        # Rounding can put t just outside pass `index`'s period; every boundary is computed by
        # the same formula, so stepping to the right neighbour keeps the answers consistent.
        if self._start(index) > t:
            index -= 1
        elif self._start(index + 1) <= t:
            index += 1
        start = self._start(index)
        end = start + self.duration
        if t < end:
            return True, start, end
        return False, end, self._start(index + 1)

    def _start(self, index: int) -> float:
        return self.first + index * self.period


@dataclass(frozen=True)
class ContactSchedule:
    windows: tuple[Interval, ...] = ()
    passes: Passes | None = None
    outages: tuple[Interval, ...] = ()

    def __post_init__(self) -> None:
        for start, end in self.windows + self.outages:
            if not start < end:
                raise ValueError(f"an interval must start before it ends ({start} >= {end})")
        object.__setattr__(self, "windows", merge_intervals(self.windows))
        object.__setattr__(self, "outages", merge_intervals(self.outages))
        object.__setattr__(self, "_window_starts", [start for start, _ in self.windows])
        object.__setattr__(self, "_outage_starts", [start for start, _ in self.outages])

    def state_at(self, t: float) -> tuple[bool, float, float]:
        """(up, since, until): whether the link is up at t, and the interval that state holds."""
        contact_states = []
        if self.windows:
            contact_states.append(_interval_state(self._window_starts, self.windows, t))
        if self.passes is not None:
            contact_states.append(self.passes.state(t))
        outage = (
            _interval_state(self._outage_starts, self.outages, t)
            if self.outages
            else (False, -math.inf, math.inf)
        )
        since, until = -math.inf, math.inf
        for _, start, end in (*contact_states, outage):
            since, until = max(since, start), min(until, end)
        in_contact = not contact_states or any(inside for inside, _, _ in contact_states)
        return in_contact and not outage[0], since, until

    def is_up(self, t: float) -> bool:
        return self.state_at(t)[0]
