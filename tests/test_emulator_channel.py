"""The channel model on virtual time: statistics of errors and losses, timing, rate, contacts,
determinism."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.contacts import ContactSchedule, Passes
from dtn.emulator.biterrors import BitErrorProcess, BurstParams
from dtn.emulator.channel import LINK_DOWN, LOSS, QUEUE_FULL, ChannelDirection, DirectionParams

DATAGRAM = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes


def channel(seed: int = 7, **params) -> ChannelDirection:
    return ChannelDirection(DirectionParams(**params), np.random.SeedSequence(seed))


def flipped_bits(a: bytes, b: bytes) -> int:
    return int(
        np.unpackbits(np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))).sum()
    )


def binomial_bounds(trials: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    mean, sd = trials * p, math.sqrt(trials * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("ber", [1e-3, 1e-5])
def test_measured_ber_matches_configured(ber, seed):
    link = channel(seed, ber=ber)
    datagrams = 4000
    flips = 0
    for i in range(datagrams):
        [(_, received)] = link.submit(DATAGRAM, i * 0.01)
        flips += flipped_bits(DATAGRAM, received)
    low, high = binomial_bounds(datagrams * len(DATAGRAM) * 8, ber)
    assert low <= flips <= high
    assert link.stats.bits_flipped == flips


def test_gilbert_elliott_has_the_configured_mean_ber_and_comes_in_bursts():
    burst = BurstParams(ber_good=1e-6, ber_bad=0.02, mean_good_bits=200_000, mean_bad_bits=2_000)
    process = BitErrorProcess(np.random.default_rng(3), burst=burst)
    datagrams, bits = 20_000, len(DATAGRAM) * 8
    flips_per_datagram = [process.corrupt(DATAGRAM)[1] for _ in range(datagrams)]
    measured = sum(flips_per_datagram) / (datagrams * bits)
    assert measured == pytest.approx(burst.mean_ber, rel=0.2)
    # Independent errors at that BER would hit nearly every datagram; bursts hit few of them.
    independent_hit = 1 - (1 - burst.mean_ber) ** bits
    hit = sum(1 for n in flips_per_datagram if n) / datagrams
    assert independent_hit > 0.85 and hit < 0.3


def test_bit_flips_land_where_reported():
    process = BitErrorProcess(np.random.default_rng(1), ber=0.02)  # vectorised path too
    for _ in range(50):
        received, flips = process.corrupt(DATAGRAM)
        assert flipped_bits(DATAGRAM, received) == flips


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("loss", [0.01, 0.2])
def test_measured_loss_matches_configured(loss, seed):
    link = channel(seed, loss=loss)
    outcomes = [link.submit(DATAGRAM, i * 0.01) for i in range(20_000)]
    lost = sum(1 for outcome in outcomes if outcome is LOSS)
    low, high = binomial_bounds(len(outcomes), loss)
    assert low <= lost <= high
    assert link.stats.dropped["loss"] == lost


def test_fixed_delay_delivers_exactly_delay_later_and_in_order():
    link = channel(delay=1200.0)
    arrivals = [link.submit(DATAGRAM, now)[0][0] for now in (10.0, 10.5, 11.0)]
    assert arrivals == [1210.0, 1210.5, 1211.0]


def test_auto_delay_is_the_ephemeris_light_time_at_the_configured_date():
    conjunction_2021 = 1_633_651_200.0  # 2021-10-08T00:00Z, Earth-Mars ~2.63 AU
    epoch = 1_000_000.0
    link = channel(delay=None, ephemeris_offset=conjunction_2021 - epoch)
    [(arrival, _)] = link.submit(DATAGRAM, epoch)
    assert 21 * 60 < arrival - epoch < 22 * 60


def test_rate_limit_serializes_back_to_back_datagrams():
    rate = 256_000.0
    link = channel(rate=rate, queue_bytes=10**9)
    arrivals = [link.submit(DATAGRAM, 0.0)[0][0] for _ in range(100)]
    serialization = len(DATAGRAM) * 8 / rate
    assert arrivals[0] == pytest.approx(serialization)
    gaps = np.diff(arrivals)
    assert np.allclose(gaps, serialization)
    # Sent slower than the rate, they are not held up.
    assert link.submit(DATAGRAM, 1000.0)[0][0] == pytest.approx(1000.0 + serialization)


def test_queue_tail_drops_past_its_size_and_counts():
    link = channel(rate=8_000.0, queue_bytes=10 * len(DATAGRAM))
    outcomes = [link.submit(DATAGRAM, 0.0) for _ in range(15)]
    assert outcomes[10:] == [QUEUE_FULL] * 5
    assert all(isinstance(outcome, list) for outcome in outcomes[:10])
    assert link.stats.dropped["queue_full"] == 5
    assert link.queue_depth(0.0) == (10, 10 * len(DATAGRAM))
    assert link.queue_depth(len(DATAGRAM) * 8 / 8_000.0 * 3) == (7, 7 * len(DATAGRAM))


def test_contact_windows_gate_transmission():
    schedule = ContactSchedule(windows=((100.0, 200.0), (300.0, 400.0)))
    link = channel(delay=60.0, contacts=schedule)
    for now, up in (
        (50, False),
        (100, True),
        (199.9, True),
        (200, False),
        (350, True),
        (401, False),
    ):
        outcome = link.submit(DATAGRAM, float(now))
        assert (outcome is not LINK_DOWN) == up, now
    assert link.stats.dropped["link_down"] == 3


def test_passes_and_outage_combine():
    sol = 88_775.0
    schedule = ContactSchedule(
        passes=Passes(period=sol, duration=8 * 3600, first=0.0), outages=((5 * sol, 7 * sol),)
    )
    assert schedule.is_up(3600) and not schedule.is_up(9 * 3600)
    assert schedule.is_up(2 * sol + 3600)
    assert not schedule.is_up(5 * sol + 3600) and not schedule.is_up(6 * sol + 3600)
    assert schedule.is_up(7 * sol + 3600)


@settings(max_examples=300)
@given(
    windows=st.lists(
        st.tuples(st.floats(0, 1e5), st.floats(1, 1e4)).map(lambda w: (w[0], w[0] + w[1])),
        max_size=6,
    ),
    outages=st.lists(
        st.tuples(st.floats(0, 1e5), st.floats(1, 1e4)).map(lambda w: (w[0], w[0] + w[1])),
        max_size=3,
    ),
    period=st.floats(10, 1e4),
    duty=st.floats(0.05, 1.0),
    t=st.floats(-1e4, 2e5),
)
def test_schedule_state_holds_over_the_interval_it_reports(windows, outages, period, duty, t):
    passes = Passes(period, period * duty, 17.0)
    schedule = ContactSchedule(windows=tuple(windows), passes=passes, outages=tuple(outages))
    up, since, until = schedule.state_at(t)
    assert since <= t < until
    for x in (since, (since + t) / 2, (t + until) / 2):
        if math.isfinite(x) and since <= x < until:
            assert schedule.is_up(x) == up
    # Away from the boundaries, the state is what the definition says.
    phase = (t - passes.first) % period
    boundaries = [a for w in windows + outages for a in w] + [
        t - phase,
        t - phase + passes.duration,
    ]
    if all(abs(t - b) > 1e-6 * max(1.0, abs(t)) for b in boundaries):
        in_window = any(a <= t < b for a, b in windows)
        in_outage = any(a <= t < b for a, b in outages)
        assert up == ((in_window or phase < passes.duration) and not in_outage)


def test_one_seed_gives_one_pattern_and_another_seed_another():
    def pattern(seed):
        link = channel(seed, ber=1e-4, loss=0.05, duplicate=0.02, reorder=0.02)
        return [link.submit(DATAGRAM, i * 0.001) for i in range(3000)]

    assert pattern(11) == pattern(11)
    assert pattern(11) != pattern(12)


def test_duplicate_and_reorder():
    link = channel(delay=10.0, duplicate=0.1, reorder=0.1, reorder_delay=5.0)
    outcomes = [link.submit(bytes([i % 256]) * 10, float(i)) for i in range(2000)]
    assert sum(len(o) == 2 and o[0] == o[1] for o in outcomes) == link.stats.duplicated > 100
    arrivals = [o[0][0] for o in outcomes]
    held_back = [a - now - 10.0 for now, a in enumerate(arrivals)]
    assert set(held_back) == {0.0, 5.0}
    assert held_back.count(5.0) == link.stats.reordered > 100


def test_defaults_pass_datagrams_untouched_and_immediately():
    link = channel()
    assert link.submit(DATAGRAM, 5.0) == [(5.0, DATAGRAM)]
