"""ION 4.1.3's LTP sessions replayed through our engine, in both roles.

Receiver: ION's sender segments (engine 2, '2->3', those the relay forwarded) go to our engine 3
in order, at their `t`; our reports must carry the claims and bounds ION's receiver sent.
Sender: we send the same blocks (rebuilt from ION's data segments) and are fed ION's reports;
we must retransmit the byte ranges ION's sender did, and acknowledge the same reports.

Serial numbers are each engine's own choice (ION draws them at random), so a segment that
cites one (a report citing a checkpoint, a checkpoint or report-ack citing a report) is
rewritten to cite ours; nothing else is changed. Timers are not run: ION's timings (its
checkpoint went again after 3.7 s) are not ours to reproduce, and the capture shows what
every timer did.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from dtn.ltp.engine import BlockDelivered, BlockReceived, LtpEngine, SpanConfig
from dtn.ltp.segment import DataSegment, ReportAckSegment, ReportSegment, decode_segment

PEERS = Path(__file__).parent / "vectors" / "peers"
CAPTURES = ("ion_ltp_clean.json", "ion_ltp_loss.json")
SPAN = SpanConfig(owlt=1.0, segment_size=1024)  # the capture's span: 1024-byte segments, 1 s


def _capture(name: str) -> list[dict]:
    records = json.loads((PEERS / name).read_text())["segments"]
    for r in records:
        r["segment"] = decode_segment(bytes.fromhex(r["hex"]))
    return records


def _blocks(records: list[dict]) -> dict[int, bytes]:
    """Each session's red part, from every data segment ION sent (dropped ones included)."""
    parts: dict[int, dict[int, bytes]] = {}
    for r in records:
        s = r["segment"]
        if isinstance(s, DataSegment):
            parts.setdefault(s.session, {})[s.offset] = s.data
    blocks = {}
    for session, pieces in parts.items():
        block = bytearray(max(o + len(d) for o, d in pieces.items()))
        for offset, data in pieces.items():
            block[offset:offset + len(data)] = data
        blocks[session] = bytes(block)
    return blocks


def _ranges(segments: list[DataSegment]) -> list[tuple[int, int]]:
    """Merged [start, end) ranges the segments cover."""
    out: list[list[int]] = []
    for s in sorted(segments, key=lambda s: s.offset):
        if out and s.offset <= out[-1][1]:
            out[-1][1] = max(out[-1][1], s.end)
        else:
            out.append([s.offset, s.end])
    return [(a, b) for a, b in out]


@pytest.mark.parametrize("name", CAPTURES)
def test_our_receiver_reports_what_ions_receiver_reported(name):
    records = _capture(name)
    engine = LtpEngine(3)
    engine.add_span(2, SPAN)
    ours: list[ReportSegment] = []
    serial_of: dict[int, int] = {}  # ION's report serial -> ours, paired in order
    ion_reports = [r["segment"] for r in records if r["dir"] == "3->2"
                   and isinstance(r["segment"], ReportSegment)]
    for r in records:
        segment = r["segment"]
        if r["dir"] != "2->3" or r["dropped_by_relay"]:
            continue
        if isinstance(segment, ReportAckSegment) or (
                isinstance(segment, DataSegment) and segment.report_serial):
            segment = replace(segment, report_serial=serial_of[segment.report_serial])
        engine.receive_datagram(segment.encode(), r["t"])
        for _, wire in engine.datagrams_to_send(r["t"]):
            report = decode_segment(wire)
            assert isinstance(report, ReportSegment)
            serial_of[ion_reports[len(ours)].report_serial] = report.report_serial
            ours.append(report)

    def view(report: ReportSegment) -> tuple:
        return (report.session, report.checkpoint_serial, report.lower_bound,
                report.upper_bound, report.claims)

    assert [view(r) for r in ours] == [view(r) for r in ion_reports]
    assert engine.counters["dropped.unexpected_report_ack"] == 0
    blocks = _blocks(records)
    assert engine.events() == [BlockReceived(2, s, blocks[s]) for s in sorted(blocks)]
    assert engine.next_deadline() is None  # every report was acknowledged


@pytest.mark.parametrize("name", CAPTURES)
def test_our_sender_retransmits_what_ions_sender_did(name):
    records = _capture(name)
    blocks = _blocks(records)
    engine = LtpEngine(2)
    engine.add_span(3, SPAN)
    first_t = {}
    for r in records:
        first_t.setdefault(r["segment"].session, r["t"])
    session_of: dict[int, int] = {}  # ION's session -> ours
    checkpoints: dict[int, list[int]] = {}  # our session -> our checkpoint serials, in order
    sent: dict[int, list[DataSegment]] = {}  # our session -> segments answering reports
    acks: list[str] = []

    def drain(t: float, answering: bool) -> None:
        for _, wire in engine.datagrams_to_send(t):
            s = decode_segment(wire)
            if isinstance(s, ReportAckSegment):
                acks.append(wire.hex())
                continue
            assert isinstance(s, DataSegment)
            if s.checkpoint:
                checkpoints.setdefault(s.session, []).append(s.checkpoint_serial)
            if answering:
                sent.setdefault(s.session, []).append(s)

    for ion_session in sorted(blocks):
        t = first_t[ion_session]
        session_of[ion_session] = engine.send_block(3, blocks[ion_session], t)
        drain(t, answering=False)

    ion_checkpoints: dict[int, list[int]] = {}  # ION's checkpoint serials per session, in order
    ion_resent: dict[int, list[DataSegment]] = {}
    for r in records:
        s = r["segment"]
        if r["dir"] == "2->3" and isinstance(s, DataSegment):
            serials = ion_checkpoints.setdefault(s.session, [])
            if serials and not (s.checkpoint and s.checkpoint_serial in serials):
                ion_resent.setdefault(s.session, []).append(s)  # answers a report
            if s.checkpoint and s.checkpoint_serial not in serials:
                serials.append(s.checkpoint_serial)
        if r["dir"] != "3->2" or r["dropped_by_relay"]:
            continue
        assert isinstance(s, ReportSegment)
        ours = session_of[s.session]
        k = ion_checkpoints[s.session].index(s.checkpoint_serial)
        report = replace(s, session=ours, checkpoint_serial=checkpoints[ours][k])
        engine.receive_datagram(report.encode(), r["t"])
        drain(r["t"], answering=True)

    for ion_session, ours in session_of.items():
        resent = sent.get(ours, [])
        assert _ranges(resent) == _ranges(ion_resent.get(ion_session, []))
        if resent:  # the last of them is the checkpoint answering ION's report
            assert resent[-1].checkpoint and all(not s.checkpoint for s in resent[:-1])
            assert resent[-1].report_serial == ion_resent[ion_session][-1].report_serial
    ion_acks = [r["hex"] for r in records if r["dir"] == "2->3"
                and isinstance(r["segment"], ReportAckSegment)]
    assert acks == ion_acks  # byte for byte: same sessions, same report serials
    assert engine.events() == [BlockDelivered(3, s) for s in session_of.values()]
    assert engine.next_deadline() is None
