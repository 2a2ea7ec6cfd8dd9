"""GF(2^8) arithmetic for the CCSDS Reed-Solomon code, as numpy lookup tables.

The field is GF(2)[x] / (x^8 + x^7 + x^2 + x + 1) (CCSDS 131.0-B section 4), `ALPHA` = x is
a root of that polynomial and every non-zero element is ALPHA**e for one e in 0..254.

Products are taken in the log domain so that a whole array multiplies with one `np.take`:
`LOG[0]` is a sentinel (`LOG_ZERO`) so large that any sum of up to three logs containing it
lands in the zero-filled tail of `EXP`, so no zero test and no modulo is needed:

    a * b == EXP[LOG[a] + LOG[b]]           for all bytes a, b
    a * ALPHA**e == EXP[LOG[a] + e]         for 0 <= e < 2 * 255 + 1

The dual-basis (Berlekamp) representation that CCSDS puts on the wire is one more pair of
256-entry tables, `TO_DUAL` and `FROM_DUAL`; the transform is linear over GF(2), so it can be
folded into any other table that is XOR-linear in its input.
"""

from __future__ import annotations

import numpy as np

FIELD_POLY = 0x187  # x^8 + x^7 + x^2 + x + 1
ORDER = 255  # multiplicative order of ALPHA
LOG_ZERO = 1024  # sentinel log of 0; exceeds 4 * 254, the largest sum of real logs we form
_EXP_LEN = 4 * LOG_ZERO  # room for sums of up to three sentinels plus real logs


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(_EXP_LEN, dtype=np.uint8)
    log = np.full(256, LOG_ZERO, dtype=np.intp)
    value = 1
    for power in range(ORDER):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= FIELD_POLY
    # EXP[e] = ALPHA**(e mod 255) up to the sentinel, 0 from the sentinel on.
    exp[:LOG_ZERO] = exp[np.arange(LOG_ZERO) % ORDER]
    return exp, log


EXP, LOG = _build_tables()


def mul(a: int, b: int) -> int:
    """One product of two field elements (for building tables, not for hot loops)."""
    return int(EXP[LOG[a] + LOG[b]])


def power(exponent: int) -> int:
    """ALPHA**exponent for any integer exponent."""
    return int(EXP[exponent % ORDER])


def _trace(value: int) -> int:
    """The absolute trace Tr(z) = z + z^2 + z^4 + ... + z^128, which is 0 or 1."""
    total, square = 0, value
    for _ in range(8):
        total ^= square
        square = mul(square, square)
    return total


def _build_dual_basis() -> tuple[np.ndarray, np.ndarray]:
    """Conventional <-> Berlekamp dual-basis byte tables (CCSDS 131.0-B section 4.3.9).

    The dual basis l0..l7 is dual to 1, b, ..., b^7 with b = ALPHA**117, so the dual-basis
    coordinates of z are z_i = Tr(z * b^i); z0 is sent first, i.e. is the byte's top bit.
    """
    beta_powers = [power(117 * i) for i in range(8)]
    to_dual = np.zeros(256, dtype=np.uint8)
    for value in range(256):
        byte = 0
        for index, beta_power in enumerate(beta_powers):
            byte |= _trace(mul(value, beta_power)) << (7 - index)
        to_dual[value] = byte
    from_dual = np.zeros(256, dtype=np.uint8)
    from_dual[to_dual] = np.arange(256, dtype=np.uint8)
    return to_dual, from_dual


TO_DUAL, FROM_DUAL = _build_dual_basis()
