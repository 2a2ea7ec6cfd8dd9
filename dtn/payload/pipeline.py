"""The payload pipeline: what a node does to application data on the way out and on delivery.

    send:    data -> compress (zstd) -> bundle -> BIB / BCB per the security policy
    deliver: bundle -> decrypt BCBs, verify BIBs -> policy check -> decompress -> data

What the security policy asks for a destination:

    rule has     BCB (BCB-AES-GCM) targets    BIB (BIB-HMAC-SHA2) targets
    bcb          payload                      -
    bib          -                            payload
    bcb + bib    payload                      primary block

With both services the BIB signs the primary block: a BIB over the payload would have to be
encrypted along with it under the BCB's single IV (RFC 9172 3.9, RFC 9173 4), and AES-GCM
already authenticates the payload for the destination.

The payload compression block (compression.py) needs no security block of its own: what it
says must follow from the protected payload, so tampering with it gets the bundle rejected.
Only its removal would pass unnoticed, so under a policy rule it is always present ("stored"
when compression does not pay), and a receiver requires it from the sources a rule covers.

Every refusal is a PayloadRejected with a `.reason` code, counted in `rejections`.
Sans-I/O, single-threaded (the zstd contexts are reused).
"""

from __future__ import annotations

import os
from collections import Counter

from dtn.bundle import EID, BlockType, Bundle, CanonicalBlock
from dtn.security import (
    Accepted,
    Keyring,
    SecurityError,
    SecurityPolicy,
    SecurityRule,
    accept,
    add_bcb,
    add_bib,
)
from dtn.security.bpsec import PRIMARY_BLOCK, RandomBytes

from .compression import (
    COMPRESSION_BLOCK_FLAGS,
    COMPRESSION_BLOCK_TYPE,
    DEFAULT_LEVEL,
    DEFAULT_MAX_PAYLOAD,
    Algorithm,
    CompressionInfo,
    Compressor,
)
from .errors import CompressionError, PayloadReason, PayloadRejected

PAYLOAD_BLOCK = 1


class PayloadPipeline:
    def __init__(
        self,
        policy: SecurityPolicy,
        keyring: Keyring,
        security_source: EID,
        *,
        compression_level: int = DEFAULT_LEVEL,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        """`security_source` is this node's ID, named in the security blocks it adds.
        PolicyError now if the policy names keys the keyring lacks."""
        policy.check_keys(keyring)
        self.policy = policy
        self.keyring = keyring
        self.security_source = security_source
        self.max_payload = max_payload
        self.rejections: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._compressor = Compressor(compression_level, max_payload)
        self._random_bytes = random_bytes

    def send(
        self,
        data: bytes,
        source: EID | str,
        destination: EID | str,
        *,
        creation_time: int,
        **bundle_options,
    ) -> Bundle:
        """A new bundle carrying `data`, sealed; options as for Bundle.create."""
        bundle = Bundle.create(
            source, destination, data, creation_time=creation_time, **bundle_options
        )
        return self.seal(bundle)

    def seal(self, bundle: Bundle) -> Bundle:
        """Compress and protect the payload of an unsent bundle in place; returns the bundle."""
        if bundle.block_of_type(COMPRESSION_BLOCK_TYPE) is not None:
            raise ValueError(f"{bundle} is sealed already")
        if bundle.primary.is_fragment:
            raise self._reject(
                PayloadReason.FRAGMENT,
                "a fragment cannot be sealed: seal the bundle, then fragment it",
            )
        data = bundle.payload
        if len(data) > self.max_payload:
            raise self._reject(
                PayloadReason.TOO_LARGE,
                f"payload of {len(data)} bytes is more "
                f"than the configured maximum ({self.max_payload})",
            )
        rule = self.policy.outbound(bundle.primary.destination)
        compressed = self._compressor.compress(data)
        self.counts["compressed" if compressed is not None else "stored"] += 1
        if compressed is None and rule is None:
            self.counts["sealed"] += 1
            return bundle
        algorithm = Algorithm.STORED if compressed is None else Algorithm.ZSTD
        crc_type = bundle.payload_block.crc_type
        marker = CanonicalBlock(
            COMPRESSION_BLOCK_TYPE,
            bundle.next_block_number(),
            CompressionInfo(algorithm, len(data)).encode(),
            COMPRESSION_BLOCK_FLAGS,
            crc_type,
        )
        bundle.insert_block(marker)
        if compressed is not None:
            bundle.payload = compressed
        if rule is not None:
            self._protect(bundle, rule, crc_type)
        self.counts["sealed"] += 1
        return bundle

    def deliver(self, bundle: Bundle) -> bytes:
        """The application data of a bundle addressed to this node. The bundle is not changed.

        PayloadRejected, counted by reason, for anything that must not reach the application."""
        try:
            data = self._open(bundle)
        except PayloadRejected as exc:
            self.rejections[exc.reason] += 1
            raise
        except SecurityError as exc:
            self.rejections[exc.reason] += 1
            raise PayloadRejected(exc.reason, str(exc)) from None
        self.counts["delivered"] += 1
        return data

    def _protect(self, bundle: Bundle, rule: SecurityRule, crc_type: int) -> None:
        common = {
            "security_source": self.security_source,
            "scope": rule.scope,
            "key_wrap": rule.key_wrap,
            "random_bytes": self._random_bytes,
            "crc_type": crc_type,
        }
        if rule.bib is not None:
            target = PRIMARY_BLOCK if rule.bcb is not None else PAYLOAD_BLOCK
            add_bib(
                bundle,
                [target],
                self.keyring.get(rule.key_id(BlockType.BIB)),
                variant=rule.bib,
                **common,
            )
        if rule.bcb is not None:
            add_bcb(
                bundle,
                [PAYLOAD_BLOCK],
                self.keyring.get(rule.key_id(BlockType.BCB)),
                variant=rule.bcb,
                **common,
            )

    def _open(self, bundle: Bundle) -> bytes:
        if bundle.primary.is_fragment:
            raise PayloadRejected(
                PayloadReason.FRAGMENT,
                "a fragment cannot be delivered: reassemble the bundle first",
            )
        accepted = accept(bundle, self._key_for)
        markers = [block for block in bundle.blocks if block.block_type == COMPRESSION_BLOCK_TYPE]
        if len(markers) > 1:
            raise CompressionError(
                PayloadReason.MALFORMED_COMPRESSION_BLOCK,
                f"{len(markers)} payload compression blocks; a bundle has one",
            )
        rule = self.policy.inbound(bundle.primary.source)
        if rule is not None:
            _check_required(rule, accepted, bool(markers), bundle.primary.source)
        payload = accepted.plaintext.get(PAYLOAD_BLOCK)
        if payload is None:
            payload = bundle.payload
        if not markers:
            if len(payload) > self.max_payload:
                raise PayloadRejected(
                    PayloadReason.TOO_LARGE,
                    f"payload of {len(payload)} "
                    f"bytes is more than this node accepts ({self.max_payload})",
                )
            return payload
        return self._compressor.decompress(payload, CompressionInfo.decode(markers[0].data))

    def _key_for(self, service: BlockType, security_source: EID) -> bytes | None:
        rule = self.policy.inbound(security_source)
        key_id = None if rule is None else rule.key_id(service)
        return None if key_id is None else self.keyring.get(key_id)

    def _reject(self, reason: PayloadReason, message: str) -> PayloadRejected:
        self.rejections[reason] += 1
        return PayloadRejected(reason, message)


def _check_required(rule: SecurityRule, accepted: Accepted, has_marker: bool, source: EID) -> None:
    """What the inbound rule for the bundle's source requires, as seal() would have added it."""
    if rule.bcb is not None and PAYLOAD_BLOCK not in accepted.plaintext:
        raise PayloadRejected(
            PayloadReason.POLICY,
            f"bundles from {source} must be encrypted ({rule.describe()}); this payload was not",
        )
    if rule.bib is not None:
        signed = PRIMARY_BLOCK if rule.bcb is not None else PAYLOAD_BLOCK
        if signed not in accepted.verified:
            raise PayloadRejected(
                PayloadReason.POLICY,
                f"bundles from {source} must be signed ({rule.describe()}); block {signed} was not",
            )
    if not has_marker:
        raise PayloadRejected(
            PayloadReason.POLICY,
            f"bundles from {source} carry a payload "
            "compression block under the security policy; this one has none "
            "(removed on the way?)",
        )
