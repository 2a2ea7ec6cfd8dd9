"""What else a security operation covers besides its target's data (RFC 9173 3.7 and 4.7.2).

BIB-HMAC-SHA2's integrity scope flags and BCB-AES-GCM's AAD scope flags share one layout: bit 0
adds the primary block, bit 1 the target block's header (type, number, flags), bit 2 the
security block's own header. Both contexts start their input with the flags themselves, then
the selected parts, as a CBOR sequence; `scope_prefix` builds that shared start.
"""

from __future__ import annotations

from enum import IntFlag
from functools import lru_cache

from dtn.bundle import BlockFlags, CanonicalBlock, cbor

from .errors import Reason, SecurityError


class Scope(IntFlag):
    PRIMARY_BLOCK = 0x1
    TARGET_HEADER = 0x2
    SECURITY_HEADER = 0x4


# Plain ints on the per-bundle path: IntFlag arithmetic costs a microsecond per operation.
_PRIMARY_BLOCK = int(Scope.PRIMARY_BLOCK)
_TARGET_HEADER = int(Scope.TARGET_HEADER)
_SECURITY_HEADER = int(Scope.SECURITY_HEADER)
FULL_SCOPE = _PRIMARY_BLOCK | _TARGET_HEADER | _SECURITY_HEADER
_FULL_SCOPE_HEAD = cbor.uint(FULL_SCOPE)

# RFC 9172 4: reserved block processing flags are 0 in the canonical form of a block header.
_ASSIGNED_BLOCK_FLAGS = int(
    BlockFlags.REPLICATE_IN_FRAGMENTS
    | BlockFlags.REPORT_IF_UNPROCESSABLE
    | BlockFlags.DELETE_BUNDLE_IF_UNPROCESSABLE
    | BlockFlags.DISCARD_IF_UNPROCESSABLE
)


@lru_cache(maxsize=1024)  # a few block numbers and flag sets recur in every bundle
def block_header(block_type: int, number: int, flags: int) -> bytes:
    """The canonical header of a canonical block: type code, number, flags, as CBOR uints."""
    return cbor.uint(block_type) + cbor.uint(number) + cbor.uint(flags & _ASSIGNED_BLOCK_FLAGS)


def check_scope(scope: object, what: str) -> int:
    if not isinstance(scope, int) or scope & ~FULL_SCOPE:
        raise SecurityError(
            Reason.MALFORMED,
            f"{what}: scope flags {scope!r} are not a "
            "combination of the three RFC 9173 flags (0..7)",
        )
    return scope


def scope_prefix(
    scope: int, primary: bytes, target: CanonicalBlock | None, security_header: bytes
) -> bytes:
    """The flags, then the parts they select. `target` None means the primary block: its own
    encoding is the target data, so the primary and target header flags add nothing
    (RFC 9173 3.7)."""
    if scope == FULL_SCOPE and target is not None:  # the default, on every bundle
        return b"".join(
            (
                _FULL_SCOPE_HEAD,
                primary,
                block_header(target.block_type, target.number, target.flags),
                security_header,
            )
        )
    target_header = (
        None if target is None else block_header(target.block_type, target.number, target.flags)
    )
    head, tail = scope_frame(scope, target_header, security_header)
    return head if tail is None else b"".join((head, primary, tail))


def scope_frame(
    scope: int, target_header: bytes | None, security_header: bytes
) -> tuple[bytes, bytes | None]:
    """scope_prefix without the primary block: (head, tail) to go around the encoded primary
    block, or (the whole prefix, None) when the scope leaves the primary block out.
    `target_header` None means the primary block is the target."""
    head = [cbor.uint(scope)]
    tail: list[bytes] = []
    with_primary = target_header is not None and bool(scope & _PRIMARY_BLOCK)
    if target_header is not None and scope & _TARGET_HEADER:
        (tail if with_primary else head).append(target_header)
    if scope & _SECURITY_HEADER:
        (tail if with_primary else head).append(security_header)
    return b"".join(head), (b"".join(tail) if with_primary else None)


class ScopeFrames(dict):
    """The frames (scope_frame) of one kind of security block under one scope, by the headers
    they frame: `frames[target type, target number, target flags, number, flags]` (the target
    fields None for the primary block) is (head, tail). A template meets the same few header
    sets bundle after bundle, so each frame is made once; a hit is one dict lookup."""

    __slots__ = ("scope", "_security_type")
    _MAX = 256  # header sets kept; received blocks choose theirs, so the cache is bounded

    def __init__(self, scope: int, security_type: int) -> None:
        super().__init__()
        self.scope, self._security_type = scope, security_type

    def __missing__(self, key: tuple) -> tuple[bytes, bytes | None]:
        target_type, target_number, target_flags, number, flags = key
        if len(self) >= self._MAX:
            self.clear()
        target_header = (
            None if target_type is None else block_header(target_type, target_number, target_flags)
        )
        header = block_header(self._security_type, number, flags)
        frame = self[key] = scope_frame(self.scope, target_header, header)
        return frame
