"""Proactive fragmentation and reassembly (RFC 9171 5.8 and 5.9). Pure functions on Bundles."""

from __future__ import annotations

import io
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import BinaryIO

from dtn.bundle import BlockFlags, BlockType, Bundle, BundleError, BundleFlags, CanonicalBlock, cbor


class FragmentError(ValueError):
    """The bundle cannot be cut to the size asked (must not be fragmented, or too small)."""


def _copy(block: CanonicalBlock, data: bytes | None = None) -> CanonicalBlock:
    return CanonicalBlock(
        block.block_type,
        block.number,
        block.data if data is None else data,
        block.flags,
        block.crc_type,
    )


def adu_key(bundle: Bundle) -> str:
    """The bundle ID of the whole ADU a (fragment) bundle carries part of."""
    primary = bundle.primary
    return f"{primary.source}/{primary.creation_time}.{primary.sequence}"


def fragment(bundle: Bundle, max_size: int) -> list[Bundle]:
    """Cut a bundle into fragments that each encode to at most `max_size` bytes.

    The first fragment carries every extension block; later ones carry only the blocks flagged
    "replicate in every fragment", and the bundle age block. Fragmenting a fragment keeps
    offsets relative to the ADU."""
    primary = bundle.primary
    payload = bundle.payload_block.data
    if primary.is_fragment:
        base, total = primary.fragment_offset, primary.total_adu_length
    else:
        base, total = 0, len(payload)
    pieces = fragments_of(
        bundle, len(payload), lambda pos, length: payload[pos : pos + length], max_size, base, total
    )
    return list(pieces)


def fragments_of(
    bundle: Bundle,
    length: int,
    read: Callable[[int, int], bytes],
    max_size: int,
    base: int = 0,
    total: int | None = None,
) -> Iterator[Bundle]:
    """`fragment`, one fragment at a time, for a bundle whose payload (`length` bytes, from
    `base` within an ADU of `total`) is not in memory: `read(position, count)` gives its bytes.
    `bundle`'s own payload block only lends its header."""
    primary = bundle.primary
    if primary.flags & BundleFlags.MUST_NOT_FRAGMENT:
        raise FragmentError(f"bundle {bundle.id} must not be fragmented")
    payload_block = bundle.payload_block
    total = length if total is None else total
    extensions = [b for b in bundle.blocks if b.block_type != BlockType.PAYLOAD]
    # Beyond the flag, each block type's own rules decide (RFC 9171 5.8): a fragment of a
    # bundle without a creation time is not valid without an age block (4.4.2), whatever
    # flags its source gave the block, so the age block goes in every fragment.
    replicated = [b for b in extensions if b.flags & BlockFlags.REPLICATE_IN_FRAGMENTS
                  or b.block_type == BlockType.BUNDLE_AGE]
    if length < 2:  # RFC 9171 5.8: fragments carry the first N and last M - N bytes, 0 < N < M
        raise FragmentError(f"the {length}-byte payload of {bundle.id} cannot be split")
    pos = 0
    while pos < length:
        head = replace(
            primary,
            flags=primary.flags | BundleFlags.IS_FRAGMENT,
            fragment_offset=base + pos,
            total_adu_length=total,
        )
        blocks = [_copy(b) for b in (extensions if pos == 0 else replicated)]
        piece = _copy(payload_block, b"")
        candidate = Bundle(head, [*blocks, piece])
        room = max_size - len(candidate.encode()) + 1  # +1: the empty payload's 1-byte head
        count = min(length - pos, room - 1)
        while count > 0 and len(cbor.head(cbor.BYTES, count)) + count > room:
            count -= 1
        if count <= 0:
            raise FragmentError(
                f"{max_size} bytes cannot hold a fragment of {bundle.id}: its "
                f"blocks alone take {max_size - room + 1}"
            )
        piece.data = read(pos, count)
        yield candidate
        pos += count


class Coverage:
    """The byte ranges of an ADU that its fragments hold, merged into disjoint intervals, so
    that the arrival of one more fragment costs O(log n), not a pass over all of them."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for offset, length in spans:
            self.add(offset, length)

    def add(self, offset: int, length: int) -> None:
        end = offset + length
        starts, ends = self._starts, self._ends
        first = bisect_left(ends, offset)  # the first interval that ends at or after offset
        past = bisect_right(starts, end)  # intervals from here on start after end
        if first < past:  # they overlap or touch the new span: one interval from all of them
            offset, end = min(offset, starts[first]), max(end, ends[past - 1])
        starts[first:past] = [offset]
        ends[first:past] = [end]

    def covers(self, total: int) -> bool:
        """Whether the spans cover 0..total without a gap."""
        return bool(self._starts) and self._starts[0] == 0 and self._ends[0] >= total


def reassemble(fragments: list[Bundle]) -> Bundle:
    """The original bundle from fragments covering its whole ADU (overlaps allowed)."""
    first = min(fragments, key=lambda f: f.primary.fragment_offset)
    total = first.primary.total_adu_length
    if first.primary.fragment_offset != 0 or not Coverage(
        (f.primary.fragment_offset, len(f.payload)) for f in fragments
    ).covers(total):
        raise BundleError(f"fragments of {adu_key(first)} do not cover its {total} bytes")
    payload = io.BytesIO()
    whole = reassemble_into(fragments, payload)
    whole.payload = payload.getvalue()
    return whole


def reassemble_into(fragments: Iterable[Bundle], out: BinaryIO) -> Bundle:
    """Write the payloads of fragments that cover their ADU (the caller has checked) into
    `out` at their offsets, one fragment at a time; the original bundle with an empty payload
    block, its extension blocks from the fragment at offset 0."""
    first = None
    for piece in fragments:
        primary = piece.primary
        offset = primary.fragment_offset
        if offset == 0 and first is None:
            first = piece
        out.seek(offset)
        out.write(piece.payload_block.data_view[: max(0, primary.total_adu_length - offset)])
    if first is None:
        raise BundleError("no fragment at offset 0 to reassemble from")
    primary = replace(
        first.primary,
        flags=first.primary.flags & ~int(BundleFlags.IS_FRAGMENT),
        fragment_offset=None,
        total_adu_length=None,
    )
    whole = Bundle(primary, [_copy(b) for b in first.blocks])
    whole.payload = b""
    return whole
