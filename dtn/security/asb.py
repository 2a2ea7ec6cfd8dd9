"""The Abstract Security Block (RFC 9172 3.6): the block-type-specific data of a BIB or a BCB.

An ASB is a CBOR sequence (not an array) of: security targets (array of block numbers), security
context id (int), security context flags (bit 0: parameters present), security source (EID),
the parameters if flagged (array of [id, value]), and the results (one array of [id, value]
per target, in target order).

The decoder is strict and bounded: it reuses the bundle codec's CBOR reader, so every length is
checked before slicing and nesting is bounded. Parameter and result values are kept as `int` (for
an unsigned integer), `bytes` (for a byte string) or `RawValue` (any other item, kept encoded so
a security context that does not expect it can say so).

The blocks a node receives from one security source differ from bundle to bundle only in the
contents of byte strings (IV, tag, HMAC, wrapped key), so the decoder remembers the layout of
the ASBs it parsed: their bytes with those contents cut out. An ASB whose bytes match a layout
outside the cut-outs has the same structure, already checked, and is read with a few slice
compares instead of a parse, a tenth of the cost. Anything else takes the strict parser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dtn.bundle import EID, BundleError, cbor
from dtn.bundle.eid import decode_eid

from .errors import Reason, SecurityError

PARAMETERS_PRESENT = 0x01  # the only security context flag RFC 9172 assigns


@dataclass(frozen=True, slots=True)
class RawValue:
    """A parameter or result value that is neither an unsigned integer nor a byte string."""

    encoded: bytes


Value = int | bytes | RawValue
T = TypeVar("T")


@dataclass(slots=True)
class AbstractSecurityBlock:
    targets: list[int]
    context_id: int
    source: EID
    parameters: dict[int, Value]
    results: list[dict[int, Value]]  # one per target, in the order of `targets`

    def encode(self) -> bytes:
        parts = [cbor.head(cbor.ARRAY, len(self.targets))]
        parts.extend(map(cbor.uint, self.targets))
        parts.append(_encode_int(self.context_id))
        parts.append(cbor.uint(PARAMETERS_PRESENT if self.parameters else 0))
        parts.append(self.source.to_cbor())
        if self.parameters:
            _append_pairs(parts, self.parameters)
        parts.append(cbor.head(cbor.ARRAY, len(self.results)))
        for result in self.results:
            _append_pairs(parts, result)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, what: str = "security block") -> AbstractSecurityBlock:
        """Parse an ASB; SecurityError(MALFORMED) for anything RFC 9172 3.6 does not allow."""
        for layout in _layouts.get(len(data), ()):
            asb = layout.match(data)
            if asb is not None:
                return asb
        spans: list[tuple[int, int]] = []
        try:
            asb = _decode(data, what, spans)
        except BundleError as exc:
            raise SecurityError(Reason.MALFORMED, f"{what}: {exc}") from None
        except IndexError:
            raise SecurityError(Reason.MALFORMED, f"{what}: data is truncated") from None
        _remember(data, asb, spans)
        return asb


@dataclass(frozen=True, slots=True)
class _Layout:
    """A parsed ASB's bytes with the contents of its byte-string values cut out."""

    fixed: tuple[tuple[int, int, bytes], ...]  # (start, end, bytes) of everything else
    holes: tuple[tuple[int, int], ...]  # the byte-string contents, in parse order
    asb: AbstractSecurityBlock  # the parsed block; its byte-string values are replaced

    def match(self, data: bytes) -> AbstractSecurityBlock | None:
        for start, end, fixed in self.fixed:
            if data[start:end] != fixed:
                return None
        values = iter([data[start:end] for start, end in self.holes])
        asb = self.asb
        return AbstractSecurityBlock(
            list(asb.targets),
            asb.context_id,
            asb.source,
            {
                key: next(values) if value.__class__ is bytes else value
                for key, value in asb.parameters.items()
            },
            [
                {
                    key: next(values) if value.__class__ is bytes else value
                    for key, value in result.items()
                }
                for result in asb.results
            ],
        )


_layouts: dict[int, list[_Layout]] = {}  # by ASB length
_LAYOUTS_MAX = 64  # a node sees a few per security source; past this, start over


def _remember(data: bytes, asb: AbstractSecurityBlock, holes: list[tuple[int, int]]) -> None:
    """Keep the layout of a strictly parsed ASB (a copy: the caller owns `asb`)."""
    if sum(map(len, _layouts.values())) >= _LAYOUTS_MAX:
        _layouts.clear()
    fixed = []
    position = 0
    for start, end in [*holes, (len(data), len(data))]:
        fixed.append((position, start, bytes(data[position:start])))
        position = end
    kept = AbstractSecurityBlock(
        list(asb.targets),
        asb.context_id,
        asb.source,
        dict(asb.parameters),
        [dict(result) for result in asb.results],
    )
    _layouts.setdefault(len(data), []).append(_Layout(tuple(fixed), tuple(holes), kept))


def _decode(data: bytes, what: str, spans: list[tuple[int, int]]) -> AbstractSecurityBlock:
    """The strict parse. `spans` collects where byte-string values lie, in parse order."""
    targets, pos = _read_array(data, 0, f"{what} security targets", _read_target)
    if not targets:
        raise BundleError("security targets must not be empty (RFC 9172 3.6)")
    if len(set(targets)) != len(targets):
        raise BundleError(f"security targets list a block twice: {targets}")
    context_id, pos = _read_int(data, pos, "security context id")
    flags, pos = cbor.read_uint(data, pos, "security context flags")
    source, pos = decode_eid(data, pos, "security source")
    parameters: dict[int, Value] = {}
    if flags & PARAMETERS_PRESENT:
        parameters, pos = _read_pairs(data, pos, "security context parameters", spans)
    results, pos = _read_array(
        data, pos, "security results", lambda d, p: _read_pairs(d, p, "security result set", spans)
    )
    if len(results) != len(targets):
        raise BundleError(
            f"{len(results)} result sets for {len(targets)} security targets "
            "(RFC 9172 3.6: one per target)"
        )
    if pos != len(data):
        raise BundleError(f"{len(data) - pos} bytes after the abstract security block")
    return AbstractSecurityBlock(targets, context_id, source, parameters, results)


def _read_array(
    data: bytes, pos: int, what: str, read_item: Callable[[bytes, int], tuple[T, int]]
) -> tuple[list[T], int]:
    count, pos = cbor.read_array(data, pos, what)
    items = []
    if count == cbor.INDEFINITE:
        while data[pos] != cbor.BREAK:
            item, pos = read_item(data, pos)
            items.append(item)
        return items, pos + 1
    for _ in range(count):
        item, pos = read_item(data, pos)
        items.append(item)
    return items, pos


def _read_target(data: bytes, pos: int) -> tuple[int, int]:
    return cbor.read_uint(data, pos, "security target")


def _read_int(data: bytes, pos: int, what: str) -> tuple[int, int]:
    major, value, end = cbor.read_head(data, pos)
    if major == cbor.UINT:
        return value, end
    if major == cbor.NEGINT:
        return -1 - value, end
    raise BundleError(f"{what} must be an integer, found {cbor.major_name(major)} at byte {pos}")


def _read_pairs(
    data: bytes, pos: int, what: str, spans: list[tuple[int, int]]
) -> tuple[dict[int, Value], int]:
    pairs, pos = _read_array(data, pos, what, lambda d, p: _read_pair(d, p, spans))
    ids = [pair_id for pair_id, _ in pairs]
    if len(set(ids)) != len(ids):
        raise BundleError(f"{what} repeat an id: {ids}")
    return dict(pairs), pos


def _read_pair(
    data: bytes, pos: int, spans: list[tuple[int, int]]
) -> tuple[tuple[int, Value], int]:
    count, item = cbor.read_array(data, pos, "[id, value] pair")
    if count not in (2, cbor.INDEFINITE):
        raise BundleError(f"an [id, value] pair must have 2 items, found {count} at byte {pos}")
    pair_id, item = cbor.read_uint(data, item, "parameter or result id")
    major = data[item] >> 5
    if major == cbor.UINT:
        value, item = cbor.read_uint(data, item, "value")
    elif major == cbor.BYTES:
        start, item = cbor.read_bytes(data, item, "value")
        value = bytes(data[start:item])
        spans.append((start, item))
    else:
        end = cbor.skip_item(data, item)
        value, item = RawValue(bytes(data[item:end])), end
    if count == cbor.INDEFINITE:
        if data[item] != cbor.BREAK:
            raise BundleError(f"an [id, value] pair at byte {pos} has more than 2 items")
        item += 1
    return (pair_id, value), item


def _encode_int(value: int) -> bytes:
    return cbor.uint(value) if value >= 0 else cbor.head(cbor.NEGINT, -1 - value)


def _append_pairs(parts: list[bytes], pairs: dict[int, Value]) -> None:
    parts.append(cbor.head(cbor.ARRAY, len(pairs)))
    for pair_id, value in pairs.items():
        parts.append(b"\x82")
        parts.append(cbor.uint(pair_id))
        if isinstance(value, bytes):
            parts.append(cbor.head(cbor.BYTES, len(value)))
            parts.append(value)
        elif isinstance(value, RawValue):
            parts.append(value.encoded)
        else:
            parts.append(cbor.uint(value))
