"""Earth–Mars distance and light time from JPL's approximate Keplerian elements.

Source: E. M. Standish, "Keplerian Elements for Approximate Positions of the Major Planets"
(JPL Solar System Dynamics), Table 1: elements and their rates per Julian century, mean ecliptic
and equinox of J2000, valid 1800–2050. Earth is the Earth–Moon barycentre (≤ 5,000 km off, i.e.
≤ 17 ms of light time). JPL gives the resulting position errors as ≤ 25,000 km for Mars, a tenth
of a second of light time: plenty for a link emulator.

Pure functions of a Unix time (UTC is taken for TDB; the ~69 s difference moves the planets by
less than 2,000 km).
"""

from __future__ import annotations

import math

AU_KM = 149_597_870.7
LIGHT_KM_S = 299_792.458
J2000_UNIX = 946_728_000.0  # 2000-01-01T12:00:00 (JD 2451545.0)
_SECONDS_PER_CENTURY = 36_525 * 86_400.0

# (a AU, e, I deg, L deg, longitude of perihelion deg, longitude of ascending node deg),
# then the rate of each per Julian century.
_EARTH_MOON_BARYCENTRE = (
    (1.00000261, 0.01671123, -0.00001531, 100.46457166, 102.93768193, 0.0),
    (0.00000562, -0.00004392, -0.01294668, 35999.37244981, 0.32327364, 0.0),
)
_MARS = (
    (1.52371034, 0.09339410, 1.84969142, -4.55343205, -23.94362959, 49.55953891),
    (0.00001847, 0.00007882, -0.00813131, 19140.30268499, 0.44441088, -0.29257343),
)

Vector = tuple[float, float, float]


def _solve_kepler(mean_anomaly: float, eccentricity: float) -> float:
    """Eccentric anomaly E with E - e sin E = M (radians), by Newton's method."""
    anomaly = mean_anomaly + eccentricity * math.sin(mean_anomaly)
    for _ in range(30):
        step = (anomaly - eccentricity * math.sin(anomaly) - mean_anomaly) / (
            1.0 - eccentricity * math.cos(anomaly)
        )
        anomaly -= step
        if abs(step) < 1e-13:
            break
    return anomaly


def _heliocentric(
    elements: tuple[tuple[float, ...], tuple[float, ...]], unix_time: float
) -> Vector:
    """Heliocentric ecliptic (J2000) position in AU."""
    centuries = (unix_time - J2000_UNIX) / _SECONDS_PER_CENTURY
    base, rates = elements
    a, e, inclination, mean_longitude, perihelion, node = (
        value + rate * centuries for value, rate in zip(base, rates, strict=True)
    )
    mean_anomaly = math.radians((mean_longitude - perihelion + 180.0) % 360.0 - 180.0)
    argument_of_perihelion = math.radians(perihelion - node)
    inclination, node = math.radians(inclination), math.radians(node)

    eccentric_anomaly = _solve_kepler(mean_anomaly, e)
    x_orbit = a * (math.cos(eccentric_anomaly) - e)
    y_orbit = a * math.sqrt(1.0 - e * e) * math.sin(eccentric_anomaly)

    cos_w, sin_w = math.cos(argument_of_perihelion), math.sin(argument_of_perihelion)
    cos_n, sin_n = math.cos(node), math.sin(node)
    cos_i, sin_i = math.cos(inclination), math.sin(inclination)
    return (
        (cos_w * cos_n - sin_w * sin_n * cos_i) * x_orbit
        + (-sin_w * cos_n - cos_w * sin_n * cos_i) * y_orbit,
        (cos_w * sin_n + sin_w * cos_n * cos_i) * x_orbit
        + (-sin_w * sin_n + cos_w * cos_n * cos_i) * y_orbit,
        sin_w * sin_i * x_orbit + cos_w * sin_i * y_orbit,
    )


def earth_position(unix_time: float) -> Vector:
    return _heliocentric(_EARTH_MOON_BARYCENTRE, unix_time)


def mars_position(unix_time: float) -> Vector:
    return _heliocentric(_MARS, unix_time)


def earth_mars_distance_au(unix_time: float) -> float:
    return math.dist(earth_position(unix_time), mars_position(unix_time))


def earth_mars_light_time(unix_time: float) -> float:
    """One-way light time between Earth and Mars, seconds."""
    return earth_mars_distance_au(unix_time) * AU_KM / LIGHT_KM_S


def sun_earth_mars_angle(unix_time: float) -> float:
    """Angle Sun–Earth–Mars in degrees: near 0 at solar conjunction, when the Sun is in the way."""
    earth, mars = earth_position(unix_time), mars_position(unix_time)
    to_sun = tuple(-c for c in earth)
    to_mars = tuple(m - e for m, e in zip(mars, earth, strict=True))
    cosine = sum(s * m for s, m in zip(to_sun, to_mars, strict=True)) / (
        math.hypot(*to_sun) * math.hypot(*to_mars)
    )
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


class EphemerisLightTime:
    """Light time as a function of mission time, for a channel direction configured `auto`.

    `offset` shifts mission time onto the ephemeris date (a run can start at any date). The light
    time changes by at most ~0.1 ms per mission second, so it is sampled every `step` seconds and
    interpolated linearly in between (error far below a millisecond) instead of solving Kepler's
    equation per datagram.
    """

    def __init__(self, offset: float = 0.0, step: float = 600.0) -> None:
        self._offset = offset
        self._step = step
        self._start = math.nan
        self._value = 0.0
        self._slope = 0.0

    def at(self, mission_time: float) -> float:
        elapsed = mission_time - self._start
        if not 0.0 <= elapsed < self._step:  # also true while _start is NaN
            self._start = math.floor(mission_time / self._step) * self._step
            date = self._start + self._offset
            self._value = earth_mars_light_time(date)
            self._slope = (earth_mars_light_time(date + self._step) - self._value) / self._step
            elapsed = mission_time - self._start
        return self._value + self._slope * elapsed
