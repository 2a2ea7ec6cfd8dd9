"""Where bundles go next: static next hops by EID pattern, refined by a contact plan.

The agent asks a router two things only: `next_hop(destination, now)` and `link(neighbour, now)`.
A multi-hop contact graph router can replace `Router` behind the same two calls.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from dtn.bundle import EID


@dataclass(frozen=True, slots=True)
class Link:
    """What the agent needs to know of the link to one neighbour (mission-time units)."""

    neighbour: str
    owlt: float = 0.0  # one-way light time, seconds
    rate_bps: float | None = None  # None: not paced by the agent
    max_bundle_size: int | None = None  # larger bundles are fragmented before they go out
    # Larger bundles are fragmented when they may be: a preference (one that must not be
    # fragmented goes whole), e.g. so that one lost datagram costs a retransmission of a few
    # frames, not of a whole large bundle.
    fragment_above: int | None = None
    custody: bool = True  # whether the neighbour takes custody (else: forward and forget)
    # Whether the convergence layer tells when the neighbour has a bundle (TCPCL's acks; MTCP
    # and STCP once the stream took it): a bundle sent without custody is then kept until
    # `Agent.handed_over`, and goes again after `Agent.not_handed_over`.
    acknowledged: bool = False


@dataclass(frozen=True, slots=True)
class Contact:
    """One window in which the link to `neighbour` is up; rate and light time may differ per
    window (None: the Link's value)."""

    neighbour: str
    start: float
    end: float
    rate_bps: float | None = None
    owlt: float | None = None

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError(
                f"contact with {self.neighbour} ends ({self.end}) before it starts ({self.start})"
            )


class ContactPlan:
    """Per neighbour, the windows when its link is up, sorted and non-overlapping."""

    def __init__(self, contacts: Iterable[Contact] = ()) -> None:
        by_neighbour: dict[str, list[Contact]] = {}
        for contact in contacts:
            by_neighbour.setdefault(contact.neighbour, []).append(contact)
        for neighbour, windows in by_neighbour.items():
            windows.sort(key=lambda c: c.start)
            for earlier, later in zip(windows, windows[1:], strict=False):
                if later.start < earlier.end:
                    raise ValueError(f"contacts with {neighbour} overlap at {later.start}")
        self._windows = by_neighbour
        self._ends = {n: [c.end for c in w] for n, w in by_neighbour.items()}

    def plans(self, neighbour: str) -> bool:
        """Whether the plan has windows for this neighbour (else its link is opportunistic)."""
        return neighbour in self._windows

    def current_or_next(self, neighbour: str, now: float) -> Contact | None:
        """The window open at `now`, else the next one; None when none is left."""
        ends = self._ends.get(neighbour)
        if not ends:
            return None
        i = bisect.bisect_right(ends, now)
        return self._windows[neighbour][i] if i < len(ends) else None

    def is_up(self, neighbour: str, now: float) -> bool:
        contact = self.current_or_next(neighbour, now)
        return contact is not None and contact.start <= now

    def next_transition(self, now: float) -> tuple[float, str, bool] | None:
        """(time, neighbour, up) of the next window edge after `now`, for the shell that turns
        the plan into contact_up/contact_down calls."""
        best = None
        for neighbour in self._windows:
            contact = self.current_or_next(neighbour, now)
            if contact is None:
                continue
            edge = (
                (contact.start, neighbour, True)
                if contact.start > now
                else (contact.end, neighbour, False)
            )
            if best is None or edge[0] < best[0]:
                best = edge
        return best


@dataclass(frozen=True, slots=True)
class Route:
    """Bundles whose destination EID text matches `pattern` (fnmatch: `ipn:2.*`,
    `dtn://mars/*`) go via one of `via`: the one whose contact comes first."""

    pattern: str
    via: tuple[str, ...]


class Router:
    def __init__(
        self,
        routes: Iterable[Route] = (),
        links: Iterable[Link] = (),
        plan: ContactPlan | None = None,
    ) -> None:
        self.routes = list(routes)
        self.links = {link.neighbour: link for link in links}
        self.plan = plan or ContactPlan()

    def next_hop(self, destination: EID, now: float) -> str | None:
        """The neighbour to queue a bundle for; None when no route matches or every candidate's
        contacts are over."""
        text = str(destination)
        for route in self.routes:
            if fnmatchcase(text, route.pattern):
                return self._soonest(route.via, now)
        return None

    def _soonest(self, candidates: tuple[str, ...], now: float) -> str | None:
        best, best_start = None, None
        for neighbour in candidates:
            if not self.plan.plans(neighbour):
                start = now  # no windows planned: the link may come up at any time
            else:
                contact = self.plan.current_or_next(neighbour, now)
                if contact is None:
                    continue
                start = max(now, contact.start)
            if best_start is None or start < best_start:
                best, best_start = neighbour, start
        return best

    def link(self, neighbour: str, now: float) -> Link:
        """The link's parameters now: the current or next window's rate and light time win."""
        link = self.links.get(neighbour) or Link(neighbour)
        contact = self.plan.current_or_next(neighbour, now)
        if contact is None:
            return link
        return replace(
            link,
            rate_bps=contact.rate_bps or link.rate_bps,
            owlt=link.owlt if contact.owlt is None else contact.owlt,
        )
