"""BIB-HMAC-SHA2, the RFC 9173 default integrity context (security context id 1).

Parameters: 1 SHA variant (5, 6, 7 for HMAC-SHA-256/384/512; 6 when absent), 2 the HMAC key
wrapped with AES key wrap (RFC 3394) under the key-encryption key, 3 integrity scope flags
(7 when absent). Result: 1 the HMAC of the integrity-protected plaintext (IPPT).

The IPPT is the scope prefix (see scope.py) followed by the target's data as a CBOR byte string;
for the primary block, the data is the primary block's canonical encoding (RFC 9173 3.7).
The HMAC is fed in pieces, so a large target is never copied into the IPPT.

`BibTemplate` is the per-bundle path for a security source that signs one target of bundle after
bundle alike (the payload pipeline): see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from dtn.bundle import EID, BlockType, CanonicalBlock, cbor

from .asb import Value, template_layout
from .errors import Reason, SecurityError
from .keywrap import unwrap_key, wrap_key
from .parameters import SharedParameters
from .scope import FULL_SCOPE, ScopeFrames

CONTEXT_ID = 1

_PARAM_SHA_VARIANT = 1
_PARAM_WRAPPED_KEY = 2
_PARAM_SCOPE = 3
_RESULT_HMAC = 1
_BIB = BlockType.BIB


class ShaVariant(IntEnum):
    HMAC_SHA_256 = 5
    HMAC_SHA_384 = 6
    HMAC_SHA_512 = 7

    @property
    def digest_size(self) -> int:
        return _HASHES[self].digest_size


_HASHES = {
    ShaVariant.HMAC_SHA_256: hashes.SHA256(),
    ShaVariant.HMAC_SHA_384: hashes.SHA384(),
    ShaVariant.HMAC_SHA_512: hashes.SHA512(),
}
DEFAULT_VARIANT = ShaVariant.HMAC_SHA_384  # RFC 9173 3.3.1: when the parameter is absent
_SHARED = SharedParameters(
    "BIB-HMAC-SHA2",
    DEFAULT_VARIANT,
    variant_id=_PARAM_SHA_VARIANT,
    wrapped_key_id=_PARAM_WRAPPED_KEY,
    scope_id=_PARAM_SCOPE,
    variant_name="SHA",
    known_variants="5, 6, 7",
)


class BibParameters(NamedTuple):
    variant: ShaVariant = DEFAULT_VARIANT
    scope: int = FULL_SCOPE
    wrapped_key: bytes | None = None

    def to_asb(self) -> dict[int, Value]:
        """Variant and scope are always written, as the RFC 9173 examples do."""
        return _SHARED.write({}, self.variant, self.scope, self.wrapped_key)

    @classmethod
    def from_asb(cls, parameters: dict[int, Value], what: str) -> BibParameters:
        _SHARED.check_ids(parameters, what)
        variant, scope, wrapped = _SHARED.read(parameters, what)
        return cls(variant, scope, wrapped)

    def hmac_key(self, key: bytes, what: str) -> bytes:
        """The HMAC key: `key` itself, or the wrapped key unwrapped with `key`."""
        if self.wrapped_key is None:
            return key
        return unwrap_key(key, self.wrapped_key, what)


def _hmac(key: bytes, variant: ShaVariant, prefix: bytes, data: bytes | memoryview) -> hmac.HMAC:
    return _fed(hmac.HMAC(key, _HASHES[variant]), prefix, data)


def _fed(mac: hmac.HMAC, prefix: bytes, data: bytes | memoryview) -> hmac.HMAC:
    """`mac` (keyed, nothing fed yet) fed the IPPT: the scope prefix, then the target data as
    a CBOR byte string (RFC 9173 3.7)."""
    mac.update(prefix)
    mac.update(cbor.head(cbor.BYTES, len(data)))
    mac.update(data)
    return mac


def _check(mac: hmac.HMAC, expected: bytes, what: str) -> None:
    try:
        mac.verify(expected)
    except InvalidSignature:
        raise SecurityError(
            Reason.INTEGRITY_FAILED,
            f"{what}: HMAC mismatch (the target was changed, or the key is not the signer's)",
        ) from None


def sign(
    key: bytes, variant: ShaVariant, prefix: bytes, data: bytes | memoryview
) -> dict[int, Value]:
    """The result set for one target: its HMAC over the IPPT."""
    return {_RESULT_HMAC: _hmac(key, variant, prefix, data).finalize()}


def verify(
    key: bytes,
    variant: ShaVariant,
    prefix: bytes,
    data: bytes | memoryview,
    result: dict[int, Value],
    what: str,
) -> None:
    expected = result.get(_RESULT_HMAC)
    if not isinstance(expected, bytes) or len(result) != 1:
        raise SecurityError(
            Reason.MALFORMED,
            f"{what}: the result set must hold exactly one HMAC (result id 1, a byte string)",
        )
    _check(_hmac(key, variant, prefix, data), expected, what)


class BibTemplate:
    """BIB-HMAC-SHA2 over one target, bundle after bundle, for one security source, key and set
    of parameters: what the payload pipeline adds to every bundle it signs.

    The ASB is encoded once, by the generic encoder, into a layout whose holes are the wrapped
    key (with key wrap) and the HMAC, so a block written from the template has the bytes
    bpsec.add_bib writes. The RFC 9172 rules about the bundle's other blocks are the caller's to
    check; bpsec.add_bib is the checked, general path."""

    __slots__ = ("variant", "scope", "_key", "_key_wrap", "_keyed", "_layout", "_prefix")

    def __init__(
        self,
        key: bytes,
        security_source: EID,
        target: int,
        *,
        variant: ShaVariant = DEFAULT_VARIANT,
        scope: int = FULL_SCOPE,
        key_wrap: bool = False,
    ) -> None:
        """`key` is the HMAC key, or with `key_wrap` the key-encryption key for a fresh HMAC key
        per block. `target` 0 is the primary block."""
        self.variant, self.scope, self._key, self._key_wrap = variant, scope, key, key_wrap
        self._prefix = ScopeFrames(scope, _BIB)
        # Keyed once: a copy of it costs a third of keying an HMAC afresh for every bundle.
        self._keyed = None if key_wrap else hmac.HMAC(key, _HASHES[variant])
        wrapped = bytes(variant.digest_size + 8) if key_wrap else None  # RFC 3394 adds 8 bytes
        parameters = BibParameters(variant, scope, wrapped)
        self._layout = template_layout(
            target,
            CONTEXT_ID,
            security_source,
            parameters.to_asb(),
            _RESULT_HMAC,
            variant.digest_size,
        )

    def _ippt(
        self, target: CanonicalBlock | None, primary: bytes, number: int, flags: int
    ) -> tuple[bytes, bytes | memoryview]:
        """(scope prefix, target data): what this template's BIB as block `number` with
        `flags` is computed over, with the HMAC's byte-string head between them."""
        header = (
            (None, None, None)
            if target is None
            else (target.block_type, target.number, target.flags)
        )
        head, tail = self._prefix[(*header, number, flags)]
        prefix = head if tail is None else b"".join((head, primary, tail))
        return prefix, primary if target is None else target.data_view

    def check(self, bib: CanonicalBlock, target: CanonicalBlock | None, primary: bytes) -> bool:
        """Whether `bib`'s ASB was written from this template (the same targets, security
        source and parameters: only the wrapped key and HMAC are new); if so its HMAC over
        `target` (None: the primary block) is verified, SecurityError as bpsec.accept raises
        it. `primary` is the encoded primary block."""
        holes = self._layout.match(bib.data)
        if holes is None:
            return False
        what = f"BIB (block {bib.number})"
        if self._key_wrap:
            wrapped, mac = holes
            hmac_key = BibParameters(self.variant, self.scope, wrapped).hmac_key(self._key, what)
            keyed = hmac.HMAC(hmac_key, _HASHES[self.variant])
        else:
            (mac,), keyed = holes, self._keyed.copy()
        _check(_fed(keyed, *self._ippt(target, primary, bib.number, bib.flags)), mac, what)
        return True

    def sign(
        self,
        target: CanonicalBlock | None,
        primary: bytes,
        number: int,
        flags: int,
        crc_type: int,
        random_bytes: Callable[[int], bytes],
    ) -> CanonicalBlock:
        """The BIB over `target` (None: the primary block), block `number`, for the caller to
        insert. `primary` is the encoded primary block."""
        if self._key_wrap:
            hmac_key = random_bytes(self.variant.digest_size)
            keyed = hmac.HMAC(hmac_key, _HASHES[self.variant])
            wrapped = (wrap_key(self._key, hmac_key),)
        else:
            keyed, wrapped = self._keyed.copy(), ()
        mac = _fed(keyed, *self._ippt(target, primary, number, flags)).finalize()
        return CanonicalBlock(_BIB, number, self._layout.fill((*wrapped, mac)), flags, crc_type)
