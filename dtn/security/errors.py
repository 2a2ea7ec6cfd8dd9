"""The exceptions of the security layer. Each carries a short `reason` code for counters."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a bundle's security processing failed; stable strings, used as counter keys."""

    MALFORMED = "malformed-security-block"
    RULE_BROKEN = "security-rule-broken"  # an RFC 9172 targeting rule
    UNSUPPORTED_CONTEXT = "unsupported-security-context"
    MISSING_KEY = "missing-key"
    DECRYPTION_FAILED = "decryption-failed"
    INTEGRITY_FAILED = "integrity-check-failed"


class SecurityError(ValueError):
    """A security block that cannot be accepted; `reason` says which kind of failure."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyringError(ValueError):
    """A key file, key id or key that cannot be used; the message says how to fix it."""


class PolicyError(ValueError):
    """A security policy in the node config that cannot be applied; the message names the rule."""
