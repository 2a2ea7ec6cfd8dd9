"""The Bundle: decode (strict, bounded) and encode (deterministic) per RFC 9171."""

from __future__ import annotations

from dataclasses import dataclass

from . import cbor
from .admin import STATUS_REPORT, decode_status_report, record_type
from .blocks import (
    STATUS_REPORT_REQUESTS,
    BlockType,
    BundleFlags,
    CanonicalBlock,
    CRCType,
    PrimaryBlock,
    crc_value,
)
from .eid import EID, decode_eid
from .errors import BundleError
from .extensions import (
    HopCount,
    decode_bundle_age,
    decode_hop_count,
    decode_previous_node,
    security_targets,
)

_CRC_LENGTHS = {CRCType.CRC16: 2, CRCType.CRC32C: 4}
_SINGLE_INSTANCE = {BlockType.PREVIOUS_NODE: "previous node", BlockType.BUNDLE_AGE: "bundle age",
                    BlockType.HOP_COUNT: "hop count"}


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
               creation_time: int, sequence: int = 0, lifetime: int = 86_400_000,
               report_to: EID | str | None = None, flags: int = 0,
               crc_type: int = CRCType.CRC32C, hop_limit: int | None = None) -> Bundle:
        """A new bundle with a payload block (and a hop count block when `hop_limit` is given).

        A creation time of 0 (no clock) adds a bundle age block of 0, as RFC 9171 4.4.2 needs."""
        source, destination = _eid(source), _eid(destination)
        report_to = source if report_to is None else _eid(report_to)
        primary = PrimaryBlock(destination, source, report_to, creation_time, sequence, lifetime,
                               flags, crc_type)
        blocks = []
        if hop_limit is not None:
            blocks.append(CanonicalBlock(BlockType.HOP_COUNT, 2, HopCount(hop_limit, 0).encode(),
                                         crc_type=crc_type))
        if creation_time == 0:
            blocks.append(CanonicalBlock(BlockType.BUNDLE_AGE, len(blocks) + 2, b"\x00",
                                         crc_type=crc_type))
        blocks.append(CanonicalBlock(BlockType.PAYLOAD, 1, bytes(payload), crc_type=crc_type))
        return cls(primary, blocks)

    @classmethod
    def decode(cls, data: bytes, *, lenient: bool = False) -> Bundle:
        """Decode and validate one bundle; BundleError for anything RFC 9171 rejects.

        `lenient=True` accepts two things the RFC 9173 Appendix A examples do: a creation time of
        0 without a bundle age block, and a primary block without CRC that no BIB protects."""
        if not isinstance(data, bytes):
            data = bytes(data)
        try:
            return _decode(data, lenient)
        except IndexError:
            raise BundleError(f"bundle is truncated ({len(data)} bytes)") from None
        except RecursionError:
            raise BundleError("bundle nests too deeply") from None

    def encode(self) -> bytes:
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
        return bool(self.primary.flags & BundleFlags.ADMIN_RECORD)

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


def _eid(value: EID | str) -> EID:
    return value if isinstance(value, EID) else EID.parse(value)


def _check_crc(data: bytes, crc_type: int, start: int, crc_start: int, crc_end: int, end: int,
               what: str) -> None:
    if crc_end - crc_start != _CRC_LENGTHS[crc_type]:
        raise BundleError(f"{what} CRC must be {_CRC_LENGTHS[crc_type]} bytes for CRC type "
                          f"{crc_type}, found {crc_end - crc_start}")
    view = memoryview(data)
    expected = crc_value(crc_type, [view[start:crc_start], bytes(crc_end - crc_start),
                                    view[crc_end:end]])
    if expected != data[crc_start:crc_end]:
        raise BundleError(f"{what} CRC mismatch (bytes {start}..{end}): stored "
                          f"{data[crc_start:crc_end].hex()}, computed {expected.hex()}")


def _close_array(data: bytes, count: int, pos: int, what: str) -> int:
    if count == cbor.INDEFINITE:
        if data[pos] != cbor.BREAK:
            raise BundleError(f"{what} has more items than allowed (byte {pos})")
        return pos + 1
    return pos


def _decode_primary(data: bytes, start: int) -> tuple[PrimaryBlock, int]:
    count, pos = cbor.read_array(data, start, "primary block")
    if count != cbor.INDEFINITE and not 8 <= count <= 11:
        raise BundleError(f"primary block must have 8 to 11 items, found {count}")
    version, pos = cbor.read_uint(data, pos, "primary block version")
    if version != 7:
        raise BundleError(f"unsupported bundle protocol version {version} (expected 7)")
    flags, pos = cbor.read_uint(data, pos, "bundle processing control flags")
    crc_type, pos = cbor.read_uint(data, pos, "primary block CRC type")
    if crc_type > 2:
        raise BundleError(f"unknown CRC type {crc_type} in the primary block")
    fragment = bool(flags & BundleFlags.IS_FRAGMENT)
    expected = 8 + (2 if fragment else 0) + (1 if crc_type else 0)
    if count != cbor.INDEFINITE and count != expected:
        raise BundleError(
            f"primary block has {count} items but its flags (fragment={fragment}) and CRC type "
            f"{crc_type} call for {expected}: fragment offset and total ADU length are present "
            f"if and only if the bundle is a fragment (RFC 9171 4.3.1)")
    destination, pos = decode_eid(data, pos, "destination EID")
    source, pos = decode_eid(data, pos, "source node ID")
    report_to, pos = decode_eid(data, pos, "report-to EID")
    ts_count, pos = cbor.read_array(data, pos, "creation timestamp")
    if ts_count not in (2, cbor.INDEFINITE):
        raise BundleError(f"creation timestamp must have 2 items, found {ts_count}")
    creation_time, pos = cbor.read_uint(data, pos, "creation time")
    sequence, pos = cbor.read_uint(data, pos, "sequence number")
    pos = _close_array(data, ts_count, pos, "creation timestamp")
    lifetime, pos = cbor.read_uint(data, pos, "lifetime")
    offset = total = None
    if fragment:
        if count == cbor.INDEFINITE and data[pos] == cbor.BREAK:
            raise BundleError("fragment flag set but fragment offset and total ADU length absent")
        offset, pos = cbor.read_uint(data, pos, "fragment offset")
        total, pos = cbor.read_uint(data, pos, "total ADU length")
    if crc_type:
        crc_start, crc_end = cbor.read_bytes(data, pos, "primary block CRC")
        pos = crc_end
    pos = _close_array(data, count, pos, "primary block")
    if crc_type:
        _check_crc(data, crc_type, start, crc_start, crc_end, pos, "primary block")
    primary = PrimaryBlock(destination, source, report_to, creation_time, sequence, lifetime,
                           flags, crc_type, offset, total)
    return primary, pos


def _decode_canonical(data: bytes, start: int) -> tuple[CanonicalBlock, int]:
    count, pos = cbor.read_array(data, start, "canonical block")
    if count not in (5, 6, cbor.INDEFINITE):
        raise BundleError(f"canonical block at byte {start} must have 5 or 6 items, found {count}")
    block_type, pos = cbor.read_uint(data, pos, "block type code")
    number, pos = cbor.read_uint(data, pos, "block number")
    flags, pos = cbor.read_uint(data, pos, "block processing control flags")
    crc_type, pos = cbor.read_uint(data, pos, "block CRC type")
    if crc_type > 2:
        raise BundleError(f"unknown CRC type {crc_type} in block {number}")
    if count != cbor.INDEFINITE and count != 5 + (1 if crc_type else 0):
        raise BundleError(f"block {number} has {count} items but CRC type {crc_type}")
    data_start, data_end = cbor.read_bytes(data, pos, f"block {number} data")
    pos = data_end
    if crc_type:
        crc_start, crc_end = cbor.read_bytes(data, pos, f"block {number} CRC")
        pos = crc_end
    pos = _close_array(data, count, pos, f"block {number}")
    if crc_type:
        _check_crc(data, crc_type, start, crc_start, crc_end, pos, f"block {number}")
    return CanonicalBlock(block_type, number, data[data_start:data_end], flags, crc_type), pos


def _decode(data: bytes, lenient: bool) -> Bundle:
    if data[0] != 0x9F:
        raise BundleError("a bundle must be a CBOR indefinite-length array (first byte 0x9f), "
                          f"found 0x{data[0]:02x}")
    primary, pos = _decode_primary(data, 1)
    blocks = []
    while data[pos] != cbor.BREAK:
        block, pos = _decode_canonical(data, pos)
        blocks.append(block)
    if pos + 1 != len(data):
        raise BundleError(f"{len(data) - pos - 1} bytes after the end of the bundle")
    bundle = Bundle(primary, blocks)
    _validate(bundle, lenient)
    return bundle


def _validate(bundle: Bundle, lenient: bool) -> None:
    """The RFC 9171 rules that span blocks."""
    primary, blocks = bundle.primary, bundle.blocks
    if not blocks:
        raise BundleError("a bundle needs at least a payload block after the primary block")
    last = blocks[-1]
    if last.block_type != BlockType.PAYLOAD:
        raise BundleError("the last block must be the payload block (RFC 9171 4.1)")
    if last.number != 1:
        raise BundleError(f"the payload block must be block number 1, found {last.number}")
    numbers = set()
    seen_types = set()
    for block in blocks:
        if block.number == 0 or block.number in numbers:
            raise BundleError(f"block number {block.number} is reserved or used twice")
        numbers.add(block.number)
        kind = block.block_type
        if kind in _SINGLE_INSTANCE or kind == BlockType.PAYLOAD:
            if kind in seen_types:
                name = _SINGLE_INSTANCE.get(kind, "payload")
                raise BundleError(f"more than one {name} block (RFC 9171 4.4)")
            seen_types.add(kind)
            if kind == BlockType.PREVIOUS_NODE:
                decode_previous_node(block.data)
            elif kind == BlockType.BUNDLE_AGE:
                decode_bundle_age(block.data)
            elif kind == BlockType.HOP_COUNT:
                decode_hop_count(block.data)
    if primary.creation_time == 0 and BlockType.BUNDLE_AGE not in seen_types and not lenient:
        raise BundleError("creation time is 0 but there is no bundle age block (RFC 9171 4.4.2)")
    if primary.crc_type == CRCType.NONE and not lenient and not _bib_covers_primary(blocks):
        raise BundleError("primary block has no CRC and no BIB targets it (RFC 9171 4.3.1)")
    if not primary.source.is_singleton:
        raise BundleError(f"source node ID {primary.source} is not a singleton endpoint")
    if primary.flags & STATUS_REPORT_REQUESTS and (
            primary.source.is_null or primary.flags & BundleFlags.ADMIN_RECORD):
        raise BundleError("status reports must not be requested for an anonymous bundle or an "
                          "administrative record (RFC 9171 4.2.3)")
    if primary.flags & BundleFlags.ADMIN_RECORD and record_type(last.data) == STATUS_REPORT:
        decode_status_report(last.data)


def _bib_covers_primary(blocks: list[CanonicalBlock]) -> bool:
    return any(block.block_type == BlockType.BIB and 0 in security_targets(block.data)
               for block in blocks)
