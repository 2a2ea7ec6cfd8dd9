"""CRC-16/X.25 and CRC-32C as RFC 9171 4.2.1 defines them, over bytes-like pieces.

CRC-32C comes from the `crc32c` package (hardware instructions where the CPU has them).
CRC-16/X.25 is the reflected form of the CCITT polynomial 0x1021; `binascii.crc_hqx` computes the
non-reflected form in C, so the input bytes are bit-reversed with one `bytes.translate` and the
result is reflected back. That keeps a 64 KiB payload in C instead of a Python byte loop.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable

from crc32c import crc32c

_REVERSED_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reflect16(value: int) -> int:
    return int(f"{value:016b}"[::-1], 2)


def crc16_x25(pieces: Iterable[bytes | memoryview]) -> int:
    """CRC-16/X.25 (init 0xFFFF, reflected, xorout 0xFFFF) of the concatenated pieces."""
    state = 0xFFFF
    for piece in pieces:
        state = binascii.crc_hqx(bytes(piece).translate(_REVERSED_BITS), state)
    return _reflect16(state) ^ 0xFFFF


def crc32c_of(pieces: Iterable[bytes | memoryview]) -> int:
    """CRC-32C (Castagnoli) of the concatenated pieces."""
    state = 0
    for piece in pieces:
        state = crc32c(piece, state)
    return state
