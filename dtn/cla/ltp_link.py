"""The ltp and ltp+rs convergence layers' core: one neighbour's LTP span, sans-I/O.

    link = LtpLink(LtpLinkConfig(local_engine=1, remote_engine=2, owlt=1200.0, rate_bps=256e3))
    link.send(bundle, store_id, now)             # aggregated into blocks
    for datagram in link.datagrams_to_send(now): # paced at the link's rate
        ...
    bundles = link.receive_datagrams(datagrams, now)
    handed, lost = link.outcomes()               # store ids: the peer has them / send again
    link.handle_timer(now)                       # at link.next_deadline()

Bundles are gathered into LTP blocks (dtn.ltp.engine), as ION's ltpclo does: a block goes out
once it holds `aggregation_size` bytes or its first bundle has waited `aggregation_time`, and a
bundle at least that large goes alone. Every block is red: it arrives whole or the engine
cancels it. The receiving side splits a block back into its bundles, which are self-delimiting
CBOR (RFC 9171 4.1), so ION's blocks read the same. A bundle counts as handed over when the
peer's report claims its block's whole red part (`BlockDelivered`), and goes back to the agent
when the block is cancelled.

`ltp+rs` carries each LTP segment as a record of this project's Reed-Solomon coded frames
(dtn.cla.udp: CCSDS-style coding below LTP, as on a deep-space link): bit errors are corrected
below LTP and only frames lost whole cost LTP a retransmission. Plain `ltp` puts one segment in
each UDP datagram, as ION's udplso does, paced by a token bucket at the link's rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dtn.bundle import BundleError, cbor
from dtn.ltp.engine import (
    BlockCancelled,
    BlockDelivered,
    BlockReceived,
    GreenReceived,
    LtpConfig,
    LtpEngine,
    SpanConfig,
)

from .pacing import TokenBucket
from .udp import UdpRsLink

_SEGMENT_OVERHEAD = 32  # bytes of LTP header around a data segment's data, at most


@dataclass(frozen=True)
class LtpLinkConfig:
    """One neighbour's span. Times are mission seconds, rates mission bit/s."""

    local_engine: int
    remote_engine: int
    owlt: float = 0.0
    segment_size: int = 1024  # data bytes per data segment
    aggregation_size: int = 64 << 10
    aggregation_time: float = 1.0
    timeout_margin: float = 1.0  # added to 2 x owlt for the checkpoint and report timers
    max_retransmissions: int = 10
    max_sessions: int = 256
    max_block_size: int = 64 << 20
    rate_bps: float | None = None
    burst_bytes: int = 256 << 10

    def __post_init__(self) -> None:
        if not 64 <= self.segment_size <= 65_000:
            raise ValueError("segment_size must be 64-65000 bytes")
        if not self.aggregation_size >= 1 or not self.aggregation_time >= 0:
            raise ValueError("aggregation_size must be >= 1 and aggregation_time >= 0")


class LtpLink:
    """Send and receive side of the LTP link to one neighbour."""

    def __init__(self, config: LtpLinkConfig, lower: UdpRsLink | None = None) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self._engine = LtpEngine(config.local_engine,
                                 LtpConfig(max_block_size=config.max_block_size))
        self._engine.add_span(config.remote_engine, SpanConfig(
            owlt=config.owlt,
            segment_size=config.segment_size,
            max_sessions=config.max_sessions,
            checkpoint_timeout_margin=config.timeout_margin,
            max_retransmissions=config.max_retransmissions,
        ))
        self._lower = lower  # ltp+rs: segments go as records of RS-coded frames
        self._bucket = TokenBucket(config.rate_bps, config.burst_bytes)
        self._block: list[tuple[bytes, int]] = []  # (bundle, store id) being aggregated
        self._block_bytes = 0
        self._block_since: float | None = None
        self._in_blocks: dict[int, list[int]] = {}  # LTP session -> store ids in its block
        self._handed: list[int] = []
        self._lost: list[int] = []
        self._now = 0.0

    # --- sending ---------------------------------------------------------------------------------

    def send(self, bundle: bytes, store_id: int, now: float) -> None:
        self._now = max(self._now, now)
        if self._block_since is None:
            self._block_since = now
        self._block.append((bundle, store_id))
        self._block_bytes += len(bundle)
        if self._block_bytes >= self.config.aggregation_size:
            self._close_block(now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """The datagrams that may go on the wire now (LTP segments, or ltp+rs frames)."""
        self._now = max(self._now, now)
        self._aggregate_due(now)
        engine = self._engine
        if self._lower is not None:  # take from LTP what the coded link can send soon
            room = self.config.burst_bytes - self._lower.queued_bytes
            for _, segment in engine.datagrams_to_send(now, room) if room > 0 else ():
                self._lower.send(segment, now)
            return self._lower.datagrams_to_send(now)
        bucket, out = self._bucket, []
        bucket.refill(now)
        if bucket.has_credit:
            out = [wire for _, wire in engine.datagrams_to_send(now, bucket.tokens)]
            bucket.take(sum(map(len, out)))
        self.counters["datagrams_out"] += len(out)
        return out

    @property
    def rate_bps(self) -> float | None:
        return self._bucket.rate_bps

    @property
    def efficiency(self) -> float:
        """Bundle bytes per datagram byte for large bundles: LTP's segment headers, and the
        RS code's parity under ltp+rs."""
        ltp = self.config.segment_size / (self.config.segment_size + _SEGMENT_OVERHEAD)
        return ltp * (self._lower.efficiency if self._lower is not None else 1.0)

    @property
    def queued_bytes(self) -> int:
        """Bundle bytes of blocks not yet started and segments not yet sent (a block's bytes
        count until LTP has put them on the wire once)."""
        lower = self._lower.queued_bytes if self._lower is not None else 0
        return self._block_bytes + self._engine.queued_bytes + lower

    def outcomes(self) -> tuple[list[int], list[int]]:
        """(store ids the neighbour has, store ids to send again) since the last call."""
        handed, lost, self._handed, self._lost = self._handed, self._lost, [], []
        return handed, lost

    # --- receiving -------------------------------------------------------------------------------

    def receive_datagrams(self, datagrams: Sequence[bytes], now: float) -> list[bytes]:
        """The bundles of the blocks these datagrams completed."""
        self._now = max(self._now, now)
        segments = (self._lower.receive_datagrams(datagrams, now) if self._lower is not None
                    else datagrams)
        for segment in segments:
            self._engine.receive_datagram(segment, now)
        return self._take_events()

    # --- contact and time ------------------------------------------------------------------------

    def contact_up(self, now: float) -> None:
        self._engine.contact_up(self.config.remote_engine, now)

    def contact_down(self, now: float) -> None:
        self._engine.contact_down(self.config.remote_engine, now)

    def handle_timer(self, now: float) -> None:
        self._now = max(self._now, now)
        self._engine.handle_timer(now)
        if self._lower is not None:
            self._lower.handle_timer(now)
        self._aggregate_due(now)
        self._take_events()  # cancels found by timers: outcomes() hands them back

    def next_deadline(self) -> float | None:
        deadlines = [self._engine.next_deadline()]
        if self._block_since is not None:
            deadlines.append(self._block_since + self.config.aggregation_time)
        if self._engine.has_output:  # segments wait for pacing credit
            deadlines.append(self._bucket.credit_at(self._now))
        if self._lower is not None:
            deadlines.append(self._lower.next_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    @property
    def engine_counters(self) -> Counter[str]:
        return self._engine.counters

    # --- internals -------------------------------------------------------------------------------

    def _aggregate_due(self, now: float) -> None:
        since = self._block_since
        if since is not None and now >= since + self.config.aggregation_time:
            self._close_block(now)

    def _close_block(self, now: float) -> None:
        if not self._block:
            return
        data = b"".join(bundle for bundle, _ in self._block)
        session = self._engine.send_block(self.config.remote_engine, data, now)
        self._in_blocks[session] = [store_id for _, store_id in self._block]
        self.counters["blocks_out"] += 1
        self._block, self._block_bytes, self._block_since = [], 0, None

    def _take_events(self) -> list[bytes]:
        bundles: list[bytes] = []
        for event in self._engine.events():
            if isinstance(event, BlockReceived):
                bundles.extend(self._split(event.data))
            elif isinstance(event, BlockDelivered):
                self._handed.extend(self._in_blocks.pop(event.session, ()))
            elif isinstance(event, BlockCancelled):
                self.counters["blocks_cancelled"] += 1
                self._lost.extend(self._in_blocks.pop(event.session, ()))
            elif isinstance(event, GreenReceived):
                self.counters["green_dropped"] += 1  # we send none; a bundle needs a red block
        return bundles

    def _split(self, block: bytes) -> list[bytes]:
        """The bundles one after another in a block; what cannot be one is counted, dropped."""
        bundles, pos = [], 0
        while pos < len(block):
            try:
                end = cbor.skip_item(block, pos)
            except (BundleError, IndexError):
                self.counters["block_malformed"] += 1
                break
            bundles.append(block[pos:end])
            pos = end
        self.counters["bundles_in"] += len(bundles)
        return bundles
