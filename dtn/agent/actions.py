"""What the agent asks its shell to do. Read them with `Agent.next_actions()`, which commits the
store first: no action ever leaves the agent before the writes behind it are durable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dtn.bundle import Bundle, BundleId


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes (one encoded bundle) to the neighbour over its convergence layer."""

    neighbour: str
    data: bytes
    bundle_id: BundleId
    store_id: int = 0  # what `Agent.handed_over` and `not_handed_over` are told back


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand a payload to the application registered on `endpoint`, then call
    `Agent.delivered(delivery_id, now)`. Until then the bundle stays in the store, and an agent
    rebuilt after a crash offers it again."""

    delivery_id: int
    endpoint: str
    bundle_id: BundleId
    payload: bytes
    is_admin_record: bool = False
    # the decoded bundle, for a payload pipeline to open (not part of what is compared)
    bundle: Bundle | None = field(default=None, compare=False, repr=False)
    # A large ADU (AgentConfig.large_adu): `payload` and the bundle's payload block are empty,
    # the payload is this file, the store's until the delivery is done.
    payload_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth a log line or a counter: `name` is stable, `detail` is for people."""

    name: str
    bundle_id: BundleId | None = None
    detail: str = ""


Action = Transmit | Deliver | Event
