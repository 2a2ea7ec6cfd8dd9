"""Self-Delimiting Numeric Values (RFC 6256), as TCPCLv3 (RFC 7242) and LTP use them.

An SDNV is big-endian groups of 7 bits, the high bit set on every byte but the last. Nothing in
the encoding bounds its length, so a decoder fed by a peer must: `decode_sdnv` gives up after
`max_bytes` bytes (10 hold any 64-bit value) and refuses values of 2**64 or more, raising
`SdnvError`, so a hostile stream of 0xff bytes can neither grow a buffer nor a number forever.
"""

from __future__ import annotations

MAX_SDNV_BYTES = 10
_Bytes = bytes | bytearray | memoryview
_LIMIT = 1 << 64


class SdnvError(ValueError):
    """An SDNV that is too long or too large: the peer is broken or hostile."""


def encode_sdnv(n: int) -> bytes:
    """The shortest SDNV for `n` (0 <= n < 2**64)."""
    if not 0 <= n < _LIMIT:
        raise SdnvError(f"SDNV value out of range: {n}")
    out = bytearray((n & 0x7F,))
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.reverse()
    return bytes(out)


def decode_sdnv(
    buf: _Bytes, pos: int = 0, max_bytes: int = MAX_SDNV_BYTES
) -> tuple[int, int] | None:
    """(value, position after it) for the SDNV at `buf[pos:]`, or None when `buf` ends before
    its last byte (wait for more). Raises SdnvError past `max_bytes` bytes or 2**64."""
    view = memoryview(buf)
    end = min(len(view), pos + max_bytes)
    value = 0
    for i in range(pos, end):
        byte = view[i]
        value = (value << 7) | (byte & 0x7F)
        if value >= _LIMIT:
            raise SdnvError("SDNV value >= 2**64")
        if not byte & 0x80:
            return value, i + 1
    if end - pos >= max_bytes:
        raise SdnvError(f"SDNV longer than {max_bytes} bytes")
    return None
