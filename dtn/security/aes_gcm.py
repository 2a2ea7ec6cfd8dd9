"""BCB-AES-GCM, the RFC 9173 default confidentiality context (security context id 2).

Parameters: 1 initialization vector (12 bytes written here), 2 AES variant (1 A128GCM, 3 A256GCM;
3 when absent), 3 the content-encryption key wrapped with AES key wrap under the key-encryption
key, 4 AAD scope flags (7 when absent). Result: 1 the 16-byte authentication tag. The ciphertext
replaces the target's data in place, same length as the plaintext (RFC 9173 4.4).

The additional authenticated data is the scope prefix alone (see scope.py): no target data.

`BcbTemplate` is the per-bundle path for a security source that encrypts one target of bundle
after bundle alike (the payload pipeline): see its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dtn.bundle import EID, BlockType, CanonicalBlock, PrimaryBlock

from .asb import Value, template_layout
from .errors import Reason, SecurityError
from .keywrap import KEY_ENCRYPTION_KEY_SIZES, unwrap_key, wrap_key
from .parameters import SharedParameters
from .scope import FULL_SCOPE, block_header, scope_frame

CONTEXT_ID = 2
IV_SIZE = 12
TAG_SIZE = 16

_PARAM_IV = 1
_PARAM_AES_VARIANT = 2
_PARAM_WRAPPED_KEY = 3
_PARAM_SCOPE = 4
_RESULT_TAG = 1
_IV_SIZES = range(8, 17)  # 12 is what RFC 9173 recommends and what this module writes
# From this size on the streaming decryptor, which takes the tag separately, is cheaper than
# joining ciphertext and tag into a new buffer for the one-shot AESGCM call.
STREAM_MIN = 128 * 1024
_BCB = BlockType.BCB


class AesVariant(IntEnum):
    A128GCM = 1
    A256GCM = 3

    @property
    def key_size(self) -> int:
        return 16 if self is AesVariant.A128GCM else 32


DEFAULT_VARIANT = AesVariant.A256GCM  # RFC 9173 4.3.2: when the parameter is absent
_SHARED = SharedParameters(
    "BCB-AES-GCM",
    DEFAULT_VARIANT,
    variant_id=_PARAM_AES_VARIANT,
    wrapped_key_id=_PARAM_WRAPPED_KEY,
    scope_id=_PARAM_SCOPE,
    other_ids=(_PARAM_IV,),
    variant_name="AES",
    known_variants="1 and 3",
)


class BcbParameters(NamedTuple):
    iv: bytes
    variant: AesVariant = DEFAULT_VARIANT
    scope: int = FULL_SCOPE
    wrapped_key: bytes | None = None

    def to_asb(self) -> dict[int, Value]:
        """IV, variant and scope are always written, as the RFC 9173 examples do."""
        return _SHARED.write({_PARAM_IV: self.iv}, self.variant, self.scope, self.wrapped_key)

    @classmethod
    def from_asb(cls, parameters: dict[int, Value], what: str) -> BcbParameters:
        _SHARED.check_ids(parameters, what)
        iv = parameters.get(_PARAM_IV)
        if not isinstance(iv, bytes) or len(iv) not in _IV_SIZES:
            raise SecurityError(
                Reason.MALFORMED, f"{what}: the IV parameter must be a byte string of 8 to 16 bytes"
            )
        variant, scope, wrapped = _SHARED.read(parameters, what)
        return cls(iv, variant, scope, wrapped)

    def content_key(self, key: bytes, what: str) -> bytes:
        """The AES key: `key` itself, or the wrapped key unwrapped with `key`."""
        content_key = key if self.wrapped_key is None else unwrap_key(key, self.wrapped_key, what)
        if len(content_key) != self.variant.key_size:
            raise SecurityError(
                Reason.DECRYPTION_FAILED,
                f"{what}: {self.variant.name} needs a "
                f"{self.variant.key_size}-byte key, the key is "
                f"{len(content_key)} bytes",
            )
        return content_key


def encrypt(
    content_key: bytes, iv: bytes, plaintext: bytes | memoryview, aad: bytes
) -> tuple[memoryview, dict[int, Value]]:
    """(ciphertext, result set). The ciphertext is a view of AESGCM's output (ciphertext then
    tag), so a large payload is not copied again to cut the tag off."""
    ciphertext, tag = _seal(AESGCM(content_key), iv, plaintext, aad)
    return ciphertext, {_RESULT_TAG: tag}


def decrypt(
    content_key: bytes,
    iv: bytes,
    ciphertext: bytes | memoryview,
    aad: bytes,
    result: dict[int, Value],
    what: str,
) -> bytes:
    tag = result_tag(result, what)
    try:
        return _open(AESGCM(content_key), content_key, iv, ciphertext, tag, aad)
    except InvalidTag:
        raise authentication_failed(what) from None


def result_tag(result: dict[int, Value], what: str) -> bytes:
    """The authentication tag of a BCB's result set for one target."""
    tag = result.get(_RESULT_TAG)
    if not isinstance(tag, bytes) or len(tag) != TAG_SIZE or len(result) != 1:
        raise SecurityError(
            Reason.MALFORMED,
            f"{what}: the result set must hold exactly one "
            f"{TAG_SIZE}-byte authentication tag (result id 1)",
        )
    return tag


class BcbTemplate:
    """BCB-AES-GCM over one target, bundle after bundle, for one security source, key and set
    of parameters: what the payload pipeline adds to, and opens on, every bundle.

    The ASB is encoded once, by the generic encoder, into a layout whose holes are the IV, the
    wrapped key (with key wrap) and the tag, so a block written from the template has the bytes
    bpsec.add_bcb writes. Without key wrap the AES context is kept. A received BCB whose ASB
    matches the layout has exactly the template's targets, security source and parameters:
    only its IV, wrapped key and tag are new, and `open` decrypts it. The RFC 9172 rules about
    the bundle's other blocks are the caller's to check; bpsec.add_bcb and bpsec.accept are the
    checked, general paths.
    """

    __slots__ = ("variant", "scope", "aead", "layout", "sealers", "plan", "_key")

    def __init__(
        self,
        key: bytes,
        security_source: EID,
        target: int,
        *,
        variant: AesVariant = DEFAULT_VARIANT,
        scope: int = FULL_SCOPE,
        key_wrap: bool = False,
    ) -> None:
        """`key` is the AES key, or with `key_wrap` the key-encryption key for a fresh content
        key per block. ValueError for a key of the wrong size."""
        sizes = KEY_ENCRYPTION_KEY_SIZES if key_wrap else (variant.key_size,)
        if len(key) not in sizes:
            raise ValueError(
                f"{'a key-encryption key' if key_wrap else variant.name} needs a key of "
                f"{' or '.join(map(str, sizes))} bytes, not {len(key)}"
            )
        self.variant, self.scope, self._key = variant, scope, key
        self.aead = None if key_wrap else AESGCM(key)
        self.sealers: dict[tuple, BcbSealer] = {}  # by (target header, number, flags)
        wrapped = bytes(variant.key_size + 8) if key_wrap else None  # RFC 3394 adds 8 bytes
        parameters = BcbParameters(bytes(IV_SIZE), variant, scope, wrapped)
        self.layout = template_layout(
            target, CONTEXT_ID, security_source, parameters.to_asb(), _RESULT_TAG, TAG_SIZE
        )
        # what payload/_fastpath.c's open_known needs of this template, at once
        self.plan = (
            None if self.aead is None else (self.aead.decrypt, *self.layout.pieces, self.sealers)
        )

    def encrypt(
        self,
        target: CanonicalBlock,
        primary: bytes,
        number: int,
        flags: int,
        crc_type: int,
        random_bytes: Callable[[int], bytes],
    ) -> CanonicalBlock:
        """Encrypt `target` in place (its data becomes a view of the ciphertext) and return the
        BCB, block `number`, for the caller to insert. `primary` is the encoded primary block."""
        sealer = self.sealer((target.block_type, target.number, target.flags), number, flags)
        return sealer.encrypt(target, primary, crc_type, random_bytes)

    def sealer(self, target_header: tuple[int, int, int], number: int, flags: int) -> BcbSealer:
        """This template as block `number` with `flags`, over a target whose header (type,
        number, flags) is `target_header`: for a caller that writes bundle after bundle alike."""
        key = (*target_header, number, flags)
        sealer = self.sealers.get(key)
        if sealer is None:
            if len(self.sealers) >= _SEALERS_MAX:
                self.sealers.clear()
            sealer = self.sealers[key] = BcbSealer(self, target_header, number, flags)
        return sealer

    def open(
        self, bcb: CanonicalBlock, target: CanonicalBlock, primary: PrimaryBlock
    ) -> bytes | None:
        """The plaintext of `target` if `bcb`'s ASB was written from this template (None if
        not); SecurityError as bpsec.accept raises it if the key unwrap or authentication fails."""
        holes = self.layout.match(bcb.data)
        if holes is None:
            return None
        sealer = self.sealers.get(
            (target.block_type, target.number, target.flags, bcb.number, bcb.flags)
        )
        if sealer is None:
            header = (target.block_type, target.number, target.flags)
            sealer = self.sealer(header, bcb.number, bcb.flags)
        aad = sealer.aad(primary.canonical_encoding())  # as accept: RFC 9172 §4
        aead = self.aead
        if aead is None:
            iv, wrapped, tag = holes
            parameters = BcbParameters(iv, self.variant, self.scope, wrapped)
            content_key = parameters.content_key(self._key, sealer.name)
            aead = AESGCM(content_key)
        else:
            (iv, tag), content_key = holes, self._key
        ciphertext = target.data_view
        try:
            if len(ciphertext) < STREAM_MIN:  # _open's first case, one call less a bundle
                return aead.decrypt(iv, b"".join((ciphertext, tag)), aad)
            return _open(aead, content_key, iv, ciphertext, tag, aad)
        except InvalidTag:
            raise authentication_failed(sealer.name) from None


class BcbSealer:
    """A BcbTemplate placed in a bundle: block `number` with `flags`, over a target with a fixed
    header, so its additional authenticated data is worked out once, around the primary block.
    What the payload pipeline calls for every bundle it seals."""

    __slots__ = (
        "number",
        "flags",
        "head",
        "tail",
        "aead",
        "plan",
        "name",
        "_template",
        "_fill",
    )

    def __init__(
        self, template: BcbTemplate, target_header: tuple[int, int, int], number: int, flags: int
    ) -> None:
        self.number, self.flags, self._template = number, flags, template
        self.aead = template.aead  # None under key wrap: a content key per block
        # the AAD is head, or head + encoded primary block + tail
        self.head, self.tail = scope_frame(
            template.scope, block_header(*target_header), block_header(_BCB, number, flags)
        )
        self._fill = template.layout.fill
        self.name = f"BCB (block {number})"  # for messages
        self.plan = (  # what payload/_fastpath.c's seal_payload needs of this sealer, at once
            None
            if self.aead is None
            else (self.aead.encrypt, self.head, self.tail, *template.layout.pieces)
        )

    def aad(self, primary: bytes) -> bytes:
        """The additional authenticated data, given the encoded primary block."""
        tail = self.tail
        return self.head if tail is None else b"".join((self.head, primary, tail))

    def encrypt(
        self,
        target: CanonicalBlock,
        primary: bytes,
        crc_type: int,
        random_bytes: Callable[[int], bytes],
    ) -> CanonicalBlock:
        """BcbTemplate.encrypt for this placement."""
        aead, wrapped = self.aead, ()
        if aead is None:
            content_key, wrapped = self._content_key(random_bytes)
            aead = AESGCM(content_key)
        iv = _iv(random_bytes)
        sealed = aead.encrypt(iv, target.data_view, self.aad(primary))
        target.data = memoryview(sealed)[:-TAG_SIZE]  # as _seal, one call less on every bundle
        holes = (iv, *wrapped, sealed[-TAG_SIZE:])
        return CanonicalBlock(_BCB, self.number, self._fill(holes), self.flags, crc_type)

    def stream(
        self, primary: bytes, crc_type: int, random_bytes: Callable[[int], bytes]
    ) -> BcbStream:
        """encrypt() for a target too large to hold: its data goes through the returned
        stream piece by piece, and the stream's finish() gives the BCB."""
        content_key, wrapped = self._template._key, ()
        if self.aead is None:
            content_key, wrapped = self._content_key(random_bytes)
        iv = _iv(random_bytes)
        encryptor = Cipher(algorithms.AES(content_key), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(self.aad(primary))

        def bcb(tag: bytes) -> CanonicalBlock:
            holes = (iv, *wrapped, tag)
            return CanonicalBlock(_BCB, self.number, self._fill(holes), self.flags, crc_type)

        return BcbStream(encryptor, bcb)

    def _content_key(self, random_bytes: Callable[[int], bytes]) -> tuple[bytes, tuple[bytes]]:
        """Under key wrap: a fresh content key and it wrapped (drawn before the IV, as
        add_bcb draws them)."""
        template = self._template
        content_key = random_bytes(template.variant.key_size)
        return content_key, (wrap_key(template._key, content_key),)


class BcbStream:
    """A BCB's target encrypted piece by piece (BcbSealer.stream)."""

    __slots__ = ("_encryptor", "_bcb")

    def __init__(self, encryptor: Any, bcb: Callable[[bytes], CanonicalBlock]) -> None:
        self._encryptor, self._bcb = encryptor, bcb

    def update(self, plaintext: bytes | memoryview) -> bytes:
        """The ciphertext of the next piece (the same length)."""
        return self._encryptor.update(plaintext)

    def finish(self) -> CanonicalBlock:
        """The BCB, its tag over everything passed to update()."""
        self._encryptor.finalize()
        return self._bcb(self._encryptor.tag)


def stream_decryptor(content_key: bytes, iv: bytes, tag: bytes, aad: bytes) -> Any:
    """A decryption context for a target too large to hold: `update()` each piece, then
    `finalize()`, which raises InvalidTag if authentication fails. Nothing it returned may be
    used before finalize() has succeeded."""
    decryptor = Cipher(algorithms.AES(content_key), modes.GCM(iv, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor


def _iv(random_bytes: Callable[[int], bytes]) -> bytes:
    iv = random_bytes(IV_SIZE)
    if len(iv) != IV_SIZE:
        raise ValueError(f"random_bytes gave {len(iv)} bytes for a {IV_SIZE}-byte IV")
    return iv


_SEALERS_MAX = 256  # placements a template keeps; received blocks choose theirs, so bounded


def _seal(
    aead: AESGCM, iv: bytes, plaintext: bytes | memoryview, aad: bytes
) -> tuple[memoryview, bytes]:
    sealed = aead.encrypt(iv, plaintext, aad)
    return memoryview(sealed)[:-TAG_SIZE], sealed[-TAG_SIZE:]


def _open(
    aead: AESGCM,
    content_key: bytes,
    iv: bytes,
    ciphertext: bytes | memoryview,
    tag: bytes,
    aad: bytes,
) -> bytes:
    """The plaintext; InvalidTag when authentication fails."""
    if len(ciphertext) < STREAM_MIN:
        return aead.decrypt(iv, b"".join((ciphertext, tag)), aad)
    decryptor = stream_decryptor(content_key, iv, tag, aad)
    plaintext = decryptor.update(ciphertext)
    decryptor.finalize()
    return plaintext


def authentication_failed(what: str) -> SecurityError:
    return SecurityError(
        Reason.DECRYPTION_FAILED,
        f"{what}: authentication failed (the "
        "ciphertext, its tag or the authenticated data were changed, or the "
        "key is not the sender's)",
    )
