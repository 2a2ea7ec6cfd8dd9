"""Batched CCSDS Reed-Solomon RS(255,223) over numpy arrays: parity, check and correction.

The code: 32 parity symbols, 16 symbol errors corrected, field of `gf`, generator polynomial
g(x) = prod (x - b^j) for j = 112..143 with b = ALPHA**11 (CCSDS 131.0-B section 4).
A codeword is sent highest degree first: data symbol t of a codeword of length n has degree
n - 1 - t, and the 32 parity symbols end it. Shortened codewords (k < 223 data symbols) are
the full code with 223 - k leading zeros that are never sent.

Every method works on many codewords at once. Arrays are `(..., k)` data and `(..., 32)`
parity: any leading batch shape, any strides, so callers can hand in views of interleaved
frames without copying. Where the speed comes from:

- Parity is XOR-linear in the data, so `_parity_rows[p, v]` holds the 32 parity bytes that
  value v at data position p contributes, as four uint64; encoding a batch is one `np.take`
  of 32-byte rows and one XOR per data position, over every codeword at once.
- Checking computes 8 of the 32 syndromes, one uint64 row per symbol: enough to see any
  damage of up to 8 symbols for certain and more with probability 1 - 2^-64. For the few
  damaged words, re-encoding gives the received word mod g(x), and the 32 syndromes come
  from that remainder with 32 row lookups instead of 255.
- Correction runs only on damaged codewords, all of them at once: a closed form for the
  common single error, then inversionless Berlekamp-Massey in coefficient-major arrays (one
  row per coefficient, one column per codeword) in tiers of growing size, Chien search by
  table lookup and Forney's formula at the roots found.

The table lookups (parity, check, syndromes) run in the optional C kernel `_xor.c` when it is
built, else in their numpy twin `_xor_of_rows_numpy`; both give the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from dtn.fec import gf

try:
    from ._xor import xor_of_rows as _xor_kernel
except ImportError:  # no compiler at install time: the numpy twin alone, same results
    _xor_kernel = None

N = 255  # full codeword length
PARITY = 32
K = N - PARITY  # 223 data symbols in a full codeword
T = PARITY // 2  # symbol errors corrected per codeword
FIRST_ROOT = 112  # the code's roots are b^112 .. b^143
ROOT_STEP = 11  # b = ALPHA**11
_ROOT_STEP_INVERSE = 116  # 11 * 116 == 1 (mod 255): turns log(b^i) back into i

# Batches up to this many codewords go through a table map in one gather over all positions;
# larger ones loop over positions, which costs 2 numpy calls per position whatever the size.
_ONE_SHOT_MAX_CODEWORDS = 256
# Berlekamp-Massey tiers: most damaged codewords carry few errors, and BM on m errors needs
# only 2m iterations on m + 1 coefficients; the rest of the syndromes then confirm it.
_BM_TIERS = (4, T)


def _generator_poly() -> np.ndarray:
    """g(x) as 33 coefficients, highest degree first (monic)."""
    poly = [1]
    for j in range(FIRST_ROOT, FIRST_ROOT + PARITY):
        root = gf.power(ROOT_STEP * j)
        poly = [a ^ gf.mul(b, root) for a, b in zip(poly + [0], [0] + poly, strict=True)]
    return np.array(poly, dtype=np.uint8)


def _unit_parities() -> np.ndarray:
    """(K, 32): the parity of a full codeword whose only non-zero data symbol is a 1 at p.

    That parity is x^(254 - p) mod g(x); it is built from p = 222 (x^32 mod g) upwards by
    multiplying by x, in send order (index t holds the coefficient of x^(31 - t)).
    """
    low = _generator_poly()[1:].astype(np.intp)  # g(x) - x^32, send order
    rows = np.zeros((K, PARITY), dtype=np.uint8)
    remainder = low.astype(np.uint8)  # x^32 == g(x) - x^32 (mod g), in characteristic 2
    for position in range(K - 1, -1, -1):
        rows[position] = remainder
        carry = gf.LOG[remainder[0]]
        remainder = np.append(remainder[1:], np.uint8(0)) ^ gf.EXP[gf.LOG[low] + carry]
    return rows


def _scaled_rows(unit_rows: np.ndarray) -> np.ndarray:
    """(P, 256, W) with [p, v] = v * unit_rows[p], elementwise in the field."""
    logs = gf.LOG[unit_rows][:, None, :] + gf.LOG[np.arange(256)][None, :, None]
    return gf.EXP[logs]


@dataclass(frozen=True)
class Corrections:
    """What correcting a batch of damaged codewords found.

    `failed[d]` says damaged codeword d could not be corrected. For the others, each error is
    one entry of `codeword` (index into the damaged batch), `position` (symbol index in send
    order, 0..n-1) and `error` (the byte to XOR there, in the representation on the wire).
    """

    failed: np.ndarray
    codeword: np.ndarray
    position: np.ndarray
    error: np.ndarray


class ReedSolomon:
    """The RS(255,223) code in one symbol representation, conventional or dual basis."""

    def __init__(self, dual_basis: bool = False) -> None:
        self.dual_basis = dual_basis
        parity_rows = _scaled_rows(_unit_parities())  # (K, 256, 32)
        syndrome_rows = _scaled_rows(_remainder_to_syndromes())  # (32, 256, 32)
        if dual_basis:
            # Wire bytes are dual basis; the tables are XOR-linear in their input, so the
            # basis change folds into them: read the index as dual, write the row as dual.
            parity_rows = gf.TO_DUAL[parity_rows[:, gf.FROM_DUAL]]
            syndrome_rows = syndrome_rows[:, gf.FROM_DUAL]
        check_rows = _scaled_rows(_word_to_check_syndromes())  # (N, 256, 8)
        if dual_basis:
            check_rows = check_rows[:, gf.FROM_DUAL]
        # Rows of 32 (8) bytes as four uint64 (one): (positions, 256, 4 or 1).
        self._parity_rows = np.ascontiguousarray(parity_rows).view(np.uint64)
        self._syndrome_rows = np.ascontiguousarray(syndrome_rows).view(np.uint64)
        self._check_rows = np.ascontiguousarray(check_rows).view(np.uint64)
        self._error_out = gf.TO_DUAL if dual_basis else np.arange(256, dtype=np.uint8)

    # -- encoding and checking -------------------------------------------------------------

    def parity(self, data: np.ndarray) -> np.ndarray:
        """The 32 parity symbols of each codeword: (..., k) uint8 -> (..., 32) uint8."""
        data_len = data.shape[-1]
        if not 0 < data_len <= K:
            raise ValueError(f"a codeword holds 1..{K} data symbols, got {data_len}")
        first = K - data_len  # shortened: the table positions of the symbols actually sent
        return _xor_of_rows(self._parity_rows[first:], data).view(np.uint8)

    def damaged(self, words: np.ndarray) -> np.ndarray:
        """Which received words (..., n) are not codewords: (...,) bool.

        Only the first 8 syndromes are computed (one uint64 per word, over all n symbols):
        they are all zero for a codeword, and for a word with 1 to 8 errors never are (they
        define a code of distance 9). More errors go unnoticed with probability 2^-64, and
        then the frame CRC still stands.
        """
        length = words.shape[-1]
        if not PARITY < length <= N:
            raise ValueError(f"codeword length must be {PARITY + 1}..{N}, got {length}")
        return _xor_of_rows(self._check_rows[N - length :], words)[..., 0] != 0

    def remainders(self, data: np.ndarray, parity: np.ndarray) -> np.ndarray:
        """Received word mod g(x) per codeword, (..., 32) uint8: all zero iff clean."""
        return self.parity(data) ^ parity

    # -- correction ------------------------------------------------------------------------

    def correct(self, remainders: np.ndarray, length: int) -> Corrections:
        """Locate and size the errors of damaged codewords of `length` symbols.

        `remainders` is (D, 32): `remainders()` of the damaged words. Up to 16 symbol errors
        per codeword are always found; beyond that a codeword is usually reported failed,
        and may rarely be "corrected" to another codeword (the frame CRC catches that).
        """
        if not PARITY < length <= N:
            raise ValueError(f"codeword length must be {PARITY + 1}..{N}, got {length}")
        count = remainders.shape[0]
        syndromes = _xor_of_rows(self._syndrome_rows, remainders).view(np.uint8)  # (D, 32)
        syndrome_logs = np.ascontiguousarray(gf.LOG[syndromes].T)  # (32, D)

        found = _single_errors(syndrome_logs, length)
        failed = np.zeros(count, dtype=bool)
        pending = np.ones(count, dtype=bool)
        pieces = []
        if found is not None:
            settled, single_failed, piece = found
            pending &= ~settled
            failed |= single_failed
            pieces.append(piece)
        for max_errors in _BM_TIERS:
            columns = np.flatnonzero(pending)
            if columns.size == 0:
                break
            settled, tier_failed, piece = _locate_tier(
                syndrome_logs[:, columns], max_errors, length
            )
            pending[columns[settled]] = False
            failed[columns[tier_failed]] = True
            pieces.append((columns[piece[0]], piece[1], piece[2]))
        failed |= pending  # more than T errors: not even the last tier could solve them
        codeword = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.intp)
        degree = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.intp)
        error = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0, np.uint8)
        keep = ~failed[codeword]
        return Corrections(
            failed=failed,
            codeword=codeword[keep],
            position=length - 1 - degree[keep],
            error=self._error_out[error[keep]],
        )


def _xor_of_rows(tables: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """XOR over p of tables[p, symbols[..., p]]: (..., P) uint8 -> (..., W) uint64.

    A linear map from P symbols to W words, by table lookup, in C when it is built.
    """
    if _xor_kernel is None:
        return _xor_of_rows_numpy(tables, symbols)
    batch = symbols.shape[:-1]
    out = np.empty((int(np.prod(batch)), tables.shape[2]), dtype=np.uint64)
    # The kernel takes any strides: a 2-D view of interleaved frames goes in without a copy.
    _xor_kernel(tables, symbols.reshape(-1, symbols.shape[-1]), out)  # it checks the shapes
    return out.reshape(*batch, tables.shape[2])


def _xor_of_rows_numpy(tables: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """`_xor_of_rows` in numpy alone: the reference for the C kernel.

    Small batches take every row in one gather and fold it; large ones loop over p, two numpy
    calls per p whatever the batch size, so numpy's per-call cost is spread over many codewords.
    """
    positions, _, width = tables.shape
    batch = symbols.shape[:-1]
    if int(np.prod(batch)) <= _ONE_SHOT_MAX_CODEWORDS:
        index = symbols.astype(np.intp)
        index += np.arange(0, positions * 256, 256)
        return _xor_fold(tables.reshape(-1, width).take(index, axis=0, mode="clip"))
    packed = np.zeros((*batch, width), dtype=np.uint64)
    scratch = np.empty_like(packed)
    for position in range(positions):
        tables[position].take(symbols[..., position], axis=0, out=scratch, mode="clip")
        np.bitwise_xor(packed, scratch, out=packed)
    return packed


def _xor_fold(rows: np.ndarray) -> np.ndarray:
    """XOR of (..., m, w) over m by halving: a few wide XORs instead of m narrow ones."""
    width = rows.shape[-2]
    while width > 1:
        half = width // 2
        rows[..., :half, :] ^= rows[..., width - half : width, :]
        width -= half  # an odd middle row stays where it is, for the next round
    return rows[..., 0, :]


def _word_to_check_syndromes() -> np.ndarray:
    """(255, 8): [t, j] = b^((112 + j) * (254 - t)), so S_j = sum_t w[t] * [t, j] for a full
    word w in send order (a shortened word uses the last n rows)."""
    t = np.arange(N)[:, None]
    j = np.arange(8)[None, :]
    exponents = (ROOT_STEP * (FIRST_ROOT + j) * (N - 1 - t)) % gf.ORDER
    return gf.EXP[exponents]


def _remainder_to_syndromes() -> np.ndarray:
    """(32, 32): [t, j] = b^((112 + j) * (31 - t)), so S_j = sum_t r[t] * [t, j]."""
    t = np.arange(PARITY)[:, None]
    j = np.arange(PARITY)[None, :]
    exponents = (ROOT_STEP * (FIRST_ROOT + j) * (PARITY - 1 - t)) % gf.ORDER
    return gf.EXP[exponents]


def _single_errors(syndrome_logs: np.ndarray, length: int):
    """Closed form for codewords with exactly one error: S_(j+1) / S_j == b^i for every j.

    Returns (settled, failed, (codeword, degree, error)) over all columns, or None when no
    column has the single-error form.
    """
    candidates = np.flatnonzero((syndrome_logs < gf.ORDER).all(axis=0))  # no S_j is zero
    ratios = syndrome_logs[1:, candidates] - syndrome_logs[:-1, candidates]
    ratios += gf.ORDER * (ratios < 0)  # log(S_(j+1) / S_j), without a slow modulo
    single = np.zeros(syndrome_logs.shape[1], dtype=bool)
    single[candidates] = (ratios == ratios[0]).all(axis=0)
    columns = np.flatnonzero(single)
    if columns.size == 0:
        return None
    log_x = ratios[0, single[candidates]]  # log(b^i) = 11 i
    degree = (log_x * _ROOT_STEP_INVERSE) % gf.ORDER
    log_error = (syndrome_logs[0, columns] - FIRST_ROOT * log_x) % gf.ORDER
    inside = degree < length  # an error in the never-sent fill is no error we can fix
    failed = np.zeros(single.size, dtype=bool)
    failed[columns[~inside]] = True
    keep = columns[inside]
    return single, failed, (keep, degree[inside], gf.EXP[log_error[inside]])


def _zero_led(syndrome_logs: np.ndarray, lead: int) -> np.ndarray:
    """Syndrome logs with `lead` rows of log(0) before them: row lead + j holds log S_j, so
    S_(j - i) for i up to `lead` is a plain slice (S_j = 0 for j < 0)."""
    padded = np.full((lead + PARITY, syndrome_logs.shape[1]), gf.LOG_ZERO, dtype=np.intp)
    padded[lead:] = syndrome_logs
    return padded


def _berlekamp_massey(syndrome_logs: np.ndarray, iterations: int, rows: int):
    """Inversionless Berlekamp-Massey over columns: (locator (rows, D) uint8, L (D,)).

    Each column's branch is a mask, so all columns run the same fixed iterations. Locators are
    kept to `rows` coefficients; a column whose L exceeds rows - 1 has lost terms and must be
    treated as unsolved (its locator is meaningless).
    """
    count = syndrome_logs.shape[1]
    padded = _zero_led(syndrome_logs, rows - 1)
    locator = np.zeros((rows, count), dtype=np.uint8)
    locator[0] = 1
    previous_logs = np.full((rows, count), gf.LOG_ZERO, dtype=np.intp)  # B(x), log domain
    previous_logs[0] = 0
    gamma_logs = np.zeros(count, dtype=np.intp)
    length = np.zeros(count, dtype=np.intp)
    shifted = np.empty_like(previous_logs)
    for r in range(iterations):
        live = min(rows, r + 2)  # deg locator <= r + 1 after this iteration
        locator_logs = gf.LOG[locator[:live]]
        window = padded[r + rows - live : r + rows][::-1]  # S_r, S_(r-1), ..., S_(r-live+1)
        delta = np.bitwise_xor.reduce(gf.EXP[locator_logs + window], axis=0)
        delta_logs = gf.LOG[delta]
        shifted[0] = gf.LOG_ZERO
        shifted[1:live] = previous_logs[: live - 1]
        new_locator = gf.EXP[locator_logs + gamma_logs]
        new_locator ^= gf.EXP[shifted[:live] + delta_logs]
        locator[:live] = new_locator
        grow = (delta != 0) & (2 * length <= r)
        previous_logs[:live] = np.where(grow, locator_logs, shifted[:live])
        gamma_logs = np.where(grow, delta_logs, gamma_logs)
        length = np.where(grow, r + 1 - length, length)
    return locator, length


def _locate_tier(syndrome_logs: np.ndarray, max_errors: int, length: int):
    """Solve the columns that have at most `max_errors` errors; leave the rest pending.

    Returns (settled, failed, (column, degree, error)): settled columns are decided (corrected
    or failed); unsettled ones need a larger tier.
    """
    rows = max_errors + 1
    iterations = 2 * max_errors
    locator, errors = _berlekamp_massey(syndrome_logs, iterations, rows)
    settled = errors <= max_errors
    if iterations < PARITY:
        # The locator found from the first 2m syndromes is the final one iff it also
        # generates the remaining ones (BM's later discrepancies would all be zero).
        locator_logs = gf.LOG[locator]
        padded = _zero_led(syndrome_logs, max_errors)
        residue = np.zeros((PARITY - iterations, syndrome_logs.shape[1]), dtype=np.uint8)
        for i in range(rows):
            start = max_errors + iterations - i
            residue ^= gf.EXP[locator_logs[i] + padded[start : start + PARITY - iterations]]
        settled &= ~residue.any(axis=0)
    columns = np.flatnonzero(settled)
    locator = locator[:, columns]
    errors = errors[columns]
    column, degree, error, failed_local = _chien_forney(
        locator, errors, syndrome_logs[:, columns], length
    )
    failed = np.zeros(settled.size, dtype=bool)
    failed[columns[failed_local]] = True
    return settled, failed, (columns[column], degree, error)


@cache
def _chien_table() -> np.ndarray:
    """(T + 1, 256, 256): [k, v, i] = v * b^(-i k) for i < 255, to evaluate locators at b^-i.

    Column 255 is 0: a locator's value there is its constant term, never zero, so the
    padding (which makes rows 32 whole uint64) never looks like a root.
    """
    k = np.arange(T + 1)[:, None, None]
    i = np.arange(N)[None, None, :]
    exponents = (-ROOT_STEP * i * k) % gf.ORDER
    table = np.zeros((T + 1, 256, 256), dtype=np.uint8)
    table[:, :, :N] = gf.EXP[gf.LOG[np.arange(256)][None, :, None] + exponents]
    return table


def _zero_bytes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the zero bytes of (R, 256) uint8, looking at 8 bytes at a time."""
    words = values.view(np.uint64)
    ones, highs = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)
    row, word = np.nonzero((words - ones) & ~words & highs)  # words with a zero byte
    candidates = values.reshape(-1, 32, 8)[row, word] == 0
    hit, byte = np.nonzero(candidates)
    return row[hit], word[hit] * 8 + byte


def _chien_forney(locator: np.ndarray, errors: np.ndarray, syndrome_logs: np.ndarray, length):
    """Roots of each locator among the sent positions, and the error value at each root.

    Returns (column, degree, error, failed): failed marks columns whose locator does not have
    exactly `errors` distinct roots inside the codeword, or gives a zero error value.
    """
    rows, count = locator.shape
    table = _chien_table()
    values = np.empty((count, 256), dtype=np.uint8)
    values[:] = locator[0][:, None]
    scratch = np.empty_like(values)
    for k in range(1, rows):
        np.bitwise_xor(values, table[k].take(locator[k], axis=0, out=scratch), out=values)
    values[:, length:] = 1  # never sent: no root may be found there
    column, degree = _zero_bytes(values)
    roots = np.bincount(column, minlength=count)
    failed = (roots != errors) | (errors == 0)

    # Forney: Y = X^(1 - 112) * Omega(X^-1) / Lambda'(X^-1) with X = b^i,
    # Omega(x) = S(x) Lambda(x) mod x^(rows - 1) (deg Omega < number of errors).
    locator_logs = gf.LOG[locator]
    omega = np.zeros((rows - 1, count), dtype=np.uint8)
    for k in range(rows - 1):
        for j in range(k + 1):
            omega[k] ^= gf.EXP[locator_logs[j] + syndrome_logs[k - j]]
    omega_logs = gf.LOG[omega]
    powers = np.arange(rows)[:, None]
    step = (-ROOT_STEP * degree)[None, :] % gf.ORDER  # log X^-1 per root
    inverse_powers = (step * powers) % gf.ORDER  # log X^-k, (rows, R)
    omega_value = np.bitwise_xor.reduce(
        gf.EXP[omega_logs[:, column] + inverse_powers[: rows - 1]], axis=0
    )
    odd = np.arange(1, rows, 2)
    derivative = np.bitwise_xor.reduce(
        gf.EXP[locator_logs[odd][:, column] + inverse_powers[odd - 1]], axis=0
    )
    log_x = (ROOT_STEP * degree) % gf.ORDER
    error_logs = ((1 - FIRST_ROOT) * log_x + gf.LOG[omega_value] - gf.LOG[derivative]) % gf.ORDER
    bad_root = (omega_value == 0) | (derivative == 0)
    failed[column[bad_root]] = True
    return column, degree, gf.EXP[error_logs], failed


@cache
def codec(dual_basis: bool = False) -> ReedSolomon:
    """The shared codec for one symbol representation (its tables take ~0.1 s to build)."""
    return ReedSolomon(dual_basis)
