"""What a scenario run saw, in one shape for both modes (real processes, virtual time): the
expectations are judged on it and the reports (report.json, junit.xml, timeline.png) drawn
from it.

Every time here is mission seconds since the scenario started (t = 0 when traffic may begin).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class BundleRecord:
    """One application bundle the scenario sent, and what became of it."""

    key: str  # the traffic entry's name and the bundle's index in it: "telemetry#3"
    source: str  # the node it was sent from
    destination: str  # EID
    size: int  # application bytes
    sha256: str
    sent_at: float
    bundle_id: str | None = None  # None: the node refused it
    refused: str | None = None  # why the node refused it, if it never took it
    refusals: int = 0  # sends the node refused (store full) before it took it
    forwarded: list[float] = field(default_factory=list)  # handed to a link, by the source
    custody: list[tuple[str, float]] = field(default_factory=list)  # (node taking it, at)
    delivered: list[float] = field(default_factory=list)  # the destination application got it
    intact: bool = True  # every delivered copy had the sent bytes

    @property
    def retransmissions(self) -> int:
        return max(0, len(self.forwarded) - 1)

    @property
    def latency(self) -> float | None:
        return self.delivered[0] - self.sent_at if self.delivered else None


@dataclass
class FaultRecord:
    at: float
    what: str  # "kill -9 mars", "restart mars", "contact earth-mars cut for 30 min"


@dataclass
class LinkRecord:
    name: str
    a: str
    b: str
    light_time: float  # one-way, seconds, at the start of the run
    windows: list[tuple[float, float]]  # when the link is up during the run (whole run if open)
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class ExpectationResult:
    name: str  # "all delivered", "exactly once", ...
    passed: bool
    expected: str
    measured: str
    where: str = ""  # where to look when it failed: bundle keys, a log file

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        text = f"{verdict}  {self.name}: expected {self.expected}, measured {self.measured}"
        return text if self.passed or not self.where else f"{text} ({self.where})"


@dataclass
class RunRecord:
    scenario: str
    mode: str  # "real" or "virtual"
    duration: float  # mission seconds the run lasted
    planned: int = 0  # bundles the traffic called for (some may never have been sent)
    wall_seconds: float = 0.0
    bundles: list[BundleRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> counters at the end
    expectations: list[ExpectationResult] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # process name -> log file (real mode)
    notes: list[str] = field(default_factory=list)  # what the run left out, for people

    @property
    def delivered_count(self) -> int:
        """Bundles delivered at least once."""
        return sum(1 for b in self.bundles if b.delivered)

    @property
    def retransmissions(self) -> int:
        return sum(b.retransmissions for b in self.bundles)

    @property
    def all_delivered(self) -> bool:
        """Every bundle a node accepted so far has reached its application."""
        return all(b.delivered for b in self.bundles if b.refused is None)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.expectations)

    def as_json(self) -> dict:
        document = asdict(self)
        document["passed"] = self.passed
        for bundle, raw in zip(self.bundles, document["bundles"], strict=True):
            raw["retransmissions"] = bundle.retransmissions
            raw["latency"] = bundle.latency
        return document
