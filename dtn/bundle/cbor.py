"""A strict, bounded CBOR reader and a deterministic CBOR writer for the bundle codec.

Only what RFC 9171 uses: unsigned integers, byte and text strings, arrays, booleans. The reader
rejects non-shortest heads (RFC 9171 §4.1 requires core deterministic encoding for those), checks
every declared length against the bytes present before slicing, and bounds nesting. It accepts
indefinite-length arrays and text strings, which RFC 9171 permits. Truncation surfaces as an
IndexError from the caller's view of `data`; `Bundle.decode` turns every failure into BundleError.
Messages about the CBOR itself cite the RFC 9171 rules they break (NOT_CBOR, NOT_SHORTEST); the
callers' `what` labels cite the rule of the field being read.
"""

from __future__ import annotations

import struct

from .errors import BundleError

MAX_NESTING = 16

UINT, NEGINT, BYTES, TEXT, ARRAY, MAP, TAG, SIMPLE = range(8)
BREAK = 0xFF
INDEFINITE = -1
NOT_CBOR = "not well-formed CBOR (RFC 9171 §4.1, §5.6 step 3)"
NOT_SHORTEST = "not in core deterministic encoding (RFC 9171 §4.1)"
_MAJOR_NAMES = ("unsigned integer", "negative integer", "byte string", "text string", "array",
                "map", "tag", "simple value/float")


def major_name(major: int) -> str:
    return _MAJOR_NAMES[major]


def read_head(data: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument or INDEFINITE, position after the head)."""
    initial = data[pos]
    major = initial >> 5
    info = initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info == 24:
        value = data[pos + 1]
        if value < 24:
            raise BundleError(f"non-shortest CBOR head at byte {pos}: {NOT_SHORTEST}")
        return major, value, pos + 2
    if info in (25, 26, 27):
        size = 1 << (info - 24)
        end = pos + 1 + size
        if end > len(data):
            raise BundleError(f"CBOR head at byte {pos} runs past the end of the input: {NOT_CBOR}")
        value = int.from_bytes(data[pos + 1:end], "big")
        if value < (1 << (4 * size)):
            raise BundleError(f"non-shortest CBOR head at byte {pos}: {NOT_SHORTEST}")
        return major, value, end
    if info == 31 and major in (BYTES, TEXT, ARRAY, MAP):
        return major, INDEFINITE, pos + 1
    raise BundleError(f"malformed CBOR head 0x{initial:02x} at byte {pos}: {NOT_CBOR}")


def read_uint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    major, value, pos2 = read_head(data, pos)
    if major != UINT:
        raise BundleError(f"{what} must be an unsigned integer, found {major_name(major)}"
                          f" at byte {pos}")
    return value, pos2


def read_bytes(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """A definite-length byte string: (start of its content, end of its content)."""
    major, length, start = read_head(data, pos)
    if major != BYTES:
        raise BundleError(f"{what} must be a byte string, found {major_name(major)} at byte {pos}")
    if length == INDEFINITE:
        raise BundleError(f"{what} must be a definite-length byte string (byte {pos})")
    return start, _content_end(data, start, length, pos, what)


def _content_end(data: bytes, start: int, length: int, pos: int, what: str) -> int:
    """End of a string's content, checked against the bytes present."""
    end = start + length
    if end > len(data):
        raise BundleError(f"{what} declares {length} bytes at byte {pos} but only "
                          f"{len(data) - start} remain: {NOT_CBOR}")
    return end


def read_text(data: bytes, pos: int, what: str) -> tuple[str, int]:
    major, length, start = read_head(data, pos)
    if major != TEXT:
        raise BundleError(f"{what} must be a text string, found {major_name(major)} at byte {pos}")
    if length != INDEFINITE:
        end = _content_end(data, start, length, pos, what)
        raw = data[start:end]
    else:
        chunks = []
        end = start
        while data[end] != BREAK:
            chunk_start, chunk_end = _definite_chunk(data, end, TEXT, what)
            chunks.append(data[chunk_start:chunk_end])
            end = chunk_end
        end += 1
        raw = b"".join(chunks)
    try:
        return bytes(raw).decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise BundleError(f"{what} at byte {pos} is not valid UTF-8: {NOT_CBOR}") from exc


def _definite_chunk(data: bytes, pos: int, major_wanted: int, what: str) -> tuple[int, int]:
    major, length, start = read_head(data, pos)
    if major != major_wanted or length == INDEFINITE:
        raise BundleError(f"{what}: bad chunk in indefinite-length string at byte {pos}")
    end = start + length
    if end > len(data):
        raise BundleError(f"{what}: chunk at byte {pos} runs past the end of the input: {NOT_CBOR}")
    return start, end


def read_array(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(item count or INDEFINITE, position of the first item)."""
    major, count, pos2 = read_head(data, pos)
    if major != ARRAY:
        raise BundleError(f"{what} must be an array, found {major_name(major)} at byte {pos}")
    if count != INDEFINITE and count > len(data) - pos2:
        raise BundleError(f"{what} declares {count} items at byte {pos}, more than bytes "
                          f"remain: {NOT_CBOR}")
    return count, pos2


def read_array_of(data: bytes, pos: int, size: int, what: str) -> tuple[int, int]:
    """An array that must hold `size` items (or be indefinite-length): (count, first item)."""
    count, first = read_array(data, pos, what)
    if count not in (size, INDEFINITE):
        raise BundleError(f"{what} must be a {size}-item array, found {count} items at byte {pos}")
    return count, first


def close_array(data: bytes, count: int, pos: int, what: str) -> int:
    """Position past an array whose items end at `pos`: an indefinite one must end there."""
    if count == INDEFINITE:
        if data[pos] != BREAK:
            raise BundleError(f"{what} has more items than allowed (byte {pos})")
        return pos + 1
    return pos


def skip_item(data: bytes, pos: int, depth: int = 0) -> int:
    """Position past one well-formed data item (any type), bounded in nesting."""
    if depth > MAX_NESTING:
        raise BundleError(f"CBOR nesting deeper than {MAX_NESTING} at byte {pos}")
    major, arg, pos2 = read_head(data, pos)
    if major in (UINT, NEGINT):
        return pos2
    if major in (BYTES, TEXT):
        if arg == INDEFINITE:
            while data[pos2] != BREAK:
                pos2 = _definite_chunk(data, pos2, major, "string")[1]
            return pos2 + 1
        end = pos2 + arg
        if end > len(data):
            raise BundleError(f"string at byte {pos} runs past the end of the input: {NOT_CBOR}")
        return end
    if major in (ARRAY, MAP):
        per_entry = 2 if major == MAP else 1
        if arg == INDEFINITE:
            while data[pos2] != BREAK:
                for _ in range(per_entry):
                    pos2 = skip_item(data, pos2, depth + 1)
            return pos2 + 1
        if arg * per_entry > len(data) - pos2:
            raise BundleError(f"container at byte {pos} declares more items than bytes remain: "
                              f"{NOT_CBOR}")
        for _ in range(arg * per_entry):
            pos2 = skip_item(data, pos2, depth + 1)
        return pos2
    if major == TAG:
        return skip_item(data, pos2, depth + 1)
    if arg in (20, 21, 22, 23) and data[pos] < 0xF8:
        return pos2  # false, true, null, undefined
    if data[pos] in (0xF9, 0xFA, 0xFB):
        return pos2  # floats: well-formed, the caller decides whether they are allowed
    raise BundleError(f"unsupported CBOR simple value at byte {pos}")


# --- writer -----------------------------------------------------------------------------------

_HEAD16 = struct.Struct(">BH").pack
_HEAD32 = struct.Struct(">BI").pack
_HEAD64 = struct.Struct(">BQ").pack


def head(major: int, value: int) -> bytes:
    """The shortest head for a major type and argument (RFC 8949 4.2.1)."""
    base = major << 5
    if value < 24:
        if value < 0:
            raise ValueError(f"{value} does not fit a CBOR head")
        return bytes((base | value,))
    if value < 0x100:
        return bytes((base | 24, value))
    if value < 0x10000:
        return _HEAD16(base | 25, value)
    if value < 0x100000000:
        return _HEAD32(base | 26, value)
    if value < 0x10000000000000000:
        return _HEAD64(base | 27, value)
    raise ValueError(f"{value} does not fit a CBOR head")


_SMALL_UINTS = [head(UINT, i) for i in range(256)]


def uint(value: int) -> bytes:
    if 0 <= value < 256:
        return _SMALL_UINTS[value]
    if value < 0:
        raise ValueError(f"{value} is not an unsigned integer")
    if value < 0x10000:
        return _HEAD16(25, value)
    if value < 0x100000000:
        return _HEAD32(26, value)
    if value < 0x10000000000000000:
        return _HEAD64(27, value)
    raise ValueError(f"{value} does not fit a CBOR head")


def byte_string(value: bytes) -> bytes:
    return head(BYTES, len(value)) + value


def text_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return head(TEXT, len(raw)) + raw
