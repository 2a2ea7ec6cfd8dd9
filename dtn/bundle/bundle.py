"""The Bundle: decode (strict, bounded) and encode (deterministic) per RFC 9171."""

from __future__ import annotations

from dataclasses import dataclass

from .blocks import IS_ADMIN_RECORD, BlockType, CanonicalBlock, CRCType, PrimaryBlock
from .decoder import decode_blocks
from .eid import EID
from .errors import BundleError
from .extensions import HopCount

_PAYLOAD = BlockType.PAYLOAD
DEFAULT_LIFETIME = 86_400_000  # ms: a day

try:
    from ._scan import encode_bundle as _encode_bundle
except ImportError:  # no compiler at install time
    _encode_bundle = None


@dataclass(frozen=True, slots=True)
class BundleId:
    """What identifies a bundle (RFC 9171 5.x): source, creation timestamp, and for a fragment
    its offset and length."""

    source: str
    creation_time: int
    sequence: int
    fragment_offset: int | None = None
    fragment_length: int | None = None

    def __str__(self) -> str:
        text = f"{self.source}/{self.creation_time}.{self.sequence}"
        if self.fragment_offset is not None:
            text += f"#{self.fragment_offset}+{self.fragment_length}"
        return text


class Bundle:
    """A BPv7 bundle: a primary block and canonical blocks in wire order (payload last)."""

    __slots__ = ("primary", "blocks")

    def __init__(self, primary: PrimaryBlock, blocks: list[CanonicalBlock]) -> None:
        self.primary = primary
        self.blocks = blocks

    @classmethod
    def create(cls, source: EID | str, destination: EID | str, payload: bytes, *,
               creation_time: int, sequence: int = 0, lifetime: int = DEFAULT_LIFETIME,
               report_to: EID | str | None = None, flags: int = 0,
               crc_type: int = CRCType.CRC32C, hop_limit: int | None = None) -> Bundle:
        """A new bundle with a payload block (and a hop count block when `hop_limit` is given).

        A creation time of 0 (no clock) adds a bundle age block of 0, as RFC 9171 4.4.2 needs."""
        # Made for every bundle an application sends: attribute lookups are kept off this path.
        if not isinstance(source, EID):
            source = EID.parse(source)
        if not isinstance(destination, EID):
            destination = EID.parse(destination)
        if report_to is None:
            report_to = source
        elif not isinstance(report_to, EID):
            report_to = EID.parse(report_to)
        primary = PrimaryBlock(destination, source, report_to, creation_time, sequence, lifetime,
                               flags, crc_type)
        payload_block = CanonicalBlock(_PAYLOAD, 1, bytes(payload), 0, crc_type)
        if hop_limit is None and creation_time:
            return cls(primary, [payload_block])
        blocks = []
        if hop_limit is not None:
            blocks.append(CanonicalBlock(BlockType.HOP_COUNT, 2, HopCount(hop_limit, 0).encode(),
                                         crc_type=crc_type))
        if creation_time == 0:
            blocks.append(CanonicalBlock(BlockType.BUNDLE_AGE, len(blocks) + 2, b"\x00",
                                         crc_type=crc_type))
        blocks.append(payload_block)
        return cls(primary, blocks)

    @classmethod
    def decode(cls, data: bytes, *, lenient: bool = False) -> Bundle:
        """Decode and validate one bundle; BundleError for anything RFC 9171 rejects.

        `lenient=True` accepts two things the RFC 9173 Appendix A examples do: a creation time of
        0 without a bundle age block, and a primary block without CRC that no BIB protects."""
        if data.__class__ is not bytes:
            data = bytes(data)
        return cls(*decode_blocks(data, lenient))

    def encode(self) -> bytes:
        if _encode_bundle is not None:  # the same bytes, one buffer and no Python per block
            return _encode_bundle(self.primary.encode(), self.blocks)
        return self.encode_python()

    def encode_python(self) -> bytes:
        """encode() without the C extension: what it computes, for machines without one."""
        parts = [b"\x9f", self.primary.encode()]
        for block in self.blocks:
            block.encode_parts(parts)
        parts.append(b"\xff")
        return b"".join(parts)

    @property
    def payload_block(self) -> CanonicalBlock:
        last = self.blocks[-1]
        if last.block_type == BlockType.PAYLOAD:
            return last
        block = self.block_of_type(BlockType.PAYLOAD)
        if block is None:
            raise BundleError("bundle has no payload block")
        return block

    @property
    def payload(self) -> bytes:
        return self.payload_block.data

    @payload.setter
    def payload(self, value: bytes) -> None:
        self.payload_block.data = bytes(value)

    def block_of_type(self, block_type: int) -> CanonicalBlock | None:
        for block in self.blocks:
            if block.block_type == block_type:
                return block
        return None

    def block_by_number(self, number: int) -> CanonicalBlock | None:
        for block in self.blocks:
            if block.number == number:
                return block
        return None

    def next_block_number(self) -> int:
        return max((block.number for block in self.blocks), default=1) + 1

    def insert_block(self, block: CanonicalBlock) -> None:
        """Add an extension block before the payload block (which stays last)."""
        self.blocks.insert(len(self.blocks) - 1, block)

    @property
    def is_admin_record(self) -> bool:
        return bool(self.primary.flags & IS_ADMIN_RECORD)

    @property
    def id(self) -> BundleId:
        primary = self.primary
        if primary.is_fragment:
            return BundleId(str(primary.source), primary.creation_time, primary.sequence,
                            primary.fragment_offset, len(self.payload))
        return BundleId(str(primary.source), primary.creation_time, primary.sequence)

    def __repr__(self) -> str:
        types = ",".join(str(block.block_type) for block in self.blocks)
        return (f"Bundle({self.primary.source} -> {self.primary.destination}, "
                f"t={self.primary.creation_time}.{self.primary.sequence}, blocks=[{types}], "
                f"payload={len(self.payload)} B)")

