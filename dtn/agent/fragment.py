"""Proactive fragmentation and reassembly (RFC 9171 5.8 and 5.9). Pure functions on Bundles."""

from __future__ import annotations

from dataclasses import replace

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
    "replicate in every fragment". Fragmenting a fragment keeps offsets relative to the ADU."""
    primary = bundle.primary
    if primary.flags & BundleFlags.MUST_NOT_FRAGMENT:
        raise FragmentError(f"bundle {bundle.id} must not be fragmented")
    payload_block = bundle.payload_block
    payload = payload_block.data
    if primary.is_fragment:
        base, total = primary.fragment_offset, primary.total_adu_length
    else:
        base, total = 0, len(payload)
    extensions = [b for b in bundle.blocks if b.block_type != BlockType.PAYLOAD]
    replicated = [b for b in extensions if b.flags & BlockFlags.REPLICATE_IN_FRAGMENTS]
    fragments = []
    pos = 0
    while pos < len(payload) or not fragments:
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
        length = min(len(payload) - pos, room - 1)
        while length > 0 and len(cbor.head(cbor.BYTES, length)) + length > room:
            length -= 1
        if length <= 0 and pos < len(payload):
            raise FragmentError(
                f"{max_size} bytes cannot hold a fragment of {bundle.id}: its "
                f"blocks alone take {max_size - room + 1}"
            )
        piece.data = payload[pos : pos + length]
        fragments.append(candidate)
        pos += length
    return fragments


def covers(spans: list[tuple[int, int]], total: int) -> bool:
    """Whether (offset, length) spans cover 0..total without a gap."""
    reached = 0
    for offset, length in sorted(spans):
        if offset > reached:
            return False
        reached = max(reached, offset + length)
    return reached >= total


def reassemble(fragments: list[Bundle]) -> Bundle:
    """The original bundle from fragments covering its whole ADU (overlaps allowed)."""
    first = min(fragments, key=lambda f: f.primary.fragment_offset)
    total = first.primary.total_adu_length
    if first.primary.fragment_offset != 0 or not covers(
        [(f.primary.fragment_offset, len(f.payload)) for f in fragments], total
    ):
        raise BundleError(f"fragments of {adu_key(first)} do not cover its {total} bytes")
    payload = bytearray(total)
    for piece in fragments:
        offset = piece.primary.fragment_offset
        data = piece.payload[: max(0, total - offset)]
        payload[offset : offset + len(data)] = data
    primary = replace(
        first.primary,
        flags=first.primary.flags & ~int(BundleFlags.IS_FRAGMENT),
        fragment_offset=None,
        total_adu_length=None,
    )
    whole = Bundle(primary, [_copy(b) for b in first.blocks])
    whole.payload = bytes(payload)
    return whole
