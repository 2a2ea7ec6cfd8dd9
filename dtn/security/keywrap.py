"""AES key wrap (RFC 3394), which both RFC 9173 contexts use to carry a per-bundle key."""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import Reason, SecurityError

KEY_ENCRYPTION_KEY_SIZES = (16, 24, 32)
_MAX_WRAPPED_KEY = 72  # a wrapped 64-byte HMAC-SHA-512 key; anything longer is not a key


def wrap_key(key_encryption_key: bytes, key: bytes) -> bytes:
    if len(key_encryption_key) not in KEY_ENCRYPTION_KEY_SIZES:
        raise ValueError(
            f"a key-encryption key must be 16, 24 or 32 bytes, not {len(key_encryption_key)}"
        )
    return aes_key_wrap(key_encryption_key, key)


def unwrap_key(key_encryption_key: bytes, wrapped: bytes, what: str) -> bytes:
    if len(key_encryption_key) not in KEY_ENCRYPTION_KEY_SIZES:
        raise SecurityError(
            Reason.DECRYPTION_FAILED,
            f"{what}: the key for this security source "
            f"is {len(key_encryption_key)} bytes, but a wrapped key needs a 16-, "
            "24- or 32-byte key-encryption key",
        )
    if not 24 <= len(wrapped) <= _MAX_WRAPPED_KEY or len(wrapped) % 8:
        raise SecurityError(
            Reason.MALFORMED,
            f"{what}: a wrapped key of {len(wrapped)} bytes is not an RFC 3394 key wrap output",
        )
    try:
        return aes_key_unwrap(key_encryption_key, wrapped)
    except InvalidUnwrap:
        raise SecurityError(
            Reason.DECRYPTION_FAILED,
            f"{what}: the wrapped key does not unwrap "
            "(wrong key-encryption key, or the wrapped key was changed)",
        ) from None
