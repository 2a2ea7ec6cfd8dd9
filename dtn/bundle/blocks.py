"""The BPv7 block model (RFC 9171 4.3) and its deterministic encoding."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

from . import cbor
from .crc import crc16_x25, crc32c_of
from .eid import EID


class CRCType(IntEnum):
    NONE = 0
    CRC16 = 1  # CRC-16/X.25
    CRC32C = 2


class BundleFlags(IntFlag):
    """Bundle processing control flags (RFC 9171 4.2.3)."""

    IS_FRAGMENT = 0x000001
    ADMIN_RECORD = 0x000002
    MUST_NOT_FRAGMENT = 0x000004
    ACK_REQUESTED = 0x000020
    STATUS_TIME_REQUESTED = 0x000040
    REPORT_RECEPTION = 0x004000
    REPORT_FORWARDING = 0x010000
    REPORT_DELIVERY = 0x020000
    REPORT_DELETION = 0x040000


# Plain ints for hot paths: IntFlag arithmetic runs in Python and costs ~1 us an operation.
IS_FRAGMENT = int(BundleFlags.IS_FRAGMENT)
IS_ADMIN_RECORD = int(BundleFlags.ADMIN_RECORD)
MUST_NOT_FRAGMENT = int(BundleFlags.MUST_NOT_FRAGMENT)
STATUS_REPORT_REQUESTS = int(BundleFlags.REPORT_RECEPTION | BundleFlags.REPORT_FORWARDING
                          | BundleFlags.REPORT_DELIVERY | BundleFlags.REPORT_DELETION)


class BlockFlags(IntFlag):
    """Block processing control flags (RFC 9171 4.2.4)."""

    REPLICATE_IN_FRAGMENTS = 0x01
    REPORT_IF_UNPROCESSABLE = 0x02
    DELETE_BUNDLE_IF_UNPROCESSABLE = 0x04
    DISCARD_IF_UNPROCESSABLE = 0x10


REPORT_IF_UNPROCESSABLE = int(BlockFlags.REPORT_IF_UNPROCESSABLE)


class BlockType(IntEnum):
    PAYLOAD = 1
    PREVIOUS_NODE = 6
    BUNDLE_AGE = 7
    HOP_COUNT = 10
    BIB = 11  # RFC 9172 block integrity block
    BCB = 12  # RFC 9172 block confidentiality block


_CRC_PLACEHOLDER = {CRCType.CRC16: b"\x42\x00\x00", CRCType.CRC32C: b"\x44\x00\x00\x00\x00"}


def crc_value(crc_type: int, pieces: list | tuple) -> bytes:
    """The CRC field value (big-endian) over pieces that end with the zeroed CRC field."""
    if crc_type == CRCType.CRC32C:
        return _PACK32(crc32c_of(pieces))
    return _PACK16(crc16_x25(pieces))


_PACK32 = struct.Struct(">I").pack
_PACK16 = struct.Struct(">H").pack


def crc_field(crc_type: int, pieces: list | tuple) -> bytes:
    """The encoded CRC field (a byte string) of a block whose other encoded pieces are `pieces`:
    RFC 9171 4.2.1 computes it over the block with the field's value zeroed."""
    placeholder = _CRC_PLACEHOLDER[crc_type]
    return placeholder[:1] + crc_value(crc_type, (*pieces, placeholder))


@dataclass(slots=True)
class PrimaryBlock:
    destination: EID
    source: EID
    report_to: EID
    creation_time: int  # DTN time, ms since 2000-01-01; 0 when the source has no clock
    sequence: int
    lifetime: int  # ms
    flags: int = 0
    crc_type: int = CRCType.CRC32C
    fragment_offset: int | None = None
    total_adu_length: int | None = None
    version: int = 7
    _encoded: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags & IS_FRAGMENT)

    def remember_encoding(self, state: tuple, encoded: bytes, canonical: bytes = b"") -> None:
        """Keep `encoded` as the encoding of the fields in `state`: every field the encoding
        depends on, in field order (the scanner's order too). `canonical` is the deterministic
        encoding when `encoded` is not it (a block received in another CBOR form)."""
        self._encoded = (state, encoded, canonical or encoded)

    def encode(self) -> bytes:
        """The deterministic encoding with its CRC. It is kept with the fields it was made from
        (BPSec needs it for every bundle it protects or opens, the wire once more) and made
        again when any of them has changed."""
        # The state remember_encoding takes, built inline: this runs several times a bundle.
        state = (self.destination, self.source, self.report_to, self.creation_time, self.sequence,
                 self.lifetime, self.flags, self.crc_type, self.fragment_offset,
                 self.total_adu_length)
        memo = self._encoded
        if memo is not None and memo[0] == state:
            return memo[1]
        encoded = (_encode_primary or _encode_primary_python)(
            self.flags, self.crc_type, self.destination._cbor, self.source._cbor,
            self.report_to._cbor, self.creation_time, self.sequence, self.lifetime,
            self.fragment_offset, self.total_adu_length)
        self._encoded = (state, encoded, encoded)
        return encoded

    def canonical_encoding(self) -> bytes:
        """The deterministic encoding with its CRC (the canonical form BPSec covers, RFC 9172
        §4), also when encode() gives back received bytes in another CBOR form."""
        self.encode()  # made again if a field has changed
        return self._encoded[2]


def _encode_primary_python(flags: int, crc_type: int, destination: bytes, source: bytes,
                           report_to: bytes, creation_time: int, sequence: int, lifetime: int,
                           fragment_offset: int | None, total_adu_length: int | None) -> bytes:
    """What the C `encode_primary` computes, for machines without the extension."""
    uint = cbor.uint
    fragment = flags & IS_FRAGMENT
    count = 8 + (2 if fragment else 0) + (1 if crc_type else 0)
    encoded = b"".join((
        _PRIMARY_HEADS[count], uint(flags), uint(crc_type), destination, source, report_to,
        b"\x82", uint(creation_time), uint(sequence), uint(lifetime),
        uint(fragment_offset) + uint(total_adu_length) if fragment else b""))
    if crc_type:
        encoded += crc_field(crc_type, (encoded,))
    return encoded


try:
    from ._scan import encode_primary as _encode_primary
except ImportError:  # no compiler at install time
    _encode_primary = None


_PRIMARY_HEADS = {count: bytes((0x80 | count, 0x07)) for count in (8, 9, 10, 11)}


class CanonicalBlock:
    """A canonical block (RFC 9171 4.3.2).

    A decoder may hand in a large block's data as a read-only memoryview of the received bundle,
    so decoding does not copy the payload; `data` turns it into bytes on first read."""

    __slots__ = ("block_type", "number", "flags", "crc_type", "_data")

    def __init__(self, block_type: int, number: int, data: bytes | memoryview, flags: int = 0,
                 crc_type: int = CRCType.NONE) -> None:
        self.block_type = block_type
        self.number = number
        self._data = data
        self.flags = flags
        self.crc_type = crc_type

    @property
    def data(self) -> bytes:
        data = self._data
        if data.__class__ is not bytes:
            data = self._data = bytes(data)
        return data

    @data.setter
    def data(self, value: bytes) -> None:
        self._data = value

    @property
    def data_view(self) -> bytes | memoryview:
        """The data as held, without a copy: bytes, or a read-only view of the received bundle.
        For readers that only pass it on (a MAC, a cipher, a socket)."""
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CanonicalBlock):
            return NotImplemented
        return (self.block_type, self.number, self.flags, self.crc_type, self._data) == (
            other.block_type, other.number, other.flags, other.crc_type, other._data)

    __hash__ = None

    def __repr__(self) -> str:
        return (f"CanonicalBlock(type={self.block_type}, number={self.number}, "
                f"flags={self.flags:#x}, crc_type={self.crc_type}, {len(self._data)} B)")

    def encode_parts(self, parts: list) -> None:
        """Append this block's encoding to `parts` (joined once by the bundle encoder, so a large
        payload is copied once)."""
        data = self._data
        start = len(parts)
        parts.append(bytes((0x86 if self.crc_type else 0x85,)) + cbor.uint(self.block_type)
                     + cbor.uint(self.number) + cbor.uint(self.flags) + cbor.uint(self.crc_type)
                     + cbor.head(cbor.BYTES, len(data)))
        parts.append(data)
        if self.crc_type:
            parts.append(crc_field(self.crc_type, parts[start:]))

    def encode(self) -> bytes:
        parts: list = []
        self.encode_parts(parts)
        return b"".join(parts)
