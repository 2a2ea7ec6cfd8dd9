"""A token bucket in mission time: what a paced convergence layer may put on the wire now.

`rate_bps` mission bit/s of datagram bytes refill it up to `burst_bytes`; a datagram may go
while the bucket holds any credit, which it then takes (the bucket may go below zero by one
datagram, so datagrams larger than the depth still go). No rate: unpaced, always credit.
"""

from __future__ import annotations

import math

_TOKEN_SLACK = 1e-6  # credit within this much of zero counts as zero: float rounding


class TokenBucket:
    def __init__(self, rate_bps: float | None, burst_bytes: int) -> None:
        if rate_bps is not None and not rate_bps > 0:
            raise ValueError(f"rate_bps must be > 0 or None, got {rate_bps!r}")
        self.burst_bytes = burst_bytes
        self._rate = rate_bps
        self._tokens = float(burst_bytes)
        self._refilled_at: float | None = None

    @property
    def rate_bps(self) -> float | None:
        return self._rate

    @property
    def tokens(self) -> float:
        return self._tokens

    def set_rate(self, rate_bps: float | None) -> None:
        """A new rate (a contact window may change it); None sends unpaced."""
        if rate_bps is not None and not rate_bps > 0:
            raise ValueError(f"rate_bps must be > 0 or None, got {rate_bps!r}")
        if self._rate is None:
            self._tokens = min(self._tokens, float(self.burst_bytes))
        self._rate = rate_bps

    def refill(self, now: float) -> None:
        if self._rate is None:
            self._tokens = math.inf
        elif self._refilled_at is not None and now > self._refilled_at:
            self._tokens = min(
                float(self.burst_bytes), self._tokens + (now - self._refilled_at) * self._rate / 8
            )
        if self._refilled_at is None or now > self._refilled_at:
            self._refilled_at = now

    @property
    def has_credit(self) -> bool:
        return self._tokens > -_TOKEN_SLACK

    def take(self, size: int) -> None:
        self._tokens -= size

    def credit_at(self, now: float) -> float:
        """When the bucket holds credit again (`now` if it does)."""
        if self.has_credit or self._rate is None or self._refilled_at is None:
            return now
        return self._refilled_at + -self._tokens * 8 / self._rate
