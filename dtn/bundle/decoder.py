"""Decoding a bundle: a strict pure-Python walk, and a C fast path for the common shape.

The C scanner (`_scan.c`, optional) handles bundles in fully deterministic form and returns None
for anything else; everything it returns None for, errors included, goes through the strict
Python walk, which says what is wrong and where. Both paths end in the same cross-block checks.
"""

from __future__ import annotations

from . import cbor
from .admin import STATUS_REPORT, decode_status_report, record_type
from .blocks import (
    IS_ADMIN_RECORD,
    IS_FRAGMENT,
    MUST_NOT_FRAGMENT,
    REPORT_IF_UNPROCESSABLE,
    STATUS_REPORT_REQUESTS,
    BlockType,
    CanonicalBlock,
    CRCType,
    PrimaryBlock,
    crc_value,
)
from .eid import EID, decode_eid, eid_cache, eid_from_span
from .errors import BundleError
from .extensions import (
    decode_bundle_age,
    decode_hop_count,
    decode_previous_node,
    security_targets,
)

_CRC_LENGTHS = {CRCType.CRC16: 2, CRCType.CRC32C: 4}
TRUNCATED = f"bundle is truncated: {cbor.NOT_CBOR}"

try:
    from ._scan import scan as _scan
except ImportError:  # no compiler at install time: the pure-Python path alone
    _scan = None

def _check_crc(data: bytes, crc_type: int, start: int, crc_start: int, crc_end: int, end: int,
               what: str, section: str) -> None:
    """`section` is the RFC 9171 section that defines the block's CRC field."""
    if crc_end - crc_start != _CRC_LENGTHS[crc_type]:
        raise BundleError(f"{what} CRC must be {_CRC_LENGTHS[crc_type]} bytes for CRC type "
                          f"{crc_type}, found {crc_end - crc_start} (RFC 9171 §4.2.2)")
    view = memoryview(data)
    expected = crc_value(crc_type, [view[start:crc_start], bytes(crc_end - crc_start),
                                    view[crc_end:end]])
    if expected != data[crc_start:crc_end]:
        raise BundleError(f"{what} CRC mismatch (bytes {start}..{end}): stored "
                          f"{data[crc_start:crc_end].hex()}, computed {expected.hex()} over the "
                          f"block with its CRC field zeroed (RFC 9171 §4.2.1, §4.2.2, §{section}, "
                          f"§5.6 step 3)")


def _decode_primary(data: bytes, start: int) -> tuple[PrimaryBlock, int]:
    count, pos = cbor.read_array(data, start, "primary block (RFC 9171 §4.3.1)")
    if count != cbor.INDEFINITE and not 8 <= count <= 11:
        raise BundleError(f"the first block must be the primary block, an array of 8 to 11 items; "
                          f"found {count} items (RFC 9171 §4.1, §4.3.1)")
    version, pos = cbor.read_uint(data, pos, "primary block version (RFC 9171 §4.3.1)")
    if version != 7:
        raise BundleError(f"unsupported bundle protocol version {version} (expected 7, "
                          "RFC 9171 §4.3.1)")
    flags, pos = cbor.read_uint(data, pos,
        "bundle processing control flags (RFC 9171 §4.3.1, §4.2.3)")
    crc_type, pos = cbor.read_uint(data, pos, "primary block CRC type (RFC 9171 §4.3.1, §4.2.1)")
    if crc_type > 2:
        raise BundleError(f"unknown CRC type {crc_type} in the primary block (RFC 9171 §4.2.1)")
    fragment = bool(flags & IS_FRAGMENT)
    expected = 8 + (2 if fragment else 0) + (1 if crc_type else 0)
    if count != cbor.INDEFINITE and count != expected:
        raise BundleError(
            f"primary block has {count} items but its flags (fragment={fragment}) and CRC type "
            f"{crc_type} call for {expected}: fragment offset and total ADU length are present "
            f"if and only if the bundle is a fragment, the CRC if and only if its type is not 0 "
            f"(RFC 9171 §4.3.1, §4.2.2)")
    destination, pos = decode_eid(data, pos, "destination EID")
    source, pos = decode_eid(data, pos, "source node ID")
    report_to, pos = decode_eid(data, pos, "report-to EID")
    ts_count, pos = cbor.read_array_of(data, pos, 2, "creation timestamp (RFC 9171 §4.3.1, §4.2.7)")
    creation_time, pos = cbor.read_uint(data, pos,
        "creation time (RFC 9171 §4.3.1, §4.2.6, §4.2.7)")
    sequence, pos = cbor.read_uint(data, pos, "sequence number (RFC 9171 §4.3.1, §4.2.7)")
    pos = cbor.close_array(data, ts_count, pos, "creation timestamp (RFC 9171 §4.3.1, §4.2.7)")
    lifetime, pos = cbor.read_uint(data, pos, "lifetime (RFC 9171 §4.3.1)")
    offset = total = None
    if fragment:
        if count == cbor.INDEFINITE and data[pos] == cbor.BREAK:
            raise BundleError("fragment flag set but fragment offset and total ADU length absent "
                              "(RFC 9171 §4.3.1)")
        offset, pos = cbor.read_uint(data, pos, "fragment offset (RFC 9171 §4.3.1)")
        total, pos = cbor.read_uint(data, pos, "total ADU length (RFC 9171 §4.3.1)")
    if crc_type:
        crc_start, crc_end = cbor.read_bytes(data, pos,
            "primary block CRC (RFC 9171 §4.3.1, §4.2.2)")
        pos = crc_end
    pos = cbor.close_array(data, count, pos, "primary block (RFC 9171 §4.3.1)")
    if crc_type:
        _check_crc(data, crc_type, start, crc_start, crc_end, pos, "primary block", "4.3.1")
    fields = (destination, source, report_to, creation_time, sequence, lifetime, flags, crc_type,
              offset, total)
    primary = PrimaryBlock(*fields)
    # The primary block is immutable (RFC 9171 §4.3.1): encode() gives back the received bytes,
    # also when they are not in the deterministic form the encoder writes; that form is kept
    # beside them for BPSec (canonical_encoding).
    primary.remember_encoding(fields, bytes(data[start:pos]), primary.encode())
    return primary, pos


def _decode_canonical(data: bytes, start: int) -> tuple[CanonicalBlock, int]:
    count, pos = cbor.read_array(data, start, "canonical block (RFC 9171 §4.3.2)")
    if count not in (5, 6, cbor.INDEFINITE):
        raise BundleError(f"every block after the primary block is a canonical block of 5 or 6 "
                          f"items; found {count} at byte {start} (RFC 9171 §4.1, §4.3.2)")
    block_type, pos = cbor.read_uint(data, pos, "block type code (RFC 9171 §4.3.2)")
    number, pos = cbor.read_uint(data, pos, "block number (RFC 9171 §4.3.2)")
    flags, pos = cbor.read_uint(data, pos,
        "block processing control flags (RFC 9171 §4.3.2, §4.2.4)")
    crc_type, pos = cbor.read_uint(data, pos, "block CRC type (RFC 9171 §4.3.2, §4.2.1)")
    if crc_type > 2:
        raise BundleError(f"unknown CRC type {crc_type} in block {number} (RFC 9171 §4.2.1)")
    if count != cbor.INDEFINITE and count != 5 + (1 if crc_type else 0):
        raise BundleError(f"block {number} has {count} items but CRC type {crc_type}: the CRC is "
                          "present if and only if its type is not 0 (RFC 9171 §4.3.2, §4.2.2)")
    data_start, data_end = cbor.read_bytes(data, pos, f"block {number} data (RFC 9171 §4.3.2)")
    pos = data_end
    if crc_type:
        crc_start, crc_end = cbor.read_bytes(data, pos,
            f"block {number} CRC (RFC 9171 §4.3.2, §4.2.2)")
        pos = crc_end
    pos = cbor.close_array(data, count, pos, f"block {number} (RFC 9171 §4.3.2)")
    if crc_type:
        _check_crc(data, crc_type, start, crc_start, crc_end, pos, f"block {number}", "4.3.2")
    return CanonicalBlock(block_type, number, data[data_start:data_end], flags, crc_type), pos


def decode_blocks(data: bytes, lenient: bool) -> tuple[PrimaryBlock, list[CanonicalBlock]]:
    """The primary block and canonical blocks of one bundle, validated; BundleError otherwise."""
    fields = _scan(data, eid_cache) if _scan is not None else None
    if fields is None:
        return walk_blocks(data, lenient)
    primary_fields, primary_bytes, spans = fields
    primary = PrimaryBlock(*primary_fields)
    try:
        if (primary.destination.__class__ is primary.source.__class__
                is primary.report_to.__class__ is EID):
            # The received encoding is deterministic, so it is ours: encode() reuses it.
            primary.remember_encoding(primary_fields, primary_bytes)
        else:
            _parse_eids(data, primary)  # some were not in the cache: spans to parse
        blocks = _blocks_from_spans(data, spans)
        _validate(primary, blocks, lenient)
    except IndexError:
        raise BundleError(TRUNCATED) from None
    return primary, blocks


def walk_blocks(data: bytes, lenient: bool) -> tuple[PrimaryBlock, list[CanonicalBlock]]:
    """The pure-Python decoder: any CBOR form RFC 9171 allows, and a precise error otherwise."""
    try:
        primary, blocks = _walk(data)
        _validate(primary, blocks, lenient)
    except IndexError:
        raise BundleError(f"{TRUNCATED} ({len(data)} bytes)") from None
    except RecursionError:
        raise BundleError(f"bundle nests too deeply: {cbor.NOT_CBOR}") from None
    return primary, blocks


def trusted_primary(data: bytes) -> PrimaryBlock | None:
    """The primary block of input that did not decode as a bundle, if that block alone is well
    formed, carries a CRC that checks and names a source that may be reported to; None
    otherwise. RFC 9171 §5.6 step 3 deletes such a bundle as "block unintelligible" by §5.10,
    whose deletion report goes to the report-to EID: only a primary block whose CRC checked
    gives one worth trusting (a BIB over it cannot be verified in a bundle that is broken)."""
    try:
        if data[:1] != b"\x9f":
            return None
        primary, _ = _decode_primary(data, 1)
    except (BundleError, IndexError, RecursionError):
        return None
    source = primary.source
    if not primary.crc_type or primary.flags & IS_ADMIN_RECORD or source.is_null:
        return None
    return primary if source.is_singleton else None


def _parse_eids(data: bytes, primary: PrimaryBlock) -> None:
    """Replace the EID spans the scanner returned with EIDs."""
    for field, what in (("destination", "destination EID"), ("source", "source node ID"),
                        ("report_to", "report-to EID")):
        value = getattr(primary, field)
        if value.__class__ is not EID:
            setattr(primary, field, eid_from_span(data, value, what))


_ZERO_COPY_MIN = 4096  # larger block data stays a view of the input until someone reads it


def _blocks_from_spans(data: bytes, spans: list[tuple]) -> list[CanonicalBlock]:
    blocks = []
    for block_type, number, flags, crc_type, start, end in spans:
        content = data[start:end] if end - start < _ZERO_COPY_MIN else memoryview(data)[start:end]
        blocks.append(CanonicalBlock(block_type, number, content, flags, crc_type))
    return blocks


def _walk(data: bytes) -> tuple[PrimaryBlock, list[CanonicalBlock]]:
    if data[0] != 0x9F:
        raise BundleError("a bundle must be a CBOR indefinite-length array (first byte 0x9f), "
                          f"found 0x{data[0]:02x} (RFC 9171 §4.1)")
    primary, pos = _decode_primary(data, 1)
    blocks = []
    while data[pos] != cbor.BREAK:
        block, pos = _decode_canonical(data, pos)
        blocks.append(block)
    if pos + 1 != len(data):
        raise BundleError(f"{len(data) - pos - 1} bytes after the end of the bundle "
                          "(RFC 9171 §4.1)")
    return primary, blocks


_PAYLOAD = int(BlockType.PAYLOAD)
_BUNDLE_AGE = int(BlockType.BUNDLE_AGE)
# Block types with at most one instance: (name, section that says so, data decoder).
_BLOCK_DECODERS = {int(BlockType.PREVIOUS_NODE): ("previous node", "4.4.1", decode_previous_node),
                   _BUNDLE_AGE: ("bundle age", "4.4.2", decode_bundle_age),
                   int(BlockType.HOP_COUNT): ("hop count", "4.4.3", decode_hop_count),
                   _PAYLOAD: ("payload", "4.1", None)}


def _validate(primary: PrimaryBlock, blocks: list[CanonicalBlock], lenient: bool) -> None:
    """The RFC 9171 rules that span blocks."""
    if not blocks:
        raise BundleError("a bundle needs at least a payload block after the primary block "
                          "(RFC 9171 §4.1)")
    last = blocks[-1]
    if last.block_type != _PAYLOAD:
        raise BundleError("the last block must be the payload block (RFC 9171 §4.1)")
    if last.number != 1:
        raise BundleError(f"the payload block must be block number 1, found {last.number} "
                          "(RFC 9171 §4.1)")
    has_age = len(blocks) > 1 and _validate_extension_blocks(blocks)
    if primary.creation_time == 0 and not has_age and not lenient:
        raise BundleError("creation time is 0 but there is no bundle age block (RFC 9171 §4.4.2)")
    if primary.crc_type == 0 and not lenient and not _bib_covers_primary(blocks):
        raise BundleError("primary block has no CRC and no BIB targets it (RFC 9171 §4.3.1)")
    source = primary.source
    if not source.is_singleton:
        raise BundleError(f"source node ID {source} is not a singleton endpoint "
                          "(RFC 9171 §4.2.5.1.1, §4.2.5.2)")
    flags = primary.flags
    if primary.total_adu_length is not None:
        _validate_fragment_extent(primary, len(last.data_view))
    if flags & IS_ADMIN_RECORD or source.is_null:
        _validate_unidentifiable(primary, blocks)
    if flags & IS_ADMIN_RECORD and record_type(last.data) == STATUS_REPORT:
        decode_status_report(last.data)


def _validate_fragment_extent(primary: PrimaryBlock, payload_length: int) -> None:
    """A fragment's payload lies inside the original ADU: fragment offset and total ADU length
    locate it there (RFC 9171 §4.3.1), and fragmentation keeps it there (§5.8)."""
    end = primary.fragment_offset + payload_length
    if end > primary.total_adu_length:
        raise BundleError(f"fragment offset {primary.fragment_offset} + payload length "
                          f"{payload_length} = {end} exceeds the total ADU length "
                          f"{primary.total_adu_length} (RFC 9171 §4.3.1, §5.8)")


def _validate_unidentifiable(primary: PrimaryBlock, blocks: list[CanonicalBlock]) -> None:
    """Administrative records and anonymous bundles ask for no status reports (RFC 9171 §4.2.3,
    §4.2.4), and an anonymous bundle must not be fragmented (§4.2.3): its fragments could not be
    told apart from another anonymous bundle's."""
    kind = "an administrative record" if primary.flags & IS_ADMIN_RECORD else "an anonymous bundle"
    if primary.flags & STATUS_REPORT_REQUESTS:
        raise BundleError(f"status reports must not be requested for {kind} (RFC 9171 §4.2.3)")
    if primary.source.is_null and not primary.flags & MUST_NOT_FRAGMENT:
        raise BundleError("an anonymous bundle (source dtn:none) must have the 'bundle must not "
                          "be fragmented' flag set (RFC 9171 §4.2.3)")
    for block in blocks:
        if block.flags & REPORT_IF_UNPROCESSABLE:
            raise BundleError(f"block {block.number} of {kind} has the 'transmit status report "
                              "if block can't be processed' flag set (RFC 9171 §4.2.4)")


def _validate_extension_blocks(blocks: list[CanonicalBlock]) -> bool:
    """Unique block numbers, single instances of the RFC 9171 extension blocks, and their data.
    Returns whether there is a bundle age block."""
    numbers = set()
    seen_types = set()
    for block in blocks:
        if block.number == 0 or block.number in numbers:
            raise BundleError(f"block number {block.number} is reserved for the primary block or "
                              "used twice (RFC 9171 §4.1)")
        numbers.add(block.number)
        known = _BLOCK_DECODERS.get(block.block_type)
        if known is not None:
            name, section, decode = known
            if block.block_type in seen_types:
                raise BundleError(f"more than one {name} block (RFC 9171 §{section})")
            seen_types.add(block.block_type)
            if decode is not None:
                try:
                    decode(block.data)
                except BundleError as error:
                    raise BundleError(f"block {block.number} ({name}): {error}; its data must be "
                                      "the block type's CBOR encoding (RFC 9171 §4.2.8)") from None
    return _BUNDLE_AGE in seen_types


def _bib_covers_primary(blocks: list[CanonicalBlock]) -> bool:
    return any(block.block_type == BlockType.BIB and 0 in security_targets(block.data)
               for block in blocks)
