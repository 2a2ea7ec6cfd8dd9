"""BPv7 bundles (RFC 9171): endpoint IDs, blocks, CRCs, administrative records. Sans-I/O."""

from .admin import ReasonCode, StatusReport, decode_status_report, record_type
from .blocks import BlockFlags, BlockType, BundleFlags, CanonicalBlock, CRCType, PrimaryBlock
from .bundle import Bundle, BundleId
from .eid import EID, NULL_EID
from .errors import BundleError
from .extensions import HopCount, decode_bundle_age, decode_hop_count, decode_previous_node

__all__ = [
    "EID", "NULL_EID", "BlockFlags", "BlockType", "Bundle", "BundleError", "BundleFlags",
    "BundleId", "CRCType", "CanonicalBlock", "HopCount", "PrimaryBlock", "ReasonCode",
    "StatusReport", "decode_bundle_age", "decode_hop_count", "decode_previous_node",
    "decode_status_report", "record_type",
]
