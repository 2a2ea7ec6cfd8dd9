"""The one exception family of the payload pipeline."""

from __future__ import annotations

from enum import StrEnum


class PayloadReason(StrEnum):
    """Why the pipeline refused a payload, besides dtn.security.Reason; counter keys."""

    MALFORMED_COMPRESSION_BLOCK = "malformed-compression-block"
    UNSUPPORTED_COMPRESSION = "unsupported-compression"
    TOO_LARGE = "payload-too-large"
    DECOMPRESSION_FAILED = "decompression-failed"
    POLICY = "security-policy"  # a protection the policy requires is absent
    FRAGMENT = "fragment"  # delivery needs the reassembled bundle


class PayloadRejected(ValueError):
    """The bundle's payload cannot be sealed or delivered. `reason` is a short stable code
    (a PayloadReason or a dtn.security.Reason value); the message says what and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = str(reason)


class CompressionError(PayloadRejected):
    """A compression block or compressed payload that cannot be honoured."""
