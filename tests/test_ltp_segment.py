"""The LTP segment codec (RFC 5326 §3) against ION's captures, hostile bytes and roundtrips."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.cla.sdnv import encode_sdnv
from dtn.ltp.segment import (
    MAX_CLAIMS,
    CancelAckSegment,
    CancelSegment,
    DataSegment,
    Extension,
    LtpError,
    ReportAckSegment,
    ReportSegment,
    decode_segment,
)

PEERS = Path(__file__).parent / "vectors" / "peers"
CAPTURES = ("ion_ltp_clean.json", "ion_ltp_loss.json")


def _segments(name: str) -> list[dict]:
    return json.loads((PEERS / name).read_text())["segments"]


@pytest.mark.parametrize("name", CAPTURES)
def test_every_ion_segment_decodes_and_reencodes_identically(name):
    for record in _segments(name):
        wire = bytes.fromhex(record["hex"])
        assert decode_segment(wire).encode() == wire


def test_ion_fields_read_as_ion_meant_them():
    segments = {(r["dir"], r["index"]): decode_segment(bytes.fromhex(r["hex"]))
                for r in _segments("ion_ltp_loss.json")}
    gappy = segments["3->2", 1]  # the report naming the two lost data segments
    assert isinstance(gappy, ReportSegment)
    assert (gappy.lower_bound, gappy.upper_bound) == (0, 20159)
    assert gappy.claims == ((1015, 6087), (8117, 12042))
    checkpoint = segments["2->3", 29]  # ION's one-byte retransmission checkpoint
    assert isinstance(checkpoint, DataSegment)
    assert checkpoint.checkpoint and not checkpoint.eorp
    assert (checkpoint.offset, checkpoint.data, checkpoint.report_serial) == (8116, b"\0", 15922)
    last = segments["2->3", 24]
    assert isinstance(last, DataSegment) and last.eob and last.client_service == 1


def test_claim_offsets_are_relative_to_the_lower_bound():
    report = ReportSegment(2, 7, 1, 1, upper_bound=300, lower_bound=100, claims=((150, 50),))
    wire = report.encode()
    assert wire.endswith(bytes((1, 50, 50)))  # one claim: offset 150 - 100, length 50
    assert decode_segment(wire) == report


def test_extensions_are_kept_and_reencoded():
    segment = ReportAckSegment(2, 5, 9, header_extensions=(Extension(0x00, b"auth"),),
                               trailer_extensions=(Extension(0x7F, b""), Extension(1, b"x")))
    wire = segment.encode()
    assert wire[3] == 0x12
    assert decode_segment(wire) == segment


@pytest.mark.parametrize("wire,why", [
    (b"", "control byte"),
    (b"\x10\x02\x01\x00\x05", "version"),
    (b"\x05\x02\x01\x00", "undefined segment type"),
    (b"\x00\x02\x01\x00\x01\x00\x05abc", "data"),
    (b"\x00\x02\x01\x00\x01\x00\x00", "length 0"),
    (b"\x00" + b"\xff" * 11 + b"\x01", "SDNV"),
    (b"\x09\x02\x01\x00" + b"\x83" + b"\xff" * 9 + b"\x7f", r"2\*\*64"),
    (b"\x08\x02\x01\x00\x01\x01\x0a\x00\x01\x05\x06", "outside report bounds"),
    (b"\x08\x02\x01\x00\x01\x01\x05\x0a\x01\x00\x01", "lower bound"),
    (b"\x08\x02\x01\x00\x01\x01\x0a\x00\x81\x80\x80\x00", "claims"),
    (b"\x09\x02\x01\x00\x01\x00", "after the segment"),
    (b"\x09\x02\x01\x10\x01\x05ab", "header extension value"),
])
def test_malformed_segments_say_why(wire, why):
    with pytest.raises(LtpError, match=why):
        decode_segment(wire)


def test_claim_count_is_bounded_before_memory_is_spent():
    count = MAX_CLAIMS + 1
    body = b"\x01\x01" + encode_sdnv(count * 2) + b"\x00" + encode_sdnv(count)
    wire = b"\x08\x02\x01\x00" + body + b"\x00\x01" * count
    with pytest.raises(LtpError, match="reception claims"):
        decode_segment(wire)


@settings(max_examples=2000)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_ltp_error(wire):
    with contextlib.suppress(LtpError):
        decode_segment(wire)


@settings(max_examples=500)
@given(st.integers(0, 15), st.binary(max_size=40))
def test_arbitrary_bodies_of_every_type_raise_only_ltp_error(code, body):
    with contextlib.suppress(LtpError):
        decode_segment(bytes((code,)) + b"\x02\x01\x00" + body)


sdnv = st.integers(0, (1 << 64) - 1)
small = st.integers(0, 1 << 40)
extensions = st.lists(st.builds(Extension, st.integers(0, 255), st.binary(max_size=8)),
                      max_size=15).map(tuple)


@st.composite
def reports(draw):
    lower = draw(small)
    cuts = sorted(draw(st.lists(st.integers(0, 1 << 20), min_size=2, max_size=40, unique=True)))
    claims = tuple((lower + a, b - a) for a, b in zip(cuts[::2], cuts[1::2], strict=False)
                   if b > a)
    upper = lower + cuts[-1] + draw(st.integers(0, 100))
    return ReportSegment(draw(sdnv), draw(sdnv), draw(sdnv), draw(sdnv), upper, lower, claims,
                         draw(extensions), draw(extensions))


@st.composite
def data_segments(draw):
    code = draw(st.sampled_from([0, 1, 2, 3, 4, 7]))
    checkpoint = code in (1, 2, 3)
    return DataSegment(draw(sdnv), draw(sdnv), code, draw(sdnv), draw(small),
                       draw(st.binary(min_size=1, max_size=64)),
                       draw(sdnv) if checkpoint else 0, draw(sdnv) if checkpoint else 0,
                       draw(extensions), draw(extensions))


segments = st.one_of(
    data_segments(), reports(),
    st.builds(ReportAckSegment, sdnv, sdnv, sdnv, extensions, extensions),
    st.builds(CancelSegment, sdnv, sdnv, st.booleans(), st.integers(0, 255)),
    st.builds(CancelAckSegment, sdnv, sdnv, st.booleans()),
)


@settings(max_examples=1000)
@given(segments)
def test_generated_segments_roundtrip(segment):
    wire = segment.encode()
    assert decode_segment(wire) == segment
    assert decode_segment(wire).encode() == wire
