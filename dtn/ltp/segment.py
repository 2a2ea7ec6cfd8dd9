"""LTP segments (RFC 5326 §3): frozen dataclasses, `encode()`, and `decode_segment`.

Every segment starts with a header (§3.1): one control byte (version 0 in the high nibble,
segment type flags in the low one), the session ID (originator engine ID and session number,
both SDNVs), one byte of header and trailer extension counts (a nibble each), then the header
extensions (tag byte, SDNV length, value). The content depends on the type (§3.2), and the
trailer extensions (same format) close the segment.

Report claims are kept here as absolute (offset, length) pairs, although on the wire a claim's
offset is relative to the report's lower bound (§3.2.2; ION does the same, libltpP.c).

`decode_segment` trusts nothing: a peer's datagram that is truncated, has bytes left over, a
field beyond the datagram, an SDNV over 10 bytes or 2**64, a report whose claims leave its
bounds, or more than MAX_CLAIMS claims raises `LtpError` with the reason, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtn.cla.sdnv import SdnvError, decode_sdnv, encode_sdnv

MAX_CLAIMS = 10_000

# Segment type codes (§3.1.3).
RED_DATA = 0
RED_CHECKPOINT = 1
RED_CHECKPOINT_EORP = 2
RED_CHECKPOINT_EORP_EOB = 3
GREEN_DATA = 4
GREEN_EOB = 7
REPORT = 8
REPORT_ACK = 9
CANCEL_FROM_SENDER = 12
CANCEL_ACK_TO_SENDER = 13
CANCEL_FROM_RECEIVER = 14
CANCEL_ACK_TO_RECEIVER = 15

DATA_TYPES = frozenset({0, 1, 2, 3, 4, 7})
CHECKPOINT_TYPES = frozenset({1, 2, 3})

# Cancel reason codes (§3.2.4).
USR_CNCLD = 0
UNREACH = 1
RLEXC = 2
MISCOLORED = 3
SYS_CNCLD = 4
RXMTCYCEXC = 5
REASON_NAMES = {0: "USR_CNCLD", 1: "UNREACH", 2: "RLEXC", 3: "MISCOLORED", 4: "SYS_CNCLD",
                5: "RXMTCYCEXC"}

TYPE_NAMES = {0: "data_red", 1: "data_red_checkpoint", 2: "data_red_eorp", 3: "data_red_eob",
              4: "data_green", 7: "data_green_eob", 8: "report", 9: "report_ack",
              12: "cancel_from_sender", 13: "cancel_ack_to_sender",
              14: "cancel_from_receiver", 15: "cancel_ack_to_receiver"}


class LtpError(ValueError):
    """A datagram that is not a well-formed LTP segment."""


@dataclass(frozen=True)
class Extension:
    """A header or trailer extension (§3.1.5): kept whole so it re-encodes as received."""

    tag: int
    value: bytes


Extensions = tuple[Extension, ...]


@dataclass(frozen=True)
class DataSegment:
    """Types 0-3 (red) and 4, 7 (green). Checkpoints (1-3) carry the two serial numbers."""

    engine_id: int
    session: int
    segment_type: int
    client_service: int
    offset: int
    data: bytes
    checkpoint_serial: int = 0
    report_serial: int = 0
    header_extensions: Extensions = ()
    trailer_extensions: Extensions = ()

    @property
    def red(self) -> bool:
        return self.segment_type < GREEN_DATA

    @property
    def checkpoint(self) -> bool:
        return self.segment_type in CHECKPOINT_TYPES

    @property
    def eorp(self) -> bool:
        return self.segment_type in (RED_CHECKPOINT_EORP, RED_CHECKPOINT_EORP_EOB)

    @property
    def eob(self) -> bool:
        return self.segment_type in (RED_CHECKPOINT_EORP_EOB, GREEN_EOB)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    def _content(self) -> bytes:
        out = encode_sdnv(self.client_service) + encode_sdnv(self.offset)
        out += encode_sdnv(len(self.data))
        if self.checkpoint:
            out += encode_sdnv(self.checkpoint_serial) + encode_sdnv(self.report_serial)
        return out + self.data

    def encode(self) -> bytes:
        return _frame(self, self.segment_type, self._content())


@dataclass(frozen=True)
class ReportSegment:
    """Type 8. `claims` are absolute (offset, length) pairs within [lower_bound, upper_bound)."""

    engine_id: int
    session: int
    report_serial: int
    checkpoint_serial: int
    upper_bound: int
    lower_bound: int
    claims: tuple[tuple[int, int], ...]
    header_extensions: Extensions = ()
    trailer_extensions: Extensions = ()

    def encode(self) -> bytes:
        out = b"".join(encode_sdnv(n) for n in (
            self.report_serial, self.checkpoint_serial, self.upper_bound, self.lower_bound,
            len(self.claims)))
        for offset, length in self.claims:
            out += encode_sdnv(offset - self.lower_bound) + encode_sdnv(length)
        return _frame(self, REPORT, out)


@dataclass(frozen=True)
class ReportAckSegment:
    """Type 9."""

    engine_id: int
    session: int
    report_serial: int
    header_extensions: Extensions = ()
    trailer_extensions: Extensions = ()

    def encode(self) -> bytes:
        return _frame(self, REPORT_ACK, encode_sdnv(self.report_serial))


@dataclass(frozen=True)
class CancelSegment:
    """Types 12 (from the block sender) and 14 (from the block receiver)."""

    engine_id: int
    session: int
    from_sender: bool
    reason: int
    header_extensions: Extensions = ()
    trailer_extensions: Extensions = ()

    def encode(self) -> bytes:
        code = CANCEL_FROM_SENDER if self.from_sender else CANCEL_FROM_RECEIVER
        return _frame(self, code, bytes((self.reason,)))


@dataclass(frozen=True)
class CancelAckSegment:
    """Types 13 (to the block sender) and 15 (to the block receiver)."""

    engine_id: int
    session: int
    to_sender: bool
    header_extensions: Extensions = ()
    trailer_extensions: Extensions = ()

    def encode(self) -> bytes:
        code = CANCEL_ACK_TO_SENDER if self.to_sender else CANCEL_ACK_TO_RECEIVER
        return _frame(self, code, b"")


Segment = DataSegment | ReportSegment | ReportAckSegment | CancelSegment | CancelAckSegment


def segment_type(segment: Segment) -> int:
    """The type code `segment` is sent with."""
    if isinstance(segment, DataSegment):
        return segment.segment_type
    if isinstance(segment, ReportSegment):
        return REPORT
    if isinstance(segment, ReportAckSegment):
        return REPORT_ACK
    if isinstance(segment, CancelSegment):
        return CANCEL_FROM_SENDER if segment.from_sender else CANCEL_FROM_RECEIVER
    return CANCEL_ACK_TO_SENDER if segment.to_sender else CANCEL_ACK_TO_RECEIVER


def _extensions(extensions: Extensions) -> bytes:
    return b"".join(bytes((e.tag,)) + encode_sdnv(len(e.value)) + e.value for e in extensions)


def _frame(segment: Segment, code: int, content: bytes) -> bytes:
    header, trailer = segment.header_extensions, segment.trailer_extensions
    if len(header) > 15 or len(trailer) > 15:
        raise LtpError("more than 15 header or trailer extensions")
    return b"".join((
        bytes((code,)), encode_sdnv(segment.engine_id), encode_sdnv(segment.session),
        bytes((len(header) << 4 | len(trailer),)), _extensions(header), content,
        _extensions(trailer)))


class _Reader:
    """A cursor over one datagram; every read checks what is left."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def sdnv(self, what: str) -> int:
        try:
            got = decode_sdnv(self.buf, self.pos)
        except SdnvError as exc:
            raise LtpError(f"{what}: {exc}") from None
        if got is None:
            raise LtpError(f"truncated in {what}")
        value, self.pos = got
        return value

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.buf) - self.pos:
            raise LtpError(f"{what}: {n} bytes but {len(self.buf) - self.pos} left")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def extensions(self, count: int, where: str) -> Extensions:
        out = []
        for _ in range(count):
            tag = self.byte(f"{where} extension tag")
            length = self.sdnv(f"{where} extension length")
            out.append(Extension(tag, self.take(length, f"{where} extension value")))
        return tuple(out)


def decode_segment(datagram: bytes) -> Segment:
    """The one segment in `datagram`; LtpError for anything malformed."""
    r = _Reader(bytes(datagram))
    control = r.byte("control byte")
    if control >> 4:
        raise LtpError(f"LTP version {control >> 4}, only 0 is known")
    code = control & 0x0F
    if code not in TYPE_NAMES:
        raise LtpError(f"undefined segment type {code}")
    engine_id = r.sdnv("originator engine ID")
    session = r.sdnv("session number")
    counts = r.byte("extension counts")
    header = r.extensions(counts >> 4, "header")
    if code in DATA_TYPES:
        service = r.sdnv("client service ID")
        offset = r.sdnv("offset")
        length = r.sdnv("length")
        if length == 0:
            raise LtpError("data segment of length 0")
        ckpt = rpt = 0
        if code in CHECKPOINT_TYPES:
            ckpt = r.sdnv("checkpoint serial number")
            rpt = r.sdnv("report serial number")
        data = r.take(length, "data")
        if offset + length > 1 << 64:
            raise LtpError("data segment ends beyond 2**64")
        parts: tuple = (code, service, offset, data, ckpt, rpt)
    elif code == REPORT:
        rpt = r.sdnv("report serial number")
        ckpt = r.sdnv("checkpoint serial number")
        upper = r.sdnv("upper bound")
        lower = r.sdnv("lower bound")
        if lower > upper:
            raise LtpError(f"report lower bound {lower} above upper bound {upper}")
        count = r.sdnv("claim count")
        # each claim takes at least two bytes: refuse a count the datagram cannot hold
        if count > MAX_CLAIMS or 2 * count > len(r.buf) - r.pos:
            raise LtpError(f"report claims {count} reception claims")
        claims = []
        for _ in range(count):
            rel = r.sdnv("claim offset")
            length = r.sdnv("claim length")
            if length == 0 or lower + rel + length > upper:
                raise LtpError(f"claim ({rel}, {length}) outside report bounds"
                               f" [{lower}, {upper})")
            claims.append((lower + rel, length))
        parts = (rpt, ckpt, upper, lower, tuple(claims))
    elif code == REPORT_ACK:
        parts = (r.sdnv("report serial number"),)
    elif code in (CANCEL_FROM_SENDER, CANCEL_FROM_RECEIVER):
        parts = (code == CANCEL_FROM_SENDER, r.byte("cancel reason"))
    else:
        parts = (code == CANCEL_ACK_TO_SENDER,)
    trailer = r.extensions(counts & 0x0F, "trailer")
    if r.pos != len(r.buf):
        raise LtpError(f"{len(r.buf) - r.pos} bytes after the segment")
    cls = {REPORT: ReportSegment, REPORT_ACK: ReportAckSegment,
           CANCEL_FROM_SENDER: CancelSegment, CANCEL_FROM_RECEIVER: CancelSegment,
           CANCEL_ACK_TO_SENDER: CancelAckSegment,
           CANCEL_ACK_TO_RECEIVER: CancelAckSegment}.get(code, DataSegment)
    return cls(engine_id, session, *parts, header_extensions=header, trailer_extensions=trailer)
