"""The batched RS(255,223) kernel against reedsolo and against codewords we did not make."""

import numpy as np
import pytest
import reedsolo

from dtn.fec import gf, rs

# The C table kernel (fec/_xor.c) as built, before any test swaps it out.
KERNEL = rs._xor_kernel


@pytest.fixture(params=["c", "python"], scope="module", autouse=True)
def xor_path(request):
    """Runs every test here on the C table kernel and on its numpy twin alone."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(rs, "_xor_kernel", None)
        elif KERNEL is None:
            pytest.skip("the C table kernel is not built here")
        yield request.param


# reedsolo set up as the CCSDS code: 'generator' is the primitive element b = ALPHA**11,
# which is 173 (0xAD) as a byte, not 11.
REFERENCE = reedsolo.RSCodec(32, nsize=255, fcr=112, prim=0x187, generator=173, c_exp=8)

# The RS(255,223) CCSDS codeword of data bytes 0x00..0xDE from the tests of
# crozone/ReedSolomonCCSDS (C#, derived from Phil Karn's libfec), in both representations.
KNOWN_DATA = bytes(range(223))
KNOWN_PARITY = {
    False: "2fbd4fb4748494b9acd554627212eeb3ebed41191de1d36320ea49290b25abcf",
    True: "4ffb92dd557ec67f27fb8982cf58f8fd028ad117fcef6b2793d0418826578651",
}
# The 16-error pattern of the same tests: (position, XOR value).
KNOWN_ERRORS = [
    (0, 0x58), (2, 0xA3), (5, 0xCD), (14, 0x0D), (50, 0xCA), (51, 0x96), (80, 0x1B),
    (89, 0xA2), (91, 0xAC), (100, 0xB9), (145, 0xE5), (176, 0x94), (185, 0xC3),
    (214, 0x97), (231, 0x7A), (250, 0x29),
]  # fmt: skip


def reference_decode(word: bytes) -> bytes | None:
    """reedsolo's corrected codeword, or None when it gives up."""
    try:
        return bytes(REFERENCE.decode(word)[1])
    except reedsolo.ReedSolomonError:
        return None


def to_conventional(word: np.ndarray, dual_basis: bool) -> np.ndarray:
    return gf.FROM_DUAL[word] if dual_basis else word


def random_words(rng, count: int, length: int, dual_basis: bool = False) -> np.ndarray:
    data = rng.integers(0, 256, (count, length - rs.PARITY), dtype=np.uint8)
    return np.concatenate([data, rs.codec(dual_basis).parity(data)], axis=1)


def add_errors(rng, words: np.ndarray, errors: int) -> np.ndarray:
    damaged = words.copy()
    for row in damaged:
        where = rng.choice(row.size, errors, replace=False)
        row[where] ^= rng.integers(1, 256, errors, dtype=np.uint8)
    return damaged


def decode(received: np.ndarray, dual_basis: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Our kernel on whole received words: (corrected words, mask of words it gave up on)."""
    codec = rs.codec(dual_basis)
    length = received.shape[1]
    data_len = length - rs.PARITY
    damaged = np.flatnonzero(codec.damaged(received))
    fixed = received.copy()
    failed = np.zeros(len(received), dtype=bool)
    if damaged.size:
        words = received[damaged]
        remainders = codec.remainders(words[:, :data_len], words[:, data_len:])
        corrections = codec.correct(remainders, length)
        fixed[damaged[corrections.codeword], corrections.position] ^= corrections.error
        failed[damaged[corrections.failed]] = True
    return fixed, failed


def test_reference_configuration_reproduces_the_known_codeword():
    assert REFERENCE.encode(KNOWN_DATA)[223:].hex() == KNOWN_PARITY[False]


def test_dual_basis_tables_are_the_ccsds_matrices():
    # CCSDS 131.0-B section 4.3.9: rows of T (conventional -> dual) and of its inverse,
    # row i being the image of the conventional bit u(7-i).
    assert [int(gf.TO_DUAL[1 << (7 - i)]) for i in range(8)] == [
        0x8D, 0xEF, 0xEC, 0x86, 0xFA, 0x99, 0xAF, 0x7B,
    ]  # fmt: skip
    assert [int(gf.FROM_DUAL[1 << (7 - i)]) for i in range(8)] == [
        0xC5, 0x42, 0x2E, 0xFD, 0xF0, 0x79, 0xAC, 0xCC,
    ]  # fmt: skip
    assert sorted(gf.TO_DUAL.tolist()) == list(range(256))


@pytest.mark.parametrize("dual_basis", [False, True])
def test_known_codeword_encodes_and_its_16_errors_are_corrected(dual_basis):
    data = np.frombuffer(KNOWN_DATA, dtype=np.uint8)[None, :]
    assert rs.codec(dual_basis).parity(data)[0].tobytes().hex() == KNOWN_PARITY[dual_basis]
    word = np.frombuffer(KNOWN_DATA + bytes.fromhex(KNOWN_PARITY[dual_basis]), np.uint8)
    received = word.copy()
    for position, value in KNOWN_ERRORS:
        received[position] ^= value
    fixed, failed = decode(received[None, :], dual_basis)
    assert not failed[0]
    assert fixed[0].tobytes() == word.tobytes()


@pytest.mark.parametrize("count", [3, 700])  # the one-gather path and the per-position loop
@pytest.mark.parametrize("length", [255, 200, 33])
def test_parity_equals_reedsolo(count, length):
    rng = np.random.default_rng(length * count)
    words = random_words(rng, count, length)
    for row in rng.choice(count, 3, replace=False):
        assert REFERENCE.encode(words[row, : length - 32].tobytes()) == words[row].tobytes()


def test_dual_basis_codewords_are_ccsds_codewords_in_conventional_form():
    words = random_words(np.random.default_rng(1), 5, 255, dual_basis=True)
    for word in to_conventional(words, True):
        assert REFERENCE.encode(word[:223].tobytes()) == word.tobytes()
    # the data symbols are sent as given; only the parity differs between the two forms
    conventional = rs.codec(False).parity(words[:, :223])
    assert not np.array_equal(conventional, words[:, 223:])


@pytest.mark.parametrize("dual_basis", [False, True])
@pytest.mark.parametrize("length", [255, 120])
def test_up_to_16_random_symbol_errors_are_always_corrected(dual_basis, length):
    rng = np.random.default_rng(length + dual_basis)
    for errors in range(rs.T + 1):
        words = random_words(rng, 40, length, dual_basis)
        fixed, failed = decode(add_errors(rng, words, errors), dual_basis)
        assert not failed.any(), errors
        assert np.array_equal(fixed, words), errors


@pytest.mark.parametrize("length", [255, 64])
def test_17_or_more_errors_are_refused_or_land_on_a_codeword(length):
    rng = np.random.default_rng(length)
    for errors in (17, 18, 24, 32, length // 2):
        words = random_words(rng, 100, length)
        received = add_errors(rng, words, errors)
        fixed, failed = decode(received)
        accepted = ~failed
        # whatever is accepted is a codeword within 16 symbols of what was received
        data_len = length - rs.PARITY
        parity = rs.codec(False).parity(fixed[accepted, :data_len])
        assert np.array_equal(parity, fixed[accepted, data_len:])
        assert ((fixed != received).sum(axis=1)[accepted] <= rs.T).all()
        assert failed.mean() > 0.9  # miscorrection is very rare


def test_agrees_with_reedsolo_on_random_received_words():
    rng = np.random.default_rng(7)
    words = random_words(rng, 60, 255)
    received = np.concatenate(
        [add_errors(rng, words[i : i + 1], int(rng.integers(0, 21))) for i in range(60)]
    )
    received[-3:] = rng.integers(0, 256, (3, 255), dtype=np.uint8)  # not near any codeword
    fixed, failed = decode(received)
    for row in range(len(received)):
        expected = reference_decode(received[row].tobytes())
        assert (None if failed[row] else fixed[row].tobytes()) == expected, row


@pytest.mark.parametrize("dual_basis", [False, True])
@pytest.mark.parametrize("count", [50, 600])  # the one-gather path and the per-position loop
def test_every_word_with_up_to_8_errors_is_seen_damaged(dual_basis, count):
    rng = np.random.default_rng(count)
    codec = rs.codec(dual_basis)
    for length in (255, 40):
        words = random_words(rng, count, length, dual_basis)
        assert not codec.damaged(words).any()
        for errors in range(1, 9):
            assert codec.damaged(add_errors(rng, words, errors)).all()
        received = add_errors(rng, words, int(rng.integers(9, 30)))
        remainders = codec.remainders(received[:, : length - 32], received[:, length - 32 :])
        assert np.array_equal(codec.damaged(received), remainders.any(axis=1))


def test_corrections_report_positions_and_error_values():
    rng = np.random.default_rng(3)
    word = random_words(rng, 1, 255)
    received = word.copy()
    received[0, [3, 100, 250]] ^= np.array([0x01, 0x80, 0xFF], dtype=np.uint8)
    codec = rs.codec(False)
    corrections = codec.correct(codec.remainders(received[:, :223], received[:, 223:]), 255)
    found = sorted(zip(corrections.position.tolist(), corrections.error.tolist(), strict=True))
    assert found == [(3, 0x01), (100, 0x80), (250, 0xFF)]


def test_rejects_impossible_shapes():
    codec = rs.codec(False)
    with pytest.raises(ValueError, match="data symbols"):
        codec.parity(np.zeros((1, 224), dtype=np.uint8))
    with pytest.raises(ValueError, match="codeword length"):
        codec.correct(np.zeros((1, 32), dtype=np.uint8), 32)


# -- the C table kernel against its numpy twin ----------------------------------------------


@pytest.fixture
def kernel(xor_path):
    if xor_path == "python":
        pytest.skip("compares the C kernel with the numpy twin: once is enough")
    return KERNEL


def random_tables(rng, positions: int, width: int) -> np.ndarray:
    return rng.integers(0, 2**64, (positions, 256, width), dtype=np.uint64)


def symbol_layouts(rng, count: int, positions: int) -> dict[str, np.ndarray]:
    """The same kind of (count, positions) symbols in the layouts the callers hand in."""
    return {
        "contiguous": rng.integers(0, 256, (count, positions), dtype=np.uint8),
        "every other column": rng.integers(0, 256, (count, 2 * positions), np.uint8)[:, ::2],
        "transposed": rng.integers(0, 256, (positions, count), dtype=np.uint8).T,
        "reversed rows": rng.integers(0, 256, (count, positions), dtype=np.uint8)[::-1],
    }


@pytest.mark.parametrize("width", [1, 4])
@pytest.mark.parametrize("count", [1, 7, 300, 5000])
def test_kernel_equals_the_numpy_twin(kernel, width, count):
    rng = np.random.default_rng(count * 10 + width)
    for positions in (1, 5, 32, 255):
        tables = random_tables(rng, positions, width)
        for layout, symbols in symbol_layouts(rng, count, positions).items():
            out = np.empty((count, width), dtype=np.uint64)
            kernel(tables, symbols, out)
            expected = rs._xor_of_rows_numpy(tables, symbols)
            assert np.array_equal(out, expected), (positions, layout)


def test_kernel_takes_table_slices_and_any_batch_shape(kernel):
    rng = np.random.default_rng(11)
    tables = random_tables(rng, 223, 4)[100:]  # as parity() slices for shortened codewords
    symbols = rng.integers(0, 256, (3, 5, 2 * 123), dtype=np.uint8)[..., 1::2]
    result = rs._xor_of_rows(tables, symbols)
    assert result.shape == (3, 5, 4)
    assert np.array_equal(result, rs._xor_of_rows_numpy(tables, symbols))
    single = rs._xor_of_rows(tables, symbols[1, 2])
    assert single.shape == (4,)
    assert np.array_equal(single, result[1, 2])
    assert rs._xor_of_rows(tables, symbols[:0]).shape == (0, 5, 4)


def test_kernel_with_a_width_it_does_not_specialise(kernel):
    rng = np.random.default_rng(12)
    tables = random_tables(rng, 9, 3)
    symbols = rng.integers(0, 256, (400, 9), dtype=np.uint8)
    out = np.empty((400, 3), dtype=np.uint64)
    kernel(tables, symbols, out)
    assert np.array_equal(out, rs._xor_of_rows_numpy(tables, symbols))


def bad_kernel_inputs() -> dict[str, tuple]:
    tables = np.zeros((3, 256, 4), dtype=np.uint64)
    symbols = np.zeros((5, 3), dtype=np.uint8)
    out = np.zeros((5, 4), dtype=np.uint64)
    readonly = out.copy()
    readonly.flags.writeable = False
    return {
        "tables dtype": (TypeError, tables.view(np.uint32), symbols, out),
        "tables float": (TypeError, tables.view(np.float64), symbols, out),
        "symbols dtype": (TypeError, tables, symbols.view(np.int8), out),
        "out dtype": (TypeError, tables, symbols, out.view(np.int64)),
        "not a buffer": (TypeError, None, symbols, out),
        "a list": (TypeError, tables, symbols.tolist(), out),
        "two arguments": (TypeError, tables, symbols),
        "tables ndim": (ValueError, tables[0], symbols, out),
        "tables rows": (ValueError, np.zeros((3, 255, 4), dtype=np.uint64), symbols, out),
        "tables strided": (ValueError, tables[::2], symbols[:, :2], out),
        "symbols ndim": (ValueError, tables, symbols[0], out),
        "positions": (ValueError, tables, symbols[:, :2], out),
        "out rows": (ValueError, tables, symbols, out[:4]),
        "out width": (ValueError, tables, symbols, np.zeros((5, 1), dtype=np.uint64)),
        "out strided": (ValueError, tables, symbols, np.zeros((5, 8), dtype=np.uint64)[:, ::2]),
        "out read-only": (ValueError, tables, symbols, readonly),
    }


@pytest.mark.parametrize("case", list(bad_kernel_inputs()))
def test_kernel_rejects_bad_inputs(kernel, case):
    error, *args = bad_kernel_inputs()[case]
    with pytest.raises(error):
        kernel(*args)


def test_mismatched_positions_are_refused_not_reshaped(kernel):
    tables = np.zeros((40, 256, 4), dtype=np.uint64)
    with pytest.raises(ValueError, match="positions"):
        rs._xor_of_rows(tables, np.zeros((10, 20), dtype=np.uint8))  # 200 symbols, not 5 x 40
