"""Bit errors: independent flips at a fixed bit error rate, or Gilbert–Elliott bursts.

Both are one model. The channel is in one of a few states (one for independent errors; "good" and
"bad" for Gilbert–Elliott), each with its own bit error rate; a state lasts a geometrically
distributed number of bits (mean `mean_good_bits` / `mean_bad_bits`). Within a state, the gap to
the next flipped bit is geometric too, so the work per datagram is proportional to the flips and
state changes in it, not to its bits: at BER 1e-9 a datagram costs two comparisons.

The process runs over the stream of bits the direction carries, datagram after datagram, so a
burst can span datagrams. Geometric gaps are memoryless, which is what makes redrawing the gap on
a state change exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtn.emulator.draws import BatchedDraws, geometric_draws

# Above this many flips in one datagram numpy's scatter-XOR beats a Python loop.
_VECTOR_FLIPS = 48


@dataclass(frozen=True)
class BurstParams:
    """Gilbert–Elliott parameters: the BER in each state and the mean state lengths in bits."""

    ber_good: float
    ber_bad: float
    mean_good_bits: float
    mean_bad_bits: float

    def __post_init__(self) -> None:
        for name in ("ber_good", "ber_bad"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("mean_good_bits", "mean_bad_bits"):
            if not getattr(self, name) >= 1.0:
                raise ValueError(f"{name} must be at least 1")

    @property
    def mean_ber(self) -> float:
        """Long-run bit error rate."""
        total = self.mean_good_bits + self.mean_bad_bits
        return (self.ber_good * self.mean_good_bits + self.ber_bad * self.mean_bad_bits) / total


class _State:
    __slots__ = ("gaps", "lengths")

    def __init__(self, gaps: BatchedDraws, lengths: BatchedDraws) -> None:
        self.gaps = gaps
        self.lengths = lengths


class BitErrorProcess:
    def __init__(
        self, rng: np.random.Generator, ber: float = 0.0, burst: BurstParams | None = None
    ) -> None:
        if burst is None:
            self._states = [_State(geometric_draws(rng, ber), geometric_draws(rng, 0.0))]
        else:
            self._states = [
                _State(geometric_draws(rng, rate), geometric_draws(rng, 1.0 / mean_bits))
                for rate, mean_bits in (
                    (burst.ber_good, burst.mean_good_bits),
                    (burst.ber_bad, burst.mean_bad_bits),
                )
            ]
        self._state = 0
        # Offsets from the current stream position: of the next flipped bit, and of the next
        # state change.
        self._next_flip = self._states[0].gaps.next() - 1
        self._state_left = self._states[0].lengths.next()

    def corrupt(self, data: bytes) -> tuple[bytes, int]:
        """`data` as it arrives after the channel's bit errors, and how many bits were flipped."""
        bits = len(data) * 8
        if bits <= self._next_flip and bits <= self._state_left:
            self._next_flip -= bits
            self._state_left -= bits
            return data, 0
        positions = self._flip_positions(bits)
        if not positions:
            return data, 0
        return _flip(data, positions), len(positions)

    def _flip_positions(self, bits: int) -> list[int]:
        positions: list[int] = []
        append = positions.append
        position = 0
        next_flip, state_left = self._next_flip, self._state_left
        while True:
            segment_start = position
            segment_end = min(bits, position + state_left)  # where this state ends, or the data
            next_gap = self._states[self._state].gaps.next
            while position + next_flip < segment_end:
                position += next_flip
                append(position)
                position += 1
                next_flip = next_gap() - 1
            next_flip -= segment_end - position
            state_left -= segment_end - segment_start
            position = segment_end
            if state_left > 0:
                break
            self._state = (self._state + 1) % len(self._states)
            state = self._states[self._state]
            state_left = state.lengths.next()
            next_flip = state.gaps.next() - 1
            if position >= bits:
                break
        self._next_flip, self._state_left = next_flip, state_left
        return positions


def _flip(data: bytes, positions: list[int]) -> bytes:
    """`data` with the given bit positions (0 = most significant bit of byte 0) inverted."""
    buffer = bytearray(data)
    if len(positions) < _VECTOR_FLIPS:
        for position in positions:
            buffer[position >> 3] ^= 0x80 >> (position & 7)
    else:
        indices = np.asarray(positions, dtype=np.int64)
        view = np.frombuffer(buffer, dtype=np.uint8)
        np.bitwise_xor.at(view, indices >> 3, (0x80 >> (indices & 7)).astype(np.uint8))
    return bytes(buffer)
