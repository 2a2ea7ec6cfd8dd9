"""A clock per neighbour that runs only while the contact with it is up.

Custody retransmission timers count link-up time: a bundle sent just before a contact closes is
not retransmitted the moment the next contact opens, because its signal could not have come
back while the link was down. Timers are stored as readings of this clock, so pausing it pauses
every timer of that neighbour at once, with no per-bundle update.
"""

from __future__ import annotations


class LinkClock:
    __slots__ = ("elapsed", "up_since")

    def __init__(self, elapsed: float = 0.0) -> None:
        self.elapsed = elapsed  # link-up seconds accumulated over closed contacts
        self.up_since: float | None = None

    @property
    def running(self) -> bool:
        return self.up_since is not None

    def start(self, now: float) -> None:
        if self.up_since is None:
            self.up_since = now

    def stop(self, now: float) -> None:
        if self.up_since is not None:
            self.elapsed += max(0.0, now - self.up_since)
            self.up_since = None

    def read(self, now: float) -> float:
        if self.up_since is None:
            return self.elapsed
        return self.elapsed + max(0.0, now - self.up_since)

    def when(self, reading: float) -> float | None:
        """The mission time at which the clock will show `reading`; None while stopped."""
        if self.up_since is None:
            return None
        return self.up_since + max(0.0, reading - self.elapsed)
