"""What the proxy reports per direction: a snapshot of its counters and gauges, written as a log
line or in the Prometheus text exposition format."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DirectionSnapshot:
    link: str
    direction: str  # "earth->mars"
    datagrams_in: int = 0
    bytes_in: int = 0
    datagrams_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    bits_flipped: int = 0
    datagrams_corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    in_flight_datagrams: int = 0
    in_flight_bytes: int = 0
    spooled_bytes: int = 0
    queue_datagrams: int = 0
    queue_bytes: int = 0
    late_datagrams: int = 0  # delivered later than the late threshold: the proxy fell behind
    max_lateness: float = 0.0  # wall seconds
    light_time: float = 0.0  # mission seconds, the delay a datagram sent now gets
    link_up: bool = True


def format_snapshot(snapshot: DirectionSnapshot) -> str:
    dropped = ", ".join(f"{reason} {count}" for reason, count in snapshot.dropped.items() if count)
    return (
        f"{snapshot.link} {snapshot.direction}: in {snapshot.datagrams_in}"
        f" out {snapshot.datagrams_out} dropped {sum(snapshot.dropped.values())}"
        f"{f' ({dropped})' if dropped else ''} bits_flipped {snapshot.bits_flipped}"
        f" in_flight {snapshot.in_flight_datagrams}/{snapshot.in_flight_bytes}B"
        f" (spooled {snapshot.spooled_bytes}B) queue {snapshot.queue_datagrams}"
        f"/{snapshot.queue_bytes}B late {snapshot.late_datagrams}"
        f" (max {snapshot.max_lateness * 1000:.1f} ms) light_time {snapshot.light_time:.1f}s"
        f" link {'up' if snapshot.link_up else 'down'}"
    )


# (name, type, help, value of a snapshot)
_METRICS = (
    (
        "datagrams_in_total",
        "counter",
        "Datagrams received from the sending node.",
        lambda s: s.datagrams_in,
    ),
    ("bytes_in_total", "counter", "Bytes received from the sending node.", lambda s: s.bytes_in),
    (
        "datagrams_out_total",
        "counter",
        "Datagrams delivered to the receiving node.",
        lambda s: s.datagrams_out,
    ),
    ("bytes_out_total", "counter", "Bytes delivered to the receiving node.", lambda s: s.bytes_out),
    (
        "bits_flipped_total",
        "counter",
        "Bits inverted by the bit error model.",
        lambda s: s.bits_flipped,
    ),
    (
        "datagrams_corrupted_total",
        "counter",
        "Datagrams delivered with at least one flipped bit.",
        lambda s: s.datagrams_corrupted,
    ),
    ("datagrams_duplicated_total", "counter", "Datagrams delivered twice.", lambda s: s.duplicated),
    (
        "datagrams_reordered_total",
        "counter",
        "Datagrams held back so others overtook them.",
        lambda s: s.reordered,
    ),
    (
        "late_datagrams_total",
        "counter",
        "Datagrams delivered later than the late threshold (the proxy fell behind mission time).",
        lambda s: s.late_datagrams,
    ),
    (
        "max_lateness_seconds",
        "gauge",
        "Largest delivery lateness so far, wall seconds.",
        lambda s: s.max_lateness,
    ),
    (
        "in_flight_datagrams",
        "gauge",
        "Datagrams waiting for their delivery time.",
        lambda s: s.in_flight_datagrams,
    ),
    (
        "in_flight_bytes",
        "gauge",
        "Bytes waiting for their delivery time.",
        lambda s: s.in_flight_bytes,
    ),
    (
        "spooled_bytes",
        "gauge",
        "In-flight bytes held on disk past the memory cap.",
        lambda s: s.spooled_bytes,
    ),
    (
        "queue_datagrams",
        "gauge",
        "Datagrams waiting for or in serialization at the link rate.",
        lambda s: s.queue_datagrams,
    ),
    (
        "queue_bytes",
        "gauge",
        "Bytes waiting for or in serialization at the link rate.",
        lambda s: s.queue_bytes,
    ),
    (
        "light_time_seconds",
        "gauge",
        "One-way delay a datagram sent now gets, mission seconds.",
        lambda s: s.light_time,
    ),
    (
        "link_up",
        "gauge",
        "1 while the contact schedule lets the link carry traffic.",
        lambda s: int(s.link_up),
    ),
)
PREFIX = "dtn_emulator_"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(snapshot: DirectionSnapshot, **extra: str) -> str:
    pairs = {"link": snapshot.link, "direction": snapshot.direction, **extra}
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def render_prometheus(snapshots: list[DirectionSnapshot]) -> str:
    """The Prometheus text exposition (version 0.0.4) of the snapshots."""
    lines: list[str] = []
    for name, kind, help_text, value in _METRICS:
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]
        lines += [f"{PREFIX}{name}{_labels(s)} {value(s)}" for s in snapshots]
    name = f"{PREFIX}datagrams_dropped_total"
    lines += [f"# HELP {name} Datagrams dropped, by reason.", f"# TYPE {name} counter"]
    for snapshot in snapshots:
        for reason, count in snapshot.dropped.items():
            lines.append(f"{name}{_labels(snapshot, reason=reason)} {count}")
    return "\n".join(lines) + "\n"
