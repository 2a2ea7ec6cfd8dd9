"""BCB-AES-GCM, the RFC 9173 default confidentiality context (security context id 2).

Parameters: 1 initialization vector (12 bytes written here), 2 AES variant (1 A128GCM, 3 A256GCM;
3 when absent), 3 the content-encryption key wrapped with AES key wrap under the key-encryption
key, 4 AAD scope flags (7 when absent). Result: 1 the 16-byte authentication tag. The ciphertext
replaces the target's data in place, same length as the plaintext (RFC 9173 4.4).

The additional authenticated data is the scope prefix alone (see scope.py): no target data.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .asb import Value
from .errors import Reason, SecurityError
from .keywrap import unwrap_key
from .scope import FULL_SCOPE, check_scope

CONTEXT_ID = 2
IV_SIZE = 12
TAG_SIZE = 16

_PARAM_IV = 1
_PARAM_AES_VARIANT = 2
_PARAM_WRAPPED_KEY = 3
_PARAM_SCOPE = 4
_RESULT_TAG = 1
_PARAMETER_IDS = frozenset((_PARAM_IV, _PARAM_AES_VARIANT, _PARAM_WRAPPED_KEY, _PARAM_SCOPE))
_IV_SIZES = range(8, 17)  # 12 is what RFC 9173 recommends and what this module writes
# Above this size the one-shot AESGCM call would first join ciphertext and tag into a new buffer;
# the streaming decryptor takes the tag separately and saves that copy.
_STREAM_MIN = 128 * 1024


class AesVariant(IntEnum):
    A128GCM = 1
    A256GCM = 3

    @property
    def key_size(self) -> int:
        return 16 if self is AesVariant.A128GCM else 32


DEFAULT_VARIANT = AesVariant.A256GCM  # RFC 9173 4.3.2: when the parameter is absent
_VARIANTS = {int(variant): variant for variant in AesVariant}  # a dict beats an enum call


class BcbParameters(NamedTuple):
    iv: bytes
    variant: AesVariant = DEFAULT_VARIANT
    scope: int = FULL_SCOPE
    wrapped_key: bytes | None = None

    def to_asb(self) -> dict[int, Value]:
        """IV, variant and scope are always written, as the RFC 9173 examples do."""
        parameters: dict[int, Value] = {_PARAM_IV: self.iv, _PARAM_AES_VARIANT: int(self.variant)}
        if self.wrapped_key is not None:
            parameters[_PARAM_WRAPPED_KEY] = self.wrapped_key
        parameters[_PARAM_SCOPE] = self.scope
        return parameters

    @classmethod
    def from_asb(cls, parameters: dict[int, Value], what: str) -> BcbParameters:
        if not parameters.keys() <= _PARAMETER_IDS:
            unknown = sorted(parameters.keys() - _PARAMETER_IDS)
            raise SecurityError(
                Reason.MALFORMED, f"{what}: unknown BCB-AES-GCM parameter ids {unknown}"
            )
        iv = parameters.get(_PARAM_IV)
        if not isinstance(iv, bytes) or len(iv) not in _IV_SIZES:
            raise SecurityError(
                Reason.MALFORMED, f"{what}: the IV parameter must be a byte string of 8 to 16 bytes"
            )
        value = parameters.get(_PARAM_AES_VARIANT, DEFAULT_VARIANT)
        variant = _VARIANTS.get(value)
        if variant is None:
            raise SecurityError(
                Reason.UNSUPPORTED_CONTEXT,
                f"{what}: unknown AES variant {value!r} (RFC 9173 knows 1 and 3)",
            )
        wrapped = parameters.get(_PARAM_WRAPPED_KEY)
        if wrapped is not None and not isinstance(wrapped, bytes):
            raise SecurityError(Reason.MALFORMED, f"{what}: the wrapped key must be a byte string")
        scope = check_scope(parameters.get(_PARAM_SCOPE, FULL_SCOPE), what)
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
    content_key: bytes, iv: bytes, plaintext: bytes, aad: bytes
) -> tuple[memoryview, dict[int, Value]]:
    """(ciphertext, result set). The ciphertext is a view of AESGCM's output (ciphertext then
    tag), so a large payload is not copied again to cut the tag off."""
    sealed = AESGCM(content_key).encrypt(iv, plaintext, aad)
    return memoryview(sealed)[:-TAG_SIZE], {_RESULT_TAG: sealed[-TAG_SIZE:]}


def decrypt(
    content_key: bytes,
    iv: bytes,
    ciphertext: bytes,
    aad: bytes,
    result: dict[int, Value],
    what: str,
) -> bytes:
    tag = result.get(_RESULT_TAG)
    if not isinstance(tag, bytes) or len(tag) != TAG_SIZE or len(result) != 1:
        raise SecurityError(
            Reason.MALFORMED,
            f"{what}: the result set must hold exactly one "
            f"{TAG_SIZE}-byte authentication tag (result id 1)",
        )
    try:
        if len(ciphertext) < _STREAM_MIN:
            return AESGCM(content_key).decrypt(iv, b"".join((ciphertext, tag)), aad)
        decryptor = Cipher(algorithms.AES(content_key), modes.GCM(iv, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        plaintext = decryptor.update(ciphertext)
        decryptor.finalize()
        return plaintext
    except InvalidTag:
        raise SecurityError(
            Reason.DECRYPTION_FAILED,
            f"{what}: authentication failed (the "
            "ciphertext, its tag or the authenticated data were changed, or the "
            "key is not the sender's)",
        ) from None
