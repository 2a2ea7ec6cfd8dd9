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
    PackedFrame,
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
    bundle_length: int
    deadline: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # by offset
    size: int = 0


class FrameDecoder:
    """Decodes datagrams of either frame version and reassembles bundles from their pieces.

    Both versions come down to pieces (bundle id, bundle length, offset, bytes): a version 1
    frame is one piece, its offset implied by index and length (every frame but the last
    carries the same length); a version 2 frame carries its pieces as records. One
    reassembler, with one set of limits and counters, takes them all.
    """

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
        """Feed one datagram; returns the bundles it completed."""
        return self.receive_many([datagram], now)

    def receive_many(self, datagrams: Sequence[bytes], now: float) -> list[bytes]:
        """Feed many datagrams at once (the fast path); returns the bundles they completed."""
        completed: list[bytes] = []
        counters = self.counters
        counters.frames_received += len(datagrams)
        add = self._add
        for result in decode_frames(datagrams, self._last_format):
            if isinstance(result, FrameError):
                counters.frames_dropped[result.reason] += 1
                continue
            self._last_format = result.format
            if result.corrected_symbols:
                counters.frames_corrected += 1
                counters.symbols_corrected += result.corrected_symbols
            else:
                counters.frames_clean += 1
            if type(result) is PackedFrame:
                for piece in result.pieces:
                    add(*piece, now, completed)
            else:
                add(*_v1_piece(result), now, completed)
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

    def _add(
        self,
        bundle_id: int,
        bundle_length: int,
        offset: int,
        data: bytes,
        now: float,
        completed: list[bytes],
    ) -> None:
        """Take one piece; a bundle it completes is appended to `completed`."""
        if bundle_length > self.max_bundle_bytes:
            self.counters.frames_dropped["too_large"] += 1
            return
        if bundle_id in self._completed:
            self.counters.frames_dropped["duplicate"] += 1
            return
        partial = self._partials.get(bundle_id)
        if partial is None and offset == 0 and len(data) == bundle_length:
            # A whole bundle in one piece (small bundles, packed): nothing to hold.
            self._remember(bundle_id, now)
            completed.append(data)
            return
        if partial is not None and partial.bundle_length != bundle_length:
            self._drop(bundle_id, "conflict")  # the id was reused: the new one wins
            partial = None
        if partial is None:
            partial = _Partial(bundle_length, now)
            self._partials[bundle_id] = partial
        elif offset in partial.pieces:
            self.counters.frames_dropped["duplicate"] += 1
            return
        self._partials.move_to_end(bundle_id)
        partial.deadline = now + self.reassembly_timeout
        partial.pieces[offset] = data
        partial.size += len(data)
        self._pending_bytes += len(data) + _HELD_FRAME_COST
        if partial.size > partial.bundle_length:
            self._drop(bundle_id, "length_mismatch")
        elif partial.size == partial.bundle_length:
            self._complete(bundle_id, partial, now, completed)
        else:
            self._enforce_limits()

    def _complete(
        self, bundle_id: int, partial: _Partial, now: float, completed: list[bytes]
    ) -> None:
        self._forget(bundle_id)
        position, parts = 0, []
        for offset in sorted(partial.pieces):
            if offset != position:  # pieces that overlap leave a gap of the same size
                self.counters.bundles_dropped["length_mismatch"] += 1
                return
            parts.append(partial.pieces[offset])
            position += len(parts[-1])
        self._remember(bundle_id, now)
        completed.append(b"".join(parts))

    def _remember(self, bundle_id: int, now: float) -> None:
        self._completed[bundle_id] = now + self.reassembly_timeout
        if len(self._completed) > 4 * self.max_pending_bundles:
            self._completed.popitem(last=False)
        self.counters.bundles_completed += 1

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
        self._pending_bytes -= partial.size + _HELD_FRAME_COST * len(partial.pieces)


def _v1_piece(frame: DecodedFrame) -> tuple[int, int, int, bytes]:
    """A version 1 frame as a piece: every frame but the last carries as many bytes as this
    one, so the offset follows from the index (the last frame ends the bundle)."""
    length = len(frame.payload)
    last = frame.index == frame.count - 1
    offset = frame.bundle_length - length if last else frame.index * length
    return frame.bundle_id, frame.bundle_length, offset, frame.payload
