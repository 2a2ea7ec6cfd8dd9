"""A scenario's expectations, judged on what the run recorded (the same for both modes).

Each gives an `ExpectationResult` with the figure measured and, when it fails, the bundles or
nodes to look at: a failed run says which expectation, by how much, and where.
"""

from __future__ import annotations

from dataclasses import dataclass

from dtn.scenario.config import Scenario
from dtn.scenario.record import BundleRecord, ExpectationResult, RunRecord

_SHOWN = 5  # bundle keys named in a failure


def _keys(bundles: list[BundleRecord]) -> str:
    names = ", ".join(b.key for b in bundles[:_SHOWN])
    return names + (f" and {len(bundles) - _SHOWN} more" if len(bundles) > _SHOWN else "")


@dataclass(frozen=True)
class AppOutcome:
    name: str
    returncode: int | None  # None: still running when the run ended, or killed at its timeout
    timed_out: bool
    log: str


def judge_apps(outcomes: list[AppOutcome], record: RunRecord) -> None:
    """A user's program passes when it exited 0 in time."""
    for app in outcomes:
        if app.returncode is not None:
            measured = f"exit {app.returncode}"
        else:
            measured = "timed out" if app.timed_out else "still running at the end"
        record.expectations.append(ExpectationResult(
            f"app {app.name}", app.returncode == 0, "exit 0", measured, f"its output: {app.log}"))


def judge(scenario: Scenario, record: RunRecord, path_light_time: dict[str, float]) -> None:
    """Fill `record.expectations`. `path_light_time[key]` is the one-way light time along a
    bundle's path (the sum over its hops), for `within_light_times`."""
    expect = scenario.file.expect
    bundles = record.bundles
    results = record.expectations
    planned = max(record.planned, len(bundles))
    missing = [b for b in bundles if not b.delivered]
    unsent = planned - len(bundles)  # their node was down until the end
    got = len(bundles) - len(missing)
    share = got / planned if planned else 1.0
    where = [f"not delivered: {_keys(missing)}"] if missing else []
    if unsent:
        where.append(f"{unsent} never sent (their node was down)")
    results.append(ExpectationResult(
        "delivered", share >= expect.delivered - 1e-12,
        "all" if expect.delivered == 1 else f">= {expect.delivered:.1%}",
        f"{got} of {planned} ({share:.1%})", "; ".join(where)))
    refused = [b for b in bundles if b.refused is not None]
    if refused:
        reasons = sorted({b.refused for b in refused})
        results.append(ExpectationResult(
            "accepted by the source node", False, "every send accepted",
            f"{len(refused)} refused ({'; '.join(reasons)[:200]})", _keys(refused)))
    if expect.exactly_once:
        twice = [b for b in bundles if len(b.delivered) > 1]
        results.append(ExpectationResult(
            "exactly once", not twice, "no bundle delivered twice",
            f"{len(twice)} delivered more than once", _keys(twice)))
    if expect.byte_identical:
        damaged = [b for b in bundles if b.delivered and not b.intact]
        results.append(ExpectationResult(
            "byte-identical", not damaged, "every delivered payload as sent",
            f"{len(damaged)} differ", _keys(damaged)))
    if expect.within_light_times is not None:
        late = []
        worst = 0.0
        for bundle in bundles:
            light = path_light_time[bundle.key]
            if bundle.latency is None or light <= 0:
                continue
            ratio = bundle.latency / light
            worst = max(worst, ratio)
            if ratio > expect.within_light_times:
                late.append(bundle)
        results.append(ExpectationResult(
            "within light times", not late,
            f"latency <= {expect.within_light_times:g} x the path's one-way light time",
            f"worst {worst:.2f} x, {len(late)} later", _keys(late)))
    if expect.max_retransmissions is not None:
        total = record.retransmissions
        most = sorted(bundles, key=lambda b: -b.retransmissions)
        results.append(ExpectationResult(
            "retransmissions", total <= expect.max_retransmissions,
            f"<= {expect.max_retransmissions}", str(total),
            f"most: {_keys([b for b in most if b.retransmissions][:_SHOWN])}" if total else ""))
    if expect.none_expired:
        expired = {node: counters.get("expired", 0) for node, counters in record.nodes.items()}
        where = ", ".join(f"{node}: {count}" for node, count in expired.items() if count)
        results.append(ExpectationResult(
            "none expired", not where, "no bundle expired on any node",
            f"{sum(expired.values())} expired", where))
    if expect.none_in_custody:
        held = {node: counters.get("custody_in_flight", 0)
                for node, counters in record.nodes.items()}
        where = ", ".join(f"{node}: {count}" for node, count in held.items() if count)
        results.append(ExpectationResult(
            "none left in custody", not where, "no node waiting for a custody signal at the end",
            f"{sum(held.values())} in custody", where))
