"""Reed-Solomon link framing: bundle bytes <-> coded datagrams (sans-I/O). See docs/fec.md."""

from dtn.fec.frame import (
    DEPTHS,
    DecodedFrame,
    FrameConfig,
    FrameError,
    FrameFormat,
    decode_frame,
    decode_frames,
    encode_frames,
)
from dtn.fec.link import FecCounters, FrameDecoder, FrameEncoder

__all__ = [
    "DEPTHS",
    "DecodedFrame",
    "FecCounters",
    "FrameConfig",
    "FrameDecoder",
    "FrameEncoder",
    "FrameError",
    "FrameFormat",
    "decode_frame",
    "decode_frames",
    "encode_frames",
]
