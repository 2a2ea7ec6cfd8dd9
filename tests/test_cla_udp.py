"""The udp-rs link core on virtual time: pacing, and bundles through it both ways."""

from __future__ import annotations

import os

import pytest

from dtn.cla.udp import UdpRsConfig, UdpRsLink, pacing_burst

RATE = 267e6  # bit/s


def _sent_in_one_second(config: UdpRsConfig, turn: float) -> int:
    """Datagram bytes a link with plenty queued sends in 1 s when its shell can call it only
    every `turn` seconds (its event loop busy in between)."""
    link = UdpRsLink(config, first_id=1)
    for _ in range(64):
        link.send(os.urandom(1 << 20), 0.0)
    sent, now = 0, 0.0
    while now < 1.0:
        sent += sum(map(len, link.datagrams_to_send(now)))
        now += turn
    return sent


def test_a_busy_shell_keeps_the_link_at_its_rate():
    deep = UdpRsConfig(rate_bps=RATE, burst_bytes=pacing_burst(RATE))
    shallow = UdpRsConfig(rate_bps=RATE)  # 256 KiB: 7.8 ms of this rate
    assert _sent_in_one_second(deep, turn=0.03) >= 0.95 * RATE / 8
    # the loss the deeper bucket is there for
    assert _sent_in_one_second(shallow, turn=0.03) < 0.4 * RATE / 8


def test_pacing_never_sends_above_the_rate():
    config = UdpRsConfig(rate_bps=RATE, burst_bytes=pacing_burst(RATE))
    sent = _sent_in_one_second(config, turn=0.001)
    assert sent <= RATE / 8 + config.burst_bytes + config.frame_size


@pytest.mark.parametrize(
    ("rate", "scale", "depth"),
    [
        (6e6, 1, 256 << 10),
        (100e6, 1, 500_000),
        (RATE, 1, 1 << 20),
        (2e6, 1000, 1 << 20),
        (None, 1, 256 << 10),
    ],
)
def test_the_bucket_holds_40_ms_of_wall_clock_sending_within_its_bounds(rate, scale, depth):
    assert pacing_burst(rate, scale) == depth


def test_bundles_cross_a_paced_link_whole_and_in_order():
    config = UdpRsConfig(rate_bps=RATE, burst_bytes=pacing_burst(RATE), linger=0.0)
    sender, receiver = UdpRsLink(config, first_id=5), UdpRsLink(config)
    bundles = [os.urandom(size) for size in (1, 1024, 100_000, 3_000_000, 7)]
    for bundle in bundles:
        sender.send(bundle, 0.0)
    got, now = [], 0.0
    while len(got) < len(bundles) and now < 1.0:
        got += receiver.receive_datagrams(sender.datagrams_to_send(now), now)
        now += 0.001
    assert got == bundles
