"""The framing codec a convergence layer drives (sans-I/O): bundles in, datagrams out, and back.

    encoder = FrameEncoder(FrameConfig(frame_size=8192, depth=4))
    datagrams = encoder.encode(bundle_id, bundle_bytes)

    decoder = FrameDecoder()
    for bundle in decoder.receive(datagram, now):   # or receive_many(datagrams, now)
        ...
    decoder.expire(now)                              # at decoder.next_deadline()

The decoder never reads a clock: `now` comes in with every call. A partial bundle is kept
until `reassembly_timeout` seconds pass without a new frame of it; bundle ids must not repeat
within that time. Everything it holds is bounded, and every frame or bundle it throws away is
counted under a reason in `counters`.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from dtn.fec.frame import (
    DecodedFrame,
    FrameConfig,
    FrameError,
    FrameFormat,
    decode_frames,
    encode_frames,
)

# Memory a held frame costs beyond its payload, so that a flood of frames with tiny payloads
# is bounded by max_pending_bytes too.
_HELD_FRAME_COST = 128


class FrameEncoder:
    """Turns (bundle id, bundle bytes) into datagrams, per `config`."""

    def __init__(self, config: FrameConfig | None = None) -> None:
        self.config = config or FrameConfig()

    def encode(self, bundle_id: int, data: bytes) -> list[bytes]:
        return encode_frames(self.config, bundle_id, data)


@dataclass
class FecCounters:
    """What a FrameDecoder has seen. Dropped frames and bundles are counted by reason."""

    frames_received: int = 0
    frames_clean: int = 0
    frames_corrected: int = 0
    symbols_corrected: int = 0
    bundles_completed: int = 0
    frames_dropped: Counter[str] = field(default_factory=Counter)
    bundles_dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Partial:
    count: int
    bundle_length: int
    deadline: float
    payloads: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class FrameDecoder:
    """Decodes datagrams and reassembles bundles from their frames."""

    def __init__(
        self,
        *,
        reassembly_timeout: float = 600.0,
        max_bundle_bytes: int = 64 << 20,
        max_pending_bytes: int = 256 << 20,
        max_pending_bundles: int = 1024,
    ) -> None:
        if not 0 < max_bundle_bytes <= max_pending_bytes:
            raise ValueError("need 0 < max_bundle_bytes <= max_pending_bytes")
        self.reassembly_timeout = reassembly_timeout
        self.max_bundle_bytes = max_bundle_bytes
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_bundles = max_pending_bundles
        self.counters = FecCounters()
        # Least recently fed first, so eviction and expiry take from the front.
        self._partials: OrderedDict[int, _Partial] = OrderedDict()
        self._pending_bytes = 0
        # Ids completed lately, with when to forget them: a late duplicate frame of a
        # delivered bundle must not start (or, for a 1-frame bundle, deliver) it again.
        self._completed: OrderedDict[int, float] = OrderedDict()
        # A link keeps its format: a frame whose prefix a burst wiped is tried with this one.
        self._last_format: FrameFormat | None = None

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        """Feed one datagram; returns the bundles it completed (zero or one)."""
        return self.receive_many([datagram], now)

    def receive_many(self, datagrams: Sequence[bytes], now: float) -> list[bytes]:
        """Feed many datagrams at once (the fast path); returns the bundles they completed."""
        completed = []
        self.counters.frames_received += len(datagrams)
        for result in decode_frames(datagrams, self._last_format):
            if isinstance(result, FrameError):
                self.counters.frames_dropped[result.reason] += 1
                continue
            self._last_format = result.format
            if result.corrected_symbols:
                self.counters.frames_corrected += 1
                self.counters.symbols_corrected += result.corrected_symbols
            else:
                self.counters.frames_clean += 1
            bundle = self._add(result, now)
            if bundle is not None:
                completed.append(bundle)
        return completed

    def expire(self, now: float) -> int:
        """Drop partial bundles idle since `reassembly_timeout`; returns how many."""
        expired = 0
        while self._partials:
            bundle_id, partial = next(iter(self._partials.items()))
            if partial.deadline > now:
                break
            self._drop(bundle_id, "expired")
            expired += 1
        while self._completed and next(iter(self._completed.values())) <= now:
            self._completed.popitem(last=False)
        return expired

    def next_deadline(self) -> float | None:
        """When `expire` next has something to do, or None."""
        if not self._partials:
            return None
        return next(iter(self._partials.values())).deadline

    @property
    def pending_bundles(self) -> int:
        return len(self._partials)

    def _add(self, frame: DecodedFrame, now: float) -> bytes | None:
        if frame.bundle_length > self.max_bundle_bytes:
            self.counters.frames_dropped["too_large"] += 1
            return None
        if frame.bundle_id in self._completed:
            self.counters.frames_dropped["duplicate"] += 1
            return None
        partial = self._partials.get(frame.bundle_id)
        if partial is not None and (partial.count, partial.bundle_length) != (
            frame.count,
            frame.bundle_length,
        ):
            self._drop(frame.bundle_id, "conflict")  # the id was reused: the new one wins
            partial = None
        if partial is None:
            partial = _Partial(frame.count, frame.bundle_length, now)
            self._partials[frame.bundle_id] = partial
        elif frame.index in partial.payloads:
            self.counters.frames_dropped["duplicate"] += 1
            return None
        self._partials.move_to_end(frame.bundle_id)
        partial.deadline = now + self.reassembly_timeout
        partial.payloads[frame.index] = frame.payload
        partial.size += len(frame.payload)
        self._pending_bytes += len(frame.payload) + _HELD_FRAME_COST
        if partial.size > partial.bundle_length:
            self._drop(frame.bundle_id, "length_mismatch")
            return None
        if len(partial.payloads) == partial.count:
            return self._complete(frame.bundle_id, partial, now)
        self._enforce_limits()
        return None

    def _complete(self, bundle_id: int, partial: _Partial, now: float) -> bytes | None:
        self._forget(bundle_id)
        if partial.size != partial.bundle_length:
            self.counters.bundles_dropped["length_mismatch"] += 1
            return None
        self._completed[bundle_id] = now + self.reassembly_timeout
        while len(self._completed) > 4 * self.max_pending_bundles:
            self._completed.popitem(last=False)
        self.counters.bundles_completed += 1
        return b"".join(partial.payloads[index] for index in range(partial.count))

    def _enforce_limits(self) -> None:
        while (
            len(self._partials) > self.max_pending_bundles
            or self._pending_bytes > self.max_pending_bytes
        ):
            self._drop(next(iter(self._partials)), "evicted")

    def _drop(self, bundle_id: int, reason: str) -> None:
        self._forget(bundle_id)
        self.counters.bundles_dropped[reason] += 1

    def _forget(self, bundle_id: int) -> None:
        partial = self._partials.pop(bundle_id)
        self._pending_bytes -= partial.size + _HELD_FRAME_COST * len(partial.payloads)
