"""Administrative records (RFC 9171 6.1): bundle status reports; other record types kept opaque."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from . import cbor
from .eid import EID, decode_eid
from .errors import BundleError

STATUS_REPORT = 1


class ReasonCode(IntEnum):
    """Bundle status report reason codes (RFC 9171 6.1.1)."""

    NO_INFORMATION = 0
    LIFETIME_EXPIRED = 1
    FORWARDED_OVER_UNIDIRECTIONAL_LINK = 2
    TRANSMISSION_CANCELED = 3
    DEPLETED_STORAGE = 4
    DESTINATION_EID_UNINTELLIGIBLE = 5
    NO_KNOWN_ROUTE = 6
    NO_TIMELY_CONTACT = 7
    BLOCK_UNINTELLIGIBLE = 8
    HOP_LIMIT_EXCEEDED = 9
    TRAFFIC_PARED = 10
    BLOCK_UNSUPPORTED = 11


# Order of the four status assertions in a report.
RECEIVED, FORWARDED, DELIVERED, DELETED = range(4)


@dataclass(slots=True)
class StatusReport:
    """One bundle status report. `assertions[i]` is None (not asserted), or the DTN time of the
    event (0 when no time was requested or known)."""

    source: EID
    creation_time: int
    sequence: int
    reason: int = ReasonCode.NO_INFORMATION
    assertions: tuple[int | None, int | None, int | None, int | None] = (None, None, None, None)
    fragment_offset: int | None = None
    fragment_length: int | None = None
    with_times: bool = True

    def encode(self) -> bytes:
        """The payload of an administrative-record bundle: [1, [status, reason, source, ts...]]."""
        items = []
        for at in self.assertions:
            if at is None:
                items.append(b"\x81\xf4")
            elif self.with_times:
                items.append(b"\x82\xf5" + cbor.uint(at))
            else:
                items.append(b"\x81\xf5")
        fragment = self.fragment_offset is not None
        parts = [b"\x82\x01", bytes((0x86 if fragment else 0x84,)), b"\x84", *items,
                 cbor.uint(self.reason), self.source.to_cbor(),
                 b"\x82" + cbor.uint(self.creation_time) + cbor.uint(self.sequence)]
        if fragment:
            parts.append(cbor.uint(self.fragment_offset) + cbor.uint(self.fragment_length))
        return b"".join(parts)


def record_type(payload: bytes) -> int:
    """The record type code of an administrative record (validates the outer [type, content])."""
    try:
        _count, pos = cbor.read_array_of(payload, 0, 2, "administrative record")
        code, _ = cbor.read_uint(payload, pos, "administrative record type")
    except IndexError:
        raise BundleError("administrative record is truncated") from None
    return code


def decode_status_report(payload: bytes) -> StatusReport:
    try:
        return _decode_status_report(payload)
    except IndexError:
        raise BundleError("status report is truncated") from None


def _decode_status_report(payload: bytes) -> StatusReport:
    count, pos = cbor.read_array_of(payload, 0, 2, "administrative record")
    code, pos = cbor.read_uint(payload, pos, "administrative record type")
    if code != STATUS_REPORT:
        raise BundleError(f"administrative record type {code} is not a status report")
    items, pos = cbor.read_array(payload, pos, "status report")
    if items not in (4, 6):
        raise BundleError(f"status report must have 4 or 6 items (RFC 9171 §6.1.1), found {items}")
    info_count, pos = cbor.read_array(payload, pos, "status information")
    if info_count != 4:
        raise BundleError(f"status information must have 4 items, found {info_count}")
    assertions: list[int | None] = []
    for _ in range(4):
        n, pos = cbor.read_array(payload, pos, "status assertion")
        if n not in (1, 2):
            raise BundleError(f"status assertion must have 1 or 2 items, found {n}")
        flag = payload[pos]
        if flag not in (0xF4, 0xF5):
            raise BundleError(f"status assertion must start with a boolean (byte {pos})")
        pos += 1
        at = 0
        if n == 2:
            if flag == 0xF4:
                raise BundleError("status time given for an assertion that is false")
            at, pos = cbor.read_uint(payload, pos, "status time")
        assertions.append(at if flag == 0xF5 else None)
    reason, pos = cbor.read_uint(payload, pos, "status report reason code")
    source, pos = decode_eid(payload, pos, "status report source")
    ts, pos = cbor.read_array_of(payload, pos, 2, "status report creation timestamp")
    created, pos = cbor.read_uint(payload, pos, "creation time")
    sequence, pos = cbor.read_uint(payload, pos, "sequence number")
    offset = length = None
    if items == 6:
        offset, pos = cbor.read_uint(payload, pos, "fragment offset")
        length, pos = cbor.read_uint(payload, pos, "fragment length")
    pos = cbor.close_array(payload, ts, pos, "status report creation timestamp")
    pos = cbor.close_array(payload, items, pos, "status report")
    pos = cbor.close_array(payload, count, pos, "administrative record")
    if pos != len(payload):
        raise BundleError(f"{len(payload) - pos} bytes after the status report")
    return StatusReport(source, created, sequence, reason, tuple(assertions), offset, length)
