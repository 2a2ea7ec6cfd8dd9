"""The private code points this project puts on the wire, in one place, configurable per node
(`[codepoints]` in the node config).

Block types 192-255 are private and experimental for everyone (RFC 9171 9.1), so another
stack may use the same numbers: ION 4.1.3 uses 192-197 (bp.h: data label, quality of service,
Spray-and-Wait permits, IMC destinations, RGR, CGRR), HDTN 13 (priority). The defaults below
collide with none of ION, µD3TN, HDTN or dtn7-rs (docs/custody.md, "Code points"), and our
blocks are recognised by their content too, so a foreign block under the same number is never
misread. Administrative record types above 65535 are private (RFC 9713); ION uses 5-8, µD3TN
3 and 7, HDTN 3 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIVATE_BLOCK_TYPES = range(192, 256)  # RFC 9171 9.1
_ASSIGNED_RECORD_TYPES = range(0, 16)  # IANA's and the other stacks' administrative records


@dataclass(frozen=True, slots=True)
class CodePoints:
    custody_block: int = 221  # custody transfer extension block (dtn.agent.custody)
    compression_block: int = 222  # payload compression block (dtn.payload.compression)
    custody_signal: int = 70_000  # compressed custody signal administrative record

    def __post_init__(self) -> None:
        for name in ("custody_block", "compression_block"):
            if getattr(self, name) not in PRIVATE_BLOCK_TYPES:
                raise ValueError(f"{name} must be a private block type, 192-255")
        if self.custody_block == self.compression_block:
            raise ValueError("custody_block and compression_block must differ")
        if self.custody_signal in _ASSIGNED_RECORD_TYPES or self.custody_signal >= 1 << 63:
            raise ValueError("custody_signal must be an administrative record type 16..2^63-1")


DEFAULT_CODEPOINTS = CodePoints()
