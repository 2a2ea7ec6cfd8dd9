"""The agent's tunables, all in mission time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dtn.bundle import CRCType
from dtn.codepoints import DEFAULT_CODEPOINTS, CodePoints


@dataclass(frozen=True, slots=True)
class AgentConfig:
    custody_margin: float = 30.0  # s added to the round-trip light time before retransmitting
    signal_delay: float = 1.0  # s a custody disposition waits for others to share its signal
    signal_max_ranges: int = 256  # ranges per signal; a fuller signal goes out at once
    default_lifetime: float = 86_400.0  # s, for submitted bundles that name none
    admin_lifetime: float = 86_400.0  # s, for custody signals and status reports
    max_bundle_size: int = 64 * 1024 * 1024  # received bundles above this are refused unread
    large_adu: int = 16 * 1024 * 1024  # ADUs above this are reassembled into a file, not memory
    fragment_size: int = 1024 * 1024  # bundles the node cuts data above large_adu into
    transmit_batch: int = 256  # bundles per neighbour per input call on an unpaced link
    pacing_window: float = 1.0  # s of link time queued ahead on a paced link
    unpaced_queue: int = 16 << 20  # bytes an unpaced layer that reports its backlog may hold
    purge_batch: int = 1000  # expired rows deleted per timer call
    has_clock: bool = True  # False: creation time 0 and a bundle age block (RFC 9171 4.2.6)
    crc_type: int = CRCType.CRC32C
    # False: no status reports at all. RFC 9171 5.1 wants False by default; True until the node
    # configuration can turn it on, since the CLI's `send --wait` waits for a delivery report.
    status_reports: bool = True
    # Blocks other layers process here, by type: whether a block's data is ours (not another
    # stack's under the same private number).
    extra_blocks: Mapping[int, Callable[[bytes], bool]] = field(default_factory=dict)
    codepoints: CodePoints = DEFAULT_CODEPOINTS
