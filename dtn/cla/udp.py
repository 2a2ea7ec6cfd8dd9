"""The udp-rs convergence layer's core: one neighbour's link, sans-I/O.

    link = UdpRsLink(UdpRsConfig(frame_size=8192, depth=4, linger=0.05, rate_bps=256_000.0))
    link.send(bundle_bytes, now)                    # queue a bundle for the peer
    for datagram in link.datagrams_to_send(now):    # what may go on the wire now
        ...
    bundles = link.receive_datagrams(datagrams, now)  # whole bundles, batched decode
    link.handle_timer(now)                          # at link.next_deadline()

Three things drive it, as in aioquic's QuicConnection: API calls (`send`, `set_rate`),
datagrams (`receive_datagrams`) and the timer (`handle_timer`); output is read with
`datagrams_to_send(now)` and `next_deadline()`. It never reads a clock or touches a socket.

Sending: bundles are packed into frame version 2 (dtn.fec.pack), many per frame, so a 1 KiB
bundle costs the same per byte as a 1 MB one. A frame goes out when it is full; a partly
filled one only after the oldest byte in it has waited `linger` mission seconds. Datagrams
are paced by a token bucket: `rate_bps` mission bit/s of datagram bytes (what the emulator's
rate counts), with `burst_bytes` of credit, so the emulator's queue is never overrun by more
than that. Frames are coded in batches a little ahead of the credit that lets them go
(`_CODE_AHEAD` of link time), never sent before it.

Receiving: every datagram is untrusted. Lengths are bounded, the decoder (dtn.fec) checks
RS, CRC and records, its reassembly holds a bounded number of partial bundles and bytes, and
anything thrown away is counted by reason; nothing raises out of `receive_datagrams`.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from dtn.fec.frame import MAX_DATAGRAM, MAX_PACKED_BUNDLE, FrameConfig
from dtn.fec.link import FecCounters, FrameDecoder
from dtn.fec.pack import FramePacker, packed_efficiency

from .pacing import TokenBucket

log = logging.getLogger("dtn.cla.udp")

# Frames coded per datagrams_to_send call at most: the rest waits for the next call, so one
# call's work (and the bursts a shell writes) stays bounded.
_MAX_FRAMES_PER_CALL = 512
# Frames are coded this much link time (s) ahead of the credit that sends them: many frames a
# call (a call's fixed cost was most of the coding time at 267 Mbit/s, 4 frames a call), while
# a bundle of higher priority waits behind at most this much of coded frames.
_CODE_AHEAD = 0.01
# Pacing bucket depth (pacing_burst): wall seconds of the link's rate, within these bounds.
_BURST_WALL = 0.04
_BURST_MIN = 256 << 10
_BURST_MAX = 1 << 20


def pacing_burst(rate_bps: float | None, time_scale: float = 1.0) -> int:
    """A token bucket depth for a link of `rate_bps` mission bit/s on a clock running
    `time_scale` times wall time: about 40 ms of wall-clock sending, 256 KiB to 1 MiB.

    Credit beyond the depth is lost while the shell's event loop is busy elsewhere, so the
    bucket must outlast its longer turns: at 267 Mbit/s a fixed 256 KiB lasted 7.8 ms, and the
    link sent at 64 % of its rate with 29 MB queued. The cap bounds what lands on the next hop's
    queue at once (the emulator holds 4 MiB by default)."""
    if rate_bps is None:
        return _BURST_MIN
    wall_bytes = rate_bps * time_scale / 8 * _BURST_WALL
    return int(min(max(wall_bytes, _BURST_MIN), _BURST_MAX))


@dataclass(frozen=True)
class UdpRsConfig:
    """One neighbour's udp-rs link. Times are mission seconds, rates mission bit/s."""

    frame_size: int = 8192
    depth: int = 4
    dual_basis: bool = False
    linger: float = 0.05  # a partly filled frame waits this long for more bundles
    rate_bps: float | None = None  # datagram bits per second; None: unpaced
    burst_bytes: int = _BURST_MIN  # token bucket depth: what may go at once (pacing_burst)
    reassembly_timeout: float = 600.0  # a partial bundle idle this long is dropped
    max_bundle_bytes: int = 64 << 20
    max_pending_bytes: int = 256 << 20  # bytes of partial bundles held
    max_pending_bundles: int = 1024  # partial bundles held

    def __post_init__(self) -> None:
        if not self.linger >= 0:
            raise ValueError(f"linger must be >= 0, got {self.linger!r}")
        if self.rate_bps is not None and not self.rate_bps > 0:
            raise ValueError(f"rate_bps must be > 0 or None, got {self.rate_bps!r}")
        if not self.burst_bytes >= self.frame_size:
            raise ValueError(f"burst_bytes must be >= frame_size ({self.frame_size})")
        if not self.reassembly_timeout > 0:
            raise ValueError(f"reassembly_timeout must be > 0, got {self.reassembly_timeout!r}")
        if not 0 < self.max_bundle_bytes <= MAX_PACKED_BUNDLE:
            raise ValueError(f"max_bundle_bytes must be 1..{MAX_PACKED_BUNDLE}")
        self.frame_config()  # frame_size and depth checks

    def frame_config(self) -> FrameConfig:
        return FrameConfig(self.frame_size, self.depth, self.dual_basis)


@dataclass
class UdpRsCounters:
    """What one link has done. `fec` holds the decoder's counters (frames corrected, frames
    and bundles dropped by reason: see docs/fec.md)."""

    bundles_out: int = 0  # bundles handed to send()
    bundle_bytes_out: int = 0
    datagrams_out: int = 0
    bytes_out: int = 0  # datagram bytes
    frames_short: int = 0  # frames flushed by linger before they were full
    datagrams_in: int = 0
    bytes_in: int = 0
    bundles_in: int = 0
    bundle_bytes_in: int = 0
    send_refused: Counter[str] = field(default_factory=Counter)  # too_large
    datagrams_dropped: Counter[str] = field(default_factory=Counter)  # too_long, internal_error
    fec: FecCounters = field(default_factory=FecCounters)


class UdpRsLink:
    """Send and receive side of the udp-rs link to one neighbour."""

    def __init__(self, config: UdpRsConfig | None = None, *, first_id: int | None = None) -> None:
        self.config = config = config or UdpRsConfig()
        frame_config = config.frame_config()
        # Bundle ids must not repeat within the peer's reassembly timeout, across restarts
        # too: start from a random point of the 64-bit space.
        if first_id is None:
            first_id = int.from_bytes(os.urandom(8), "big")
        self._packer = FramePacker(frame_config, first_id=first_id)
        self._decoder = FrameDecoder(
            reassembly_timeout=config.reassembly_timeout,
            max_bundle_bytes=config.max_bundle_bytes,
            max_pending_bytes=max(config.max_pending_bytes, config.max_bundle_bytes),
            max_pending_bundles=config.max_pending_bundles,
        )
        self.counters = UdpRsCounters(fec=self._decoder.counters)
        self._efficiency = packed_efficiency(frame_config)
        self._ready: deque[bytes] = deque()  # coded, waiting for pacing credit
        self._bucket = TokenBucket(config.rate_bps, config.burst_bytes)
        self._now = -math.inf  # the latest `now` seen

    # -- sending -----------------------------------------------------------------------------

    def send(self, bundle: bytes, now: float) -> None:
        """Queue one encoded bundle for the peer (not copied: do not change it afterwards).

        A bundle above `max_bundle_bytes` is refused with ValueError (and counted): the peer
        would drop it, so the agent must fragment it first.
        """
        if not 0 < len(bundle) <= self.config.max_bundle_bytes:
            self.counters.send_refused["too_large" if bundle else "empty"] += 1
            limit = self.config.max_bundle_bytes
            raise ValueError(f"bundle of {len(bundle)} bytes: need 1..{limit}")
        self._tick(now)
        self._packer.push(bundle, now)
        self.counters.bundles_out += 1
        self.counters.bundle_bytes_out += len(bundle)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams that may go on the wire now, in order (possibly none)."""
        self._tick(now)
        bucket = self._bucket
        bucket.refill(now)
        packer, ready, out = self._packer, self._ready, []
        size = packer.datagram_size
        while True:
            while ready and bucket.has_credit:
                datagram = ready.popleft()
                bucket.take(len(datagram))
                out.append(datagram)
            if ready or not bucket.has_credit or not packer.queued_bundles:
                break
            budget = _MAX_FRAMES_PER_CALL - len(out)
            if budget <= 0:
                break
            rate = bucket.rate_bps
            if rate is not None:
                ahead = bucket.tokens + rate / 8 * _CODE_AHEAD
                budget = min(budget, max(1, math.ceil(ahead / size)))
            flush = now >= packer.oldest() + self.config.linger
            short_before = packer.frames_short
            coded = packer.pack(budget, flush)
            if not coded:
                break
            self.counters.frames_short += packer.frames_short - short_before
            ready.extend(coded)
        self.counters.datagrams_out += len(out)
        self.counters.bytes_out += sum(map(len, out))
        return out

    def set_rate(self, rate_bps: float | None) -> None:
        """A new pacing rate (a contact window may change it); None sends unpaced."""
        self._bucket.set_rate(rate_bps)

    @property
    def rate_bps(self) -> float | None:
        return self._bucket.rate_bps

    @property
    def efficiency(self) -> float:
        """Bundle bytes per datagram byte of full frames, large bundles (a 1 KiB bundle pays
        18 more bytes of record header: 1.7 % less)."""
        return self._efficiency

    @property
    def queued_bytes(self) -> int:
        """Bundle bytes waiting to be framed, plus coded datagram bytes waiting to be sent."""
        return self._packer.queued_bytes + sum(map(len, self._ready))

    # -- receiving ---------------------------------------------------------------------------

    def receive_datagrams(self, datagrams: Sequence[bytes], now: float) -> list[bytes]:
        """Decode a batch of datagrams from the peer; returns the bundles they completed."""
        self._tick(now)
        counters = self.counters
        counters.datagrams_in += len(datagrams)
        fitting = [d for d in datagrams if len(d) <= MAX_DATAGRAM]
        if len(fitting) < len(datagrams):
            counters.datagrams_dropped["too_long"] += len(datagrams) - len(fitting)
        counters.bytes_in += sum(map(len, fitting))
        try:
            bundles = self._decoder.receive_many(fitting, now)
        except Exception:  # hostile input must never take the node down: count, log, go on
            counters.datagrams_dropped["internal_error"] += len(fitting)
            log.exception("udp-rs: decoding a batch of %d datagrams failed", len(fitting))
            return []
        counters.bundles_in += len(bundles)
        counters.bundle_bytes_in += sum(map(len, bundles))
        return bundles

    # -- time --------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Expire partial bundles whose timeout passed (sending is read by datagrams_to_send)."""
        self._tick(now)
        self._decoder.expire(now)

    def next_deadline(self) -> float | None:
        """The next mission time at which calling handle_timer or datagrams_to_send does
        something: pacing credit for what is waiting, a linger flush, a reassembly expiry."""
        deadlines = [self._decoder.next_deadline()]
        packer = self._packer
        if self._ready or packer.queued_bundles:
            if self._ready or packer.full_frames():
                due = self._now  # due now, unless the bucket is empty
            else:
                due = packer.oldest() + self.config.linger
            deadlines.append(max(due, self._bucket.credit_at(self._now)))
        return min((d for d in deadlines if d is not None), default=None)

    def _tick(self, now: float) -> None:
        if now > self._now:
            self._now = now
