"""The channel model of one direction of a link (sans-I/O).

`ChannelDirection.submit(datagram, now)` takes a datagram and the mission time it reached the
link, and answers what the far end receives and when: a list of `(deliver_at, bytes)` (usually
one; two when duplicated; the bytes possibly corrupted), or a `Drop` with the reason. It never
reads a clock, sleeps or touches a socket, and every random choice comes from generators seeded
from the config, so a seed and a sequence of submissions always give the same answers.

What happens to a datagram, in order:
1. contact: if the link is down when its transmission would start, it is dropped (`link_down`);
2. rate: it waits for the transmitter (a FIFO of `queue_bytes` at most; tail drop `queue_full`)
   and takes `8 * len / rate` seconds to serialize;
3. loss: with probability `loss` it never arrives (`loss`);
4. bit errors: independent or Gilbert–Elliott flips (`dtn.emulator.biterrors`);
5. propagation: it arrives `delay` after its transmission ends (fixed, or the Earth–Mars light
   time at that moment); arrivals keep their order;
6. reorder / duplicate: with probability `reorder` it is held back `reorder_delay` longer, and
   with probability `duplicate` it arrives twice.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from dtn.contacts import ContactSchedule
from dtn.emulator.biterrors import BitErrorProcess, BurstParams
from dtn.emulator.draws import uniform_draws
from dtn.ephemeris import EphemerisLightTime

DEFAULT_QUEUE_BYTES = 4 << 20


@dataclass(frozen=True)
class Drop:
    reason: str


LINK_DOWN = Drop("link_down")
QUEUE_FULL = Drop("queue_full")
LOSS = Drop("loss")
DROP_REASONS = (LINK_DOWN.reason, QUEUE_FULL.reason, LOSS.reason)


@dataclass(frozen=True)
class DirectionParams:
    """One direction of a link; every time and rate is in mission time."""

    delay: float | None = 0.0  # seconds; None: the Earth–Mars light time from the ephemeris
    ephemeris_offset: float = 0.0  # added to mission time to get the ephemeris date
    rate: float = 0.0  # bit/s; 0: no rate limit, no queue
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    ber: float = 0.0
    burst: BurstParams | None = None
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 1.0  # seconds
    contacts: ContactSchedule | None = None


@dataclass
class ChannelStats:
    datagrams_in: int = 0
    bytes_in: int = 0
    bits_flipped: int = 0
    datagrams_corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


class ChannelDirection:
    def __init__(self, params: DirectionParams, seed: np.random.SeedSequence) -> None:
        self.params = params
        self.stats = ChannelStats()
        loss_seed, error_seed, duplicate_seed, reorder_seed = seed.spawn(4)
        self._loss_draws = uniform_draws(np.random.default_rng(loss_seed))
        self._duplicate_draws = uniform_draws(np.random.default_rng(duplicate_seed))
        self._reorder_draws = uniform_draws(np.random.default_rng(reorder_seed))
        self._errors = (
            BitErrorProcess(np.random.default_rng(error_seed), params.ber, params.burst)
            if params.ber > 0 or params.burst is not None
            else None
        )
        self._light_time = (
            EphemerisLightTime(params.ephemeris_offset) if params.delay is None else None
        )
        self._schedule = params.contacts
        self._link_up = True
        self._link_state_since = self._link_state_until = math.nan  # NaN: not looked up yet
        self._transmitter_free_at = -math.inf
        self._backlog: collections.deque[tuple[float, int]] = collections.deque()
        self._backlog_bytes = 0
        self._last_arrival = -math.inf

    def submit(self, datagram: bytes, now: float) -> list[tuple[float, bytes]] | Drop:
        """What becomes of `datagram`, handed to the link at mission time `now`."""
        params, stats = self.params, self.stats
        size = len(datagram)
        stats.datagrams_in += 1
        stats.bytes_in += size
        start = max(now, self._transmitter_free_at)
        if self._schedule is not None and not self.link_up_at(start):
            return self._drop(LINK_DOWN)
        if params.rate:
            self._release_backlog(now)
            if self._backlog_bytes + size > params.queue_bytes:
                return self._drop(QUEUE_FULL)
            end = start + size * 8 / params.rate
            self._transmitter_free_at = end
            self._backlog.append((end, size))
            self._backlog_bytes += size
        else:
            end = start
        if params.loss and self._loss_draws.next() < params.loss:
            return self._drop(LOSS)
        if self._errors is not None:
            datagram, flipped = self._errors.corrupt(datagram)
            if flipped:
                stats.bits_flipped += flipped
                stats.datagrams_corrupted += 1
        arrival = end + self.light_time(end)
        # A light time that shrinks (or its sampling) must not let a datagram overtake another.
        arrival = max(arrival, self._last_arrival)
        self._last_arrival = arrival
        if params.reorder and self._reorder_draws.next() < params.reorder:
            arrival += params.reorder_delay
            stats.reordered += 1
        if params.duplicate and self._duplicate_draws.next() < params.duplicate:
            stats.duplicated += 1
            return [(arrival, datagram), (arrival, datagram)]
        return [(arrival, datagram)]

    def link_up_at(self, t: float) -> bool:
        """Whether the contact schedule lets a transmission start at mission time t."""
        if not self._link_state_since <= t < self._link_state_until:
            if self._schedule is None:
                return True
            self._link_up, self._link_state_since, self._link_state_until = self._schedule.state_at(
                t
            )
        return self._link_up

    def light_time(self, t: float) -> float:
        """The one-way delay a transmission ending at t gets."""
        return self.params.delay if self._light_time is None else self._light_time.at(t)

    def queue_depth(self, now: float) -> tuple[int, int]:
        """(datagrams, bytes) waiting for or in serialization at `now`."""
        self._release_backlog(now)
        return len(self._backlog), self._backlog_bytes

    def _release_backlog(self, now: float) -> None:
        backlog = self._backlog
        while backlog and backlog[0][0] <= now:
            self._backlog_bytes -= backlog.popleft()[1]

    def _drop(self, drop: Drop) -> Drop:
        self.stats.dropped[drop.reason] += 1
        return drop
