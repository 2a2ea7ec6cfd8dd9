"""The reports of a scenario run, drawn from its RunRecord (dtn/scenario/record.py):

- report.json: the record itself (`RunRecord.as_json()`), for tools and for diffing runs;
- junit.xml: one testcase per expectation, valid against Jenkins' xunit-plugin junit-10.xsd
  (tests/vectors/junit/), so CI shows which expectation failed and what was measured;
- timeline.png: what happened when, for a person: sends, deliveries, retransmissions, faults
  and link outages against mission time.

Every time in the record is mission seconds since the scenario start (t = 0).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dtn.scenario.record import LinkRecord, RunRecord

__all__ = ["write_reports"]


def write_reports(record: RunRecord, out: Path) -> list[Path]:
    """Writes report.json, junit.xml and timeline.png into `out` (made if missing) and returns
    their paths in that order."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report, junit, timeline = out / "report.json", out / "junit.xml", out / "timeline.png"
    report.write_text(json.dumps(record.as_json(), indent=2) + "\n", encoding="utf-8")
    _write_junit(record, junit)
    _draw_timeline(record, timeline)
    return [report, junit, timeline]


# --- junit.xml ------------------------------------------------------------------------------

# XML 1.0 cannot carry most control characters even escaped (ANSI colour codes from a log line
# in `measured` would make the whole file unreadable), so they become U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Jenkins splits classname at dots into package and class: keep the scenario one component.
_NOT_CLASS = re.compile(r"[^A-Za-z0-9_-]+")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _surefire_time(seconds: float) -> str:
    # junit-10.xsd's SUREFIRE_TIME: digits, at most three decimals, no sign or exponent.
    return f"{seconds:.3f}" if math.isfinite(seconds) and seconds > 0 else "0.000"


def _write_junit(record: RunRecord, path: Path) -> None:
    results = record.expectations
    tests, failures = str(len(results)), str(sum(not result.passed for result in results))
    # The record has no wall-clock start, so the start is taken as now minus the run's wall time;
    # UTC without an offset is the form Ant's schema and Surefire use.
    started = datetime.now(UTC) - timedelta(seconds=max(0.0, record.wall_seconds or 0.0))
    time = _surefire_time(record.wall_seconds)
    suites = ET.Element("testsuites", {
        "name": _xml_text(f"scenario {record.scenario}"), "tests": tests, "failures": failures,
        "errors": "0", "time": time,
    })
    suite = ET.SubElement(suites, "testsuite", {
        "name": _xml_text(f"scenario {record.scenario} ({record.mode})"), "tests": tests,
        "failures": failures, "errors": "0", "skipped": "0", "time": time,
        "timestamp": started.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    classname = "dtn.scenario." + (_NOT_CLASS.sub("_", record.scenario) or "_")
    for result in results:
        case = ET.SubElement(suite, "testcase", {
            "classname": classname, "name": _xml_text(result.name), "time": "0",
        })
        if not result.passed:
            failure = ET.SubElement(case, "failure", {
                "message": _xml_text(result.line()), "type": "expectation",
            })
            details = [f"expected: {result.expected}", f"measured: {result.measured}"]
            if result.where:
                details.append(f"where: {result.where}")
            failure.text = _xml_text("\n".join(details))
    ET.SubElement(suite, "system-out").text = _xml_text(_system_out(record))
    ET.indent(suites)
    path.write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n")


def _system_out(record: RunRecord) -> str:
    delivered = record.delivered_count
    lines = [
        f"scenario {record.scenario} ({record.mode}): {record.duration:.3f} mission s, "
        f"{len(record.bundles)} bundles sent, {delivered} delivered",
        "faults:" if record.faults else "faults: none",
    ]
    lines += [f"  t={fault.at:.3f} s  {fault.what}" for fault in record.faults]
    lines.append("logs:" if record.logs else "logs: none")
    lines += [f"  {name}: {log}" for name, log in record.logs.items()]
    return "\n".join(lines) + "\n"


# --- timeline.png ---------------------------------------------------------------------------

_SEND = "tab:blue"
_DELIVERY = "tab:green"
_RETRANSMISSION = "tab:red"
_FAULT = "tab:purple"
_DOWN = "0.55"
_MAX_FAULT_LABELS = 40  # beyond this the labels are an unreadable smear: lines only
_LABEL_LEVELS = 4  # rows of fault labels above the lanes before they may overlap
_RETRANSMISSION_DROP = 0.22  # retransmissions sit just under their lane, clear of the sends


def _label_levels(xs: list[float], widths: list[float]) -> list[int]:
    """A row for each fault label (sorted by x) so that labels side by side do not overlap."""
    ends: list[float] = []
    levels = []
    for x, width in zip(xs, widths, strict=True):
        level = next((i for i, end in enumerate(ends) if end <= x), None)
        if level is None:
            level = len(ends) if len(ends) < _LABEL_LEVELS else ends.index(min(ends))
            if level == len(ends):
                ends.append(0.0)
        ends[level] = x + width
        levels.append(level)
    return levels


def _time_unit(span: float) -> tuple[float, str]:
    """Seconds per axis unit and its name: minutes for runs under 3 h, hours beyond, seconds
    for runs so short that minutes would be fractions."""
    if span < 120:
        return 1.0, "s"
    return (60.0, "min") if span < 3 * 3600 else (3600.0, "h")


def _duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.1f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.2f} h"


def _down_spans(link: LinkRecord, end: float) -> list[tuple[float, float]]:
    """The complement of the link's up windows within [0, end] (windows may overlap or be out
    of order; no windows at all means it never came up)."""
    spans, cursor = [], 0.0
    for start, stop in sorted(link.windows):
        start, stop = max(start, 0.0), min(stop, end)
        if stop <= start:
            continue
        if start > cursor:
            spans.append((cursor, start))
        cursor = max(cursor, stop)
    if cursor < end:
        spans.append((cursor, end))
    return spans


def _draw_timeline(record: RunRecord, path: Path) -> None:
    # Imported here so `dtn` commands that never draw do not pay for matplotlib; Figure with its
    # own Agg canvas leaves pyplot's global state (and any interactive backend) alone.
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bundles = record.bundles
    # Lanes: every node the record names, in the order it names them.
    nodes: dict[str, None] = dict.fromkeys(record.nodes)
    nodes.update(dict.fromkeys(bundle.source for bundle in bundles))
    for link in record.links:
        nodes.update(dict.fromkeys((link.a, link.b)))
    nodes.update(dict.fromkeys(node for b in bundles for node, _ in b.custody))
    # Under each node's lane, one "delivered" row per destination it sent to: the record says
    # when the destination application got a bundle but not which node that is (an EID such as
    # ipn:2.1 does not name a node), and a row next to its source keeps the send → delivery
    # lines short and their horizontal length the latency.
    pairs: dict[tuple[str, str], None] = dict.fromkeys((b.source, b.destination) for b in bundles)
    rows: list[tuple[str, str]] = []  # (label, kind)
    row_of_node: dict[str, int] = {}
    row_of_pair: dict[tuple[str, str], int] = {}
    groups: list[tuple[int, int]] = []  # first and last row of each node's band
    for node in nodes:
        first = row_of_node[node] = len(rows)
        rows.append((node, "node"))
        for pair in pairs:
            if pair[0] == node:
                row_of_pair[pair] = len(rows)
                rows.append((f"→ {pair[1]} delivered", "delivered"))
        groups.append((first, len(rows) - 1))
    row_of_link = {}
    for link in record.links:
        row_of_link[link.name] = len(rows)
        rows.append((f"link {link.name}", "link"))
    if not rows:
        rows.append(("(no nodes)", "node"))

    # Every marker kind gathered into flat arrays, so each is one scatter call however many
    # bundles there are.
    sent_ok, sent_lost, refused, retrans, custody = [], [], [], [], []
    first_delivery, duplicates, corrupt, segments = [], [], [], []
    for bundle in bundles:
        y = row_of_node[bundle.source]
        if bundle.bundle_id is None:
            refused.append((bundle.sent_at, y))
            continue
        (sent_ok if bundle.delivered else sent_lost).append((bundle.sent_at, y))
        retrans += [(at, y + _RETRANSMISSION_DROP) for at in bundle.forwarded[1:]]
        custody += [(at, row_of_node[node]) for node, at in bundle.custody]
        if bundle.delivered:
            target = row_of_pair[(bundle.source, bundle.destination)]
            first = min(bundle.delivered)
            deliveries = [(at, target) for at in bundle.delivered]
            if not bundle.intact:
                corrupt += deliveries
            else:
                first_delivery.append((first, target))
                duplicates += [(at, target) for at in bundle.delivered if at != first]
            segments.append(((bundle.sent_at, y), (first, target)))

    events = [record.duration, *(f.at for f in record.faults)]
    events += [t for group in (sent_ok, sent_lost, refused, retrans, custody, first_delivery,
                               duplicates, corrupt) for t, _ in group]
    finite = [t for t in events if math.isfinite(t)]
    end = max([0.0, *finite])
    scale, unit = _time_unit(record.duration if record.duration > 0 else end)
    span = max(end / scale, 1e-9)

    def xy(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        array = np.asarray(points, dtype=float).reshape(-1, 2)
        return array[:, 0] / scale, array[:, 1]

    fig = Figure(figsize=(12, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles: list = []
    many = len(bundles) > 500
    size = 12 if many else 30

    # Alternating bands group a node's lane with its delivered rows.
    for index, (first, last) in enumerate(groups):
        if index % 2 == 0:
            ax.axhspan(first - 0.5, last + 0.5, color="0.93", zorder=0, lw=0)

    # Link outages: shaded across every lane (to see what they did to traffic) and drawn as
    # up/down bars in the link's own row.
    light_times = []
    for link in record.links:
        down = [(a / scale, (b - a) / scale) for a, b in _down_spans(link, record.duration)]
        up = [(max(a, 0) / scale, (min(b, record.duration) - max(a, 0)) / scale)
              for a, b in link.windows if min(b, record.duration) > max(a, 0)]
        ax.broken_barh(down, (-0.5, len(rows)), facecolor=_DOWN, alpha=0.25, lw=0, zorder=0.5)
        y = row_of_link[link.name]
        ax.broken_barh(up, (y - 0.25, 0.5), facecolor=_DELIVERY, alpha=0.45, lw=0, zorder=1)
        ax.broken_barh(down, (y - 0.25, 0.5), facecolor="none", edgecolor=_DOWN, hatch="///",
                       lw=0.8, zorder=1)
        light_times.append(f"{link.a}–{link.b} one-way light time "
                           f"{_duration_text(link.light_time)}")
    if record.links:
        handles.append(Patch(facecolor=_DELIVERY, alpha=0.45, label="link up"))
        handles.append(Patch(facecolor=_DOWN, alpha=0.45, hatch="///", label="link down"))

    if segments:
        lines = np.asarray(segments, dtype=float)
        lines[:, :, 0] /= scale
        ax.add_collection(LineCollection(lines, colors=_DELIVERY, linewidths=0.6,
                                         alpha=max(0.03, min(0.45, 40 / len(segments))),
                                         zorder=2))  # fainter as they crowd: density shows
        handles.append(Line2D([], [], color=_DELIVERY, lw=1,
                              label="send → first delivery\n(length = latency)"))

    def scatter(points, label, **style) -> None:
        if points:
            handles.append(ax.scatter(*xy(points), label=label, zorder=3, **style))

    scatter(sent_ok, "sent, delivered", s=size, color=_SEND, lw=0)
    scatter(sent_lost, "sent, never delivered", s=size * 2.2, facecolors="white",
            edgecolors="black", lw=1.3)
    scatter(refused, "refused by node", s=size * 1.4, marker="s", facecolors="none",
            edgecolors="0.3", lw=1.2)
    scatter(retrans, "retransmission (under its lane)", s=size * 1.4, marker="x",
            color=_RETRANSMISSION, lw=1.3)
    scatter(custody, "custody taken", s=size * 0.6, marker="D", color="0.35", lw=0)
    scatter(first_delivery, "delivered (first copy)", s=size, color=_DELIVERY, lw=0)
    scatter(duplicates, "duplicate delivery", s=size * 1.6, marker="^", color="tab:orange",
            lw=0)
    scatter(corrupt, "delivered corrupted", s=size * 1.6, marker="X", color="black", lw=0)

    # Faults: a dashed line across every lane, labelled at the top.
    headroom = 0.0
    if record.faults:
        at = np.asarray([fault.at for fault in record.faults], dtype=float) / scale
        ax.vlines(at, 0, 1, transform=ax.get_xaxis_transform(), colors=_FAULT,
                  linestyles="dashed", lw=1.3, zorder=4)
        handles.append(Line2D([], [], color=_FAULT, ls="dashed", lw=1.3, label="fault"))
        if len(record.faults) <= _MAX_FAULT_LABELS:
            # Horizontal labels in a strip above the first lane, staggered so that faults close
            # in time stay legible; widths are estimated (8 pt text, ~800 px of axes).
            order = sorted(range(len(record.faults)), key=lambda i: at[i])
            widths = [(len(record.faults[i].what) + 2) * 6.2 / 800 * span * 1.02
                      for i in order]
            levels = _label_levels([float(at[i]) for i in order], widths)
            for i, level in zip(order, levels, strict=True):
                ax.text(at[i], -0.62 - 0.3 * level, f" {record.faults[i].what}", ha="left",
                        va="center", fontsize=8, color=_FAULT, zorder=5,
                        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 0.5})
            headroom = 0.3 * (max(levels) + 1) + 0.15

    if not bundles:
        ax.text(0.5, 0.5, "no bundles sent", transform=ax.transAxes, ha="center",
                va="center", fontsize=14, color="0.5")

    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    for tick, (_, kind) in zip(ax.get_yticklabels(), rows, strict=True):
        if kind != "node":
            tick.set_fontsize(8)
            tick.set_color("0.3")
        else:
            tick.set_fontweight("bold")
    ax.set_ylim(len(rows) - 0.5, -0.5 - headroom)  # first lane on top, fault labels above
    ax.set_xlim(-0.01 * span, span * 1.01)
    ax.set_xlabel(f"mission time ({unit})")
    ax.grid(axis="x", color="0.85", lw=0.6)
    ax.set_axisbelow(True)

    total_retrans = record.retransmissions
    delivered = record.delivered_count
    failed = [result for result in record.expectations if not result.passed]
    summary = [f"{len(bundles)} sent", f"{delivered} delivered",
               f"{total_retrans} retransmissions"]
    if sent_lost:
        summary.append(f"{len(sent_lost)} never delivered")
    if refused:
        summary.append(f"{len(refused)} refused")
    checked = len(record.expectations)
    verdict = (f"PASS ({checked} expectations)" if record.passed
               else f"FAIL ({len(failed)} of {checked} expectations failed)")
    fig.suptitle(f"scenario {record.scenario} ({record.mode}): {verdict}", fontweight="bold",
                 color="tab:green" if record.passed else "tab:red")
    ax.set_title(", ".join(summary) + "\n" + ("; ".join(light_times) or "no links recorded"),
                 fontsize=10)
    if failed:
        # The failing expectations say why the title is red; more than a few only crowd it.
        text = "\n".join(textwrap.fill(result.line(), 44, subsequent_indent="    ")
                         for result in failed[:3])
        if len(failed) > 3:
            text += f"\n… and {len(failed) - 3} more (junit.xml)"
        handles.append(Patch(facecolor="none", edgecolor="none", label=text))
    if handles:
        legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                           fontsize=8, frameon=False, borderaxespad=0)
        if failed:
            legend.get_texts()[-1].set_color("tab:red")
    fig.savefig(path, format="png", dpi=100)
