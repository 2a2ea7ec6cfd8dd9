"""Earth–Mars light time against published distances, and the shipped conjunction outage."""

import datetime as dt
from pathlib import Path

import pytest

from dtn.emulator.config import load_config
from dtn.ephemeris import (
    EphemerisLightTime,
    earth_mars_distance_au,
    earth_mars_light_time,
    sun_earth_mars_angle,
)

CONFIGS = Path(__file__).parent.parent / "configs"


def unix(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("when", "published_au"),
    [
        ("2003-08-27T09:51", 0.37272),  # closest approach in 60,000 years (NASA)
        ("2018-07-31T07:50", 0.38496),  # 57.6 million km
        ("2020-10-06T14:18", 0.41492),  # 62.07 million km
        ("2021-10-08T00:00", 2.62),  # solar conjunction
    ],
)
def test_distance_matches_published_values(when, published_au):
    assert earth_mars_distance_au(unix(when)) == pytest.approx(published_au, rel=0.02)


def test_light_time_spans_three_to_twenty_two_minutes():
    assert earth_mars_light_time(unix("2003-08-27T09:51")) == pytest.approx(186, abs=3)
    assert 21 * 60 < earth_mars_light_time(unix("2021-10-08T00:00")) < 22 * 60
    samples = [earth_mars_light_time(unix("2020-01-01") + day * 86_400) for day in range(0, 800, 5)]
    assert 3 * 60 < min(samples) < 4 * 60 and 21 * 60 < max(samples) < 22.5 * 60


def test_interpolated_light_time_tracks_the_exact_one():
    light_time = EphemerisLightTime(offset=unix("2020-10-06") - 1_000_000.0)
    for elapsed in (0.0, 299.0, 601.5, 86_400.0, 30 * 86_400.0):
        exact = earth_mars_light_time(unix("2020-10-06") + elapsed)
        assert light_time.at(1_000_000.0 + elapsed) == pytest.approx(exact, abs=1e-3)


def test_sun_earth_mars_angle_is_small_at_conjunction_and_large_at_opposition():
    assert sun_earth_mars_angle(unix("2023-11-18")) < 1.0
    assert sun_earth_mars_angle(unix("2020-10-13")) > 170.0


def test_shipped_conjunction_outage_covers_the_sun_within_two_degrees():
    config = load_config(CONFIGS / "earth-mars.toml")
    [(start, end)] = config.links[0].a_to_b.contacts.outages
    assert sun_earth_mars_angle(unix("2026-01-09")) < 1.0
    assert start < unix("2026-01-09") < end
    assert sun_earth_mars_angle(start + 86_400) < 2.0 < sun_earth_mars_angle(start - 86_400)
    assert sun_earth_mars_angle(end - 86_400) < 2.0 < sun_earth_mars_angle(end + 86_400)
