"""dtn: a delay-tolerant networking stack for Earth-Mars links (BPv7, BPSec, RS framing)."""

__version__ = "0.1.0"
