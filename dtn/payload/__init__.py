"""Payload compression and the send/deliver pipeline (compress, then BPSec). Sans-I/O."""

from .compression import (
    COMPRESSION_BLOCK_TYPE,
    DEFAULT_MAX_PAYLOAD,
    Algorithm,
    CompressionInfo,
    Compressor,
)
from .errors import CompressionError, PayloadReason, PayloadRejected
from .pipeline import PayloadPipeline

__all__ = [
    "COMPRESSION_BLOCK_TYPE",
    "DEFAULT_MAX_PAYLOAD",
    "Algorithm",
    "CompressionError",
    "CompressionInfo",
    "Compressor",
    "PayloadPipeline",
    "PayloadReason",
    "PayloadRejected",
]
