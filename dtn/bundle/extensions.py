"""Block-type-specific data of the RFC 9171 extension blocks: previous node, bundle age, hop count.

Each decoder takes the block data bytes, reads exactly one CBOR item and raises BundleError for
anything else, so the bundle decoder can validate known blocks strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cbor
from .eid import EID, decode_eid
from .errors import BundleError


@dataclass(frozen=True, slots=True)
class HopCount:
    limit: int
    count: int

    def encode(self) -> bytes:
        return b"\x82" + cbor.uint(self.limit) + cbor.uint(self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit


def _whole(data: bytes, end: int, what: str) -> None:
    if end != len(data):
        raise BundleError(f"{what}: {len(data) - end} bytes after the CBOR item")


def decode_previous_node(data: bytes) -> EID:
    """The forwarder's node ID (RFC 9171 §4.4.1): a singleton endpoint's EID (§4.2.5.2)."""
    try:
        eid, end = decode_eid(data, 0, "previous node block")
    except IndexError:
        raise BundleError("previous node block data is truncated (RFC 9171 §4.2.8, §4.4.1)"
                          ) from None
    _whole(data, end, "previous node block (RFC 9171 §4.2.8, §4.4.1)")
    if eid.is_null or not eid.is_singleton:
        raise BundleError(f"previous node {eid} is not a node ID (RFC 9171 §4.4.1, §4.2.5.2)")
    return eid


def decode_bundle_age(data: bytes) -> int:
    """Bundle age in ms (RFC 9171 §4.4.2)."""
    try:
        age, end = cbor.read_uint(data, 0, "bundle age (RFC 9171 §4.4.2)")
    except IndexError:
        raise BundleError("bundle age block data is truncated (RFC 9171 §4.2.8, §4.4.2)") from None
    _whole(data, end, "bundle age block (RFC 9171 §4.2.8, §4.4.2)")
    return age


def encode_bundle_age(age_ms: int) -> bytes:
    return cbor.uint(age_ms)


def decode_hop_count(data: bytes) -> HopCount:
    try:
        count, pos = cbor.read_array_of(data, 0, 2, "hop count data (RFC 9171 §4.4.3)")
        limit, pos = cbor.read_uint(data, pos, "hop limit (RFC 9171 §4.4.3)")
        hops, pos = cbor.read_uint(data, pos, "hop count (RFC 9171 §4.4.3)")
        pos = cbor.close_array(data, count, pos, "hop count data (RFC 9171 §4.4.3)")
    except IndexError:
        raise BundleError("hop count block data is truncated (RFC 9171 §4.2.8, §4.4.3)") from None
    _whole(data, pos, "hop count block (RFC 9171 §4.2.8, §4.4.3)")
    if not 1 <= limit <= 255:
        raise BundleError(f"hop limit must be 1..255 (RFC 9171 §4.4.3), got {limit}")
    return HopCount(limit, hops)


def security_targets(data: bytes) -> list[int]:
    """The security target block numbers of a BPSec block's data: the first item of the
    abstract security block, which is a CBOR sequence (RFC 9172 3.6)."""
    try:
        targets, pos = cbor.read_array(data, 0, "security targets")
        numbers = []
        while (data[pos] != cbor.BREAK if targets == cbor.INDEFINITE
               else len(numbers) < targets):
            number, pos = cbor.read_uint(data, pos, "security target")
            numbers.append(number)
    except IndexError:
        raise BundleError("security block data is truncated") from None
    return numbers
