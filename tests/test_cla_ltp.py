"""The LTP convergence layer's core (LtpLink) on virtual time: bundles aggregated into blocks
and split again, ION's aggregated blocks read, outcomes for the agent (handed over once the
peer claims a block, sent again once it is cancelled), pacing, and ltp+rs under RS frames."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from dtn.bundle import Bundle
from dtn.cla.ltp_link import LtpLink, LtpLinkConfig
from dtn.cla.udp import UdpRsConfig, UdpRsLink
from dtn.ltp.segment import DataSegment, decode_segment

PEERS = Path(__file__).parent / "vectors" / "peers"
OWLT = 1200.0  # 20 minutes


def _pair(loss: float = 0.0, rs: bool = False, **options) -> tuple[LtpLink, LtpLink, dict]:
    def lower() -> UdpRsLink | None:
        return UdpRsLink(UdpRsConfig(frame_size=8192, depth=4, linger=0.05)) if rs else None

    earth = LtpLink(LtpLinkConfig(1, 2, owlt=OWLT, **options), lower())
    mars = LtpLink(LtpLinkConfig(2, 1, owlt=OWLT, **options), lower())
    return earth, mars, {"loss": loss, "random": random.Random(5), "sent": 0}


def _run(earth: LtpLink, mars: LtpLink, channel: dict, until: float) -> list[bytes]:
    """Move datagrams both ways with the light time, losing `loss` of them, until nothing is
    left to do or `until`; the bundles Mars received."""
    flight: list[tuple[float, LtpLink, bytes]] = []
    received, now = [], 0.0
    while now <= until:
        for link, peer in ((earth, mars), (mars, earth)):
            for datagram in link.datagrams_to_send(now):
                channel["sent"] += len(datagram)
                if channel["random"].random() >= channel["loss"]:
                    flight.append((now + OWLT, peer, datagram))
        due = [f for f in flight if f[0] <= now]
        flight = [f for f in flight if f[0] > now]
        for _, peer, datagram in due:
            got = peer.receive_datagrams([datagram], now)
            if peer is mars:
                received += got
        for link in (earth, mars):
            link.handle_timer(now)
        deadlines = [d for d in (earth.next_deadline(), mars.next_deadline()) if d is not None]
        deadlines += [f[0] for f in flight]
        later = [d for d in deadlines if d > now]
        if not later and not any(d <= now for d in deadlines):
            break
        now = min(later) if not any(d <= now for d in deadlines) else now + 1e-3
    return received


def _bundles(count: int, size: int) -> list[bytes]:
    return [Bundle.create("ipn:1.1", "ipn:2.1", os.urandom(size), creation_time=1,
                          sequence=i, lifetime=86_400_000).encode() for i in range(count)]


def test_bundles_arrive_once_through_a_lossy_20_minute_link_and_are_handed_over():
    earth, mars, channel = _pair(loss=0.05, aggregation_size=8192)
    bundles = _bundles(60, 1000) + _bundles(1, 200_000)
    for store_id, bundle in enumerate(bundles, start=1):
        earth.send(bundle, store_id, 0.0)
    got = _run(earth, mars, channel, until=6 * 3600)
    assert sorted(got) == sorted(bundles)
    handed, lost = earth.outcomes()
    assert sorted(handed) == list(range(1, len(bundles) + 1)) and lost == []
    assert earth.counters["blocks_out"] < len(bundles)  # aggregated: several a block
    assert earth.engine_counters["retransmitted_bytes"] > 0
    assert earth.queued_bytes == 0


def test_a_lone_bundle_goes_after_the_aggregation_time():
    earth, _, _ = _pair(aggregation_size=1 << 20, aggregation_time=2.0)
    earth.send(_bundles(1, 100)[0], 7, 10.0)
    assert earth.datagrams_to_send(10.0) == []
    assert earth.next_deadline() == 12.0
    assert earth.datagrams_to_send(12.0)
    assert earth.counters["blocks_out"] == 1


def test_a_block_the_peer_never_answers_is_cancelled_and_its_bundles_go_back():
    earth, _, _ = _pair(max_retransmissions=2, aggregation_time=0.0)
    earth.send(_bundles(1, 500)[0], 41, 0.0)
    now = 0.0
    for _ in range(50):  # nobody answers: checkpoints time out, then the session is cancelled
        earth.datagrams_to_send(now)
        deadline = earth.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        earth.handle_timer(now)
    assert earth.outcomes() == ([], [41])


def test_ions_aggregated_blocks_are_split_into_its_bundles():
    """The clean capture: ION's engine 2 sent bpdriver's bundles, several to a block."""
    records = json.loads((PEERS / "ion_ltp_clean.json").read_text())["segments"]
    mars = LtpLink(LtpLinkConfig(3, 2, owlt=1.0))
    got = []
    for record in records:
        if record["dir"] == "2->3":
            got += mars.receive_datagrams([bytes.fromhex(record["hex"])], record["t"])
    blocks = {}
    for record in records:
        segment = decode_segment(bytes.fromhex(record["hex"]))
        if isinstance(segment, DataSegment):
            blocks.setdefault(segment.session, 0)
            blocks[segment.session] = max(blocks[segment.session], segment.end)
    decoded = [Bundle.decode(b) for b in got]
    assert len(decoded) > len(blocks)  # more bundles than blocks: ION aggregated them
    assert sum(map(len, got)) == sum(blocks.values())
    assert {str(b.primary.destination) for b in decoded} == {"ipn:3.1"}
    assert mars.counters["block_malformed"] == 0


def test_a_block_that_is_not_bundles_is_counted_not_raised():
    mars = LtpLink(LtpLinkConfig(2, 1))
    good = _bundles(1, 50)[0]
    assert mars._split(good + b"\xff\x00garbage") == [good]
    assert mars.counters["block_malformed"] == 1


def test_pacing_keeps_to_the_rate():
    earth, _, _ = _pair(rate_bps=80_000.0, burst_bytes=4096, aggregation_time=0.0)
    earth.send(_bundles(1, 40_000)[0], 1, 0.0)
    first = earth.datagrams_to_send(0.0)
    assert 4096 <= sum(map(len, first)) <= 4096 + 1100  # the bucket, and one segment over
    assert earth.datagrams_to_send(0.0) == []
    assert 0.0 < earth.next_deadline() <= 0.12  # credit again within a segment's time
    later = sum(len(d) for step in range(1, 21) for d in earth.datagrams_to_send(step / 20))
    assert 9000 <= later <= 10_000 + 1100  # 1 s at 80 kbit/s: 10 kB


def test_ltp_inside_rs_frames_delivers_through_frame_loss():
    earth, mars, channel = _pair(loss=0.03, rs=True, aggregation_size=16384)
    bundles = _bundles(40, 2000)
    for store_id, bundle in enumerate(bundles, start=1):
        earth.send(bundle, store_id, 0.0)
    got = _run(earth, mars, channel, until=6 * 3600)
    assert sorted(got) == sorted(bundles)
    assert sorted(earth.outcomes()[0]) == list(range(1, 41))
