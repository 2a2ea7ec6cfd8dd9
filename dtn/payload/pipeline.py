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

Per bundle the work is the libraries' (zstd, AES-GCM) plus a few microseconds of Python, so
each rule's security blocks come from templates (BcbTemplate, BibTemplate: the ASB encoded once,
the IV, wrapped key and tag spliced in). Receiving, the first bundle from a security source takes
bpsec.accept's general path; once it is accepted, its BCB (and a BIB over the primary block
beside it) become templates, and later bundles whose security blocks match them byte for byte
outside IV, wrapped key, tag and HMAC skip the checks already made (_open_known). Anything else
takes the general path. The C module _fastpath.c does the BCB-only steps of both directions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from operator import attrgetter
from typing import NamedTuple

from cryptography.exceptions import InvalidTag

from dtn.bundle import EID, BlockFlags, BlockType, Bundle, CanonicalBlock, CRCType
from dtn.bundle.blocks import IS_FRAGMENT
from dtn.bundle.bundle import DEFAULT_LIFETIME
from dtn.security import (
    AbstractSecurityBlock,
    Accepted,
    Keyring,
    SecurityError,
    SecurityPolicy,
    SecurityRule,
    accept,
    add_bcb,
    add_bib,
)
from dtn.security.aes_gcm import STREAM_MIN, BcbParameters, BcbSealer, BcbTemplate
from dtn.security.bpsec import PRIMARY_BLOCK, RandomBytes
from dtn.security.hmac_sha2 import BibParameters, BibTemplate
from dtn.security.randomness import BufferedRandom

from .compression import (
    COMPRESSION_BLOCK_FLAGS,
    COMPRESSION_BLOCK_TYPE,
    DEFAULT_LEVEL,
    DEFAULT_MAX_PAYLOAD,
    Compressor,
    is_compression_block_data,
)
from .errors import CompressionError, PayloadReason, PayloadRejected

try:
    from . import _fastpath
except ImportError:  # no compiler at install time: the Python steps alone, same results
    _fastpath = None

PAYLOAD_BLOCK = 1
# Read once: looking a member up on its enum class costs more than what it is used for.
_BIB, _BCB, _PAYLOAD = BlockType.BIB, BlockType.BCB, BlockType.PAYLOAD
_REPLICATE = int(BlockFlags.REPLICATE_IN_FRAGMENTS)
_BCB_FLAGS_CHECKED = _REPLICATE | int(BlockFlags.DISCARD_IF_UNPROCESSABLE)  # RFC 9172 3.8
_CACHE_MAX = 64  # destinations and security sources a pipeline keeps templates for
_UNKNOWN = object()
_NUMBER = attrgetter("number")


class _Protection(NamedTuple):
    """What a policy rule adds to a bundle, as templates (see dtn.security's BcbTemplate)."""

    rule: SecurityRule
    bib: BibTemplate | None
    bcb: BcbTemplate | None
    # Under a BCB-only rule, the BCB of a bundle whose only block was its payload (block 3,
    # after the compression block)
    lone_payload: BcbSealer | None


class PayloadPipeline:
    def __init__(
        self,
        policy: SecurityPolicy,
        keyring: Keyring,
        security_source: EID,
        *,
        compression_level: int = DEFAULT_LEVEL,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        random_bytes: RandomBytes | None = None,
        dictionary: bytes | None = None,
        dictionaries: Iterable[bytes] = (),
        compression_block_type: int = COMPRESSION_BLOCK_TYPE,
    ) -> None:
        """`security_source` is this node's ID, named in the security blocks it adds.
        `random_bytes` draws IVs and keys (default: OS randomness, read in blocks).
        `dictionary` is a trained zstd dictionary to compress with; payloads are decompressed
        with it or any of `dictionaries` (see Compressor; DictionaryError for a bad one).
        PolicyError now if the policy names keys the keyring lacks."""
        policy.check_keys(keyring)
        self._policy = policy
        self._keyring = keyring
        self.security_source = security_source
        self.max_payload = max_payload
        self.compression_block_type = compression_block_type
        self.rejections: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._compressor = Compressor(compression_level, max_payload, dictionary, dictionaries)
        self._random_bytes = BufferedRandom() if random_bytes is None else random_bytes
        # None lets the C fast path draw IVs from its own pool of OS randomness
        self._iv_source = random_bytes
        self._protections = {
            rule: self._protection(rule) for rule in policy.rules if rule.destination is not None
        }
        self._by_destination: dict[EID, _Protection | None] = {}
        self._last_outbound: tuple[object, _Protection | None] = (_UNKNOWN, None)
        # BCBs this pipeline accepted, as templates by (security source, variant, scope, key
        # wrap): a later BCB that matches one is opened without the general checks (_open_known).
        self._openers: dict[tuple, BcbTemplate] = {}
        # BIBs over the primary block this pipeline accepted beside such a BCB, likewise
        self._bib_openers: dict[tuple, BibTemplate] = {}
        # Without an inbound rule that asks for a BIB, _open_known needs no rule lookup.
        self._bib_required = any(rule.source and rule.bib for rule in policy.rules)

    @property
    def counts(self) -> Counter[str]:
        """Bundles sealed (each either "compressed" or "stored") and "delivered"."""
        counts = Counter(self._counts)
        sealed = counts["compressed"] + counts["stored"]
        if sealed:
            counts["sealed"] = sealed
        return +counts  # without zero entries

    @property
    def policy(self) -> SecurityPolicy:
        return self._policy

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def compressor(self) -> Compressor:
        return self._compressor

    @property
    def random_bytes(self) -> RandomBytes:
        return self._random_bytes

    def count(self, name: str) -> None:
        """Count one bundle sealed ("compressed" or "stored") or "delivered" (see counts)."""
        self._counts[name] += 1

    def protection_for(self, destination: EID) -> _Protection | None:
        """What the outbound rule for `destination` adds to a bundle (None: nothing)."""
        return self._outbound(destination)

    def send(
        self,
        data: bytes,
        source: EID | str,
        destination: EID | str,
        *,
        creation_time: int,
        sequence: int = 0,
        lifetime: int = DEFAULT_LIFETIME,
        report_to: EID | str | None = None,
        flags: int = 0,
        crc_type: int = CRCType.CRC32C,
        hop_limit: int | None = None,
    ) -> Bundle:
        """A new bundle carrying `data`, sealed; the options are Bundle.create's."""
        bundle = Bundle.create(
            source,
            destination,
            data,
            creation_time=creation_time,
            sequence=sequence,
            lifetime=lifetime,
            report_to=report_to,
            flags=flags,
            crc_type=crc_type,
            hop_limit=hop_limit,
        )
        return self._seal(bundle, checked=False)

    def seal(self, bundle: Bundle) -> Bundle:
        """Compress and protect the payload of an unsent bundle in place; returns the bundle."""
        if self._marker_of(bundle) is not None:
            raise ValueError(f"{bundle} is sealed already")
        # Security blocks of the caller's constrain the new ones (RFC 9172 3.x): bundles with
        # some take bpsec's checked add_bib and add_bcb instead of the rule's templates.
        checked = any(block.block_type in (_BIB, _BCB) for block in bundle.blocks)
        return self._seal(bundle, checked=checked)

    def deliver(self, bundle: Bundle) -> bytes:
        """The application data of a bundle addressed to this node. The bundle is not changed.

        PayloadRejected, counted by reason, for anything that must not reach the application."""
        try:
            data = self._open_known(bundle)
            if data is None:
                data = self._open(bundle)
        except PayloadRejected as exc:
            self.rejections[exc.reason] += 1
            raise
        except SecurityError as exc:
            self.rejections[exc.reason] += 1
            raise PayloadRejected(exc.reason, str(exc)) from None
        self._counts["delivered"] += 1
        return data

    def _seal(self, bundle: Bundle, *, checked: bool) -> Bundle:
        primary, blocks = bundle.primary, bundle.blocks
        if primary.flags & IS_FRAGMENT:
            raise self._reject(
                PayloadReason.FRAGMENT,
                "a fragment cannot be sealed: seal the bundle, then fragment it",
            )
        payload = blocks[-1]
        if payload.block_type != _PAYLOAD:
            payload = bundle.payload_block
        data = payload.data
        if len(data) > self.max_payload:
            raise self._reject(
                PayloadReason.TOO_LARGE,
                f"payload of {len(data)} bytes is more "
                f"than the configured maximum ({self.max_payload})",
            )
        destination = primary.destination
        last_destination, protection = self._last_outbound  # _outbound's first step, inline
        if destination is not last_destination:
            protection = self._outbound(destination)
        counts = self._counts
        crc_type = payload.crc_type
        # What send() makes under a BCB-only rule: a bundle whose only block is its payload.
        # Its blocks are the ones the general steps below would give, made in one step.
        lone = (
            protection.lone_payload
            if protection is not None
            and len(blocks) == 1
            and not checked
            and payload.number == PAYLOAD_BLOCK
            and not payload.flags
            else None
        )
        if lone is not None and lone.plan is not None and _fastpath is not None:
            ciphertext, algorithm, bcb_data = _fastpath.seal_payload(
                self._compressor.zstd,
                self._iv_source,
                data,
                primary.canonical_encoding(),
                lone.plan,
            )
            counts["compressed" if algorithm else "stored"] += 1
            payload.data = ciphertext
            marker = self._compressor.block_data(bool(algorithm), len(data))
            bundle.blocks = [
                CanonicalBlock(_BCB, lone.number, bcb_data, lone.flags, crc_type),
                CanonicalBlock(
                    self.compression_block_type, 2, marker, COMPRESSION_BLOCK_FLAGS, crc_type
                ),
                payload,
            ]
            return bundle
        compressed, marker = self._compressor.pack(data)
        counts["stored" if compressed is None else "compressed"] += 1
        if compressed is None and protection is None:
            return bundle
        if compressed is not None:
            payload.data = compressed
        if lone is not None:
            bcb = lone.encrypt(payload, primary.canonical_encoding(), crc_type, self._random_bytes)
            marker_block = CanonicalBlock(
                self.compression_block_type, 2, marker, COMPRESSION_BLOCK_FLAGS, crc_type
            )
            bundle.blocks = [bcb, marker_block, payload]
            return bundle
        # Bundle.next_block_number, without its generator on a new bundle's lone payload block
        number = 2 if len(blocks) == 1 else max(map(_NUMBER, blocks)) + 1
        blocks.insert(
            -1,
            CanonicalBlock(
                self.compression_block_type, number, marker, COMPRESSION_BLOCK_FLAGS, crc_type
            ),
        )
        if protection is None:
            return bundle
        if checked:
            self._protect_checked(bundle, protection.rule, crc_type)
            return bundle
        # The blocks and numbers bpsec.add_bib and add_bcb would add (_protect_checked).
        encoded_primary, random_bytes = primary.canonical_encoding(), self._random_bytes
        bib, bcb = protection.bib, protection.bcb
        number += 1
        if bib is not None:
            target = None if bcb is not None else payload
            blocks.insert(0, bib.sign(target, encoded_primary, number, 0, crc_type, random_bytes))
            number += 1
        if bcb is not None:
            block = bcb.encrypt(
                payload, encoded_primary, number, _REPLICATE, crc_type, random_bytes
            )
            blocks.insert(0 if bib is None else 1, block)
        return bundle

    def _protect_checked(self, bundle: Bundle, rule: SecurityRule, crc_type: int) -> None:
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
                self._keyring.get(rule.key_id(BlockType.BIB)),
                variant=rule.bib,
                **common,
            )
        if rule.bcb is not None:
            add_bcb(
                bundle,
                [PAYLOAD_BLOCK],
                self._keyring.get(rule.key_id(BlockType.BCB)),
                variant=rule.bcb,
                **common,
            )

    def _protection(self, rule: SecurityRule) -> _Protection:
        options = {"scope": rule.scope, "key_wrap": rule.key_wrap}
        bib = bcb = None
        if rule.bib is not None:
            key = self._keyring.get(rule.key_id(BlockType.BIB))
            target = PRIMARY_BLOCK if rule.bcb is not None else PAYLOAD_BLOCK
            bib = BibTemplate(key, self.security_source, target, variant=rule.bib, **options)
        if rule.bcb is not None:
            key = self._keyring.get(rule.key_id(BlockType.BCB))
            bcb = BcbTemplate(key, self.security_source, PAYLOAD_BLOCK, variant=rule.bcb, **options)
        lone_payload = None
        if bcb is not None and bib is None:
            lone_payload = bcb.sealer((_PAYLOAD, PAYLOAD_BLOCK, 0), 3, _REPLICATE)
        return _Protection(rule, bib, bcb, lone_payload)

    def _outbound(self, destination: EID) -> _Protection | None:
        last_destination, protection = self._last_outbound
        if destination is last_destination:  # a node sends bundle after bundle to one EID
            return protection
        protection = self._by_destination.get(destination, _UNKNOWN)
        if protection is _UNKNOWN:
            rule = self._policy.outbound(destination)
            protection = None if rule is None else self._protections[rule]
            if len(self._by_destination) >= _CACHE_MAX:
                self._by_destination.clear()
            self._by_destination[destination] = protection
        self._last_outbound = (destination, protection)
        return protection

    def _open_known(self, bundle: Bundle) -> bytes | None:
        """The data of a bundle whose BCB over the payload, and BIB over the primary block if it
        has one, were written like ones this pipeline accepted before (same security sources and
        parameters, see BcbTemplate and BibTemplate); None for any other bundle. Where it
        returns data or raises, _open would too."""
        primary = bundle.primary
        if primary.flags & IS_FRAGMENT or not self._openers:
            return None
        bib_needed = False
        if self._bib_required:
            rule = self._policy.inbound(primary.source)
            bib_needed = rule is not None and rule.bib is not None
        if _fastpath is not None and not bib_needed:
            data = self._open_known_fast(bundle, primary.canonical_encoding())
            if data is not None:
                return data
        bcb = marker = bib = None
        compression_type = self.compression_block_type
        for block in bundle.blocks:
            block_type = block.block_type
            if block_type == _BCB:
                if bcb is not None:
                    return None
                bcb = block
            elif block_type == compression_type:
                if marker is not None:
                    return None
                marker = block
            elif block_type == _BIB:
                if bib is not None:
                    return None
                bib = block
        payload = block
        if (
            bcb is None
            or marker is None
            or (bib is None and bib_needed)
            or bcb.flags & _BCB_FLAGS_CHECKED != _REPLICATE
            or not is_compression_block_data(marker.data)
            or payload.number != PAYLOAD_BLOCK
            or payload.block_type != _PAYLOAD
        ):
            return None
        for template in self._openers.values():
            plaintext = template.open(bcb, payload, primary)
            if plaintext is not None:
                break
        else:
            return None
        # As accept: the BCB decrypted first, then the BIB verified (here, over the primary)
        if bib is not None and not any(
            template.check(bib, None, primary.canonical_encoding())
            for template in self._bib_openers.values()
        ):
            return None
        return self._compressor.restore(plaintext, marker.data)

    def _open_known_fast(self, bundle: Bundle, primary: bytes) -> bytes | None:
        """_open_known's answer from the C fast path (_fastpath.c), or None where the Python
        steps must decide: another shape, a BCB placement not seen yet, a large payload, a
        template with key wrap, or a failed authentication (which the Python steps name)."""
        for template in self._openers.values():
            plan = template.plan
            if plan is None:  # key wrap: the Python steps
                continue
            try:
                opened = _fastpath.open_known(
                    bundle.blocks, primary, plan, STREAM_MIN, self.max_payload,
                    self.compression_block_type,
                )
            except InvalidTag:
                return None
            if opened.__class__ is bytes:
                return opened
            if opened is not None:
                if not is_compression_block_data(opened[1]):
                    return None  # another stack's block under our number: the Python steps
                return self._compressor.restore(*opened)
        return None

    def _open(self, bundle: Bundle) -> bytes:
        primary = bundle.primary
        if primary.flags & IS_FRAGMENT:
            raise PayloadRejected(
                PayloadReason.FRAGMENT,
                "a fragment cannot be delivered: reassemble the bundle first",
            )
        accepted = accept(bundle, self.key_for)
        markers = self.markers_of(bundle)
        if len(markers) > 1:
            raise CompressionError(
                PayloadReason.MALFORMED_COMPRESSION_BLOCK,
                f"{len(markers)} payload compression blocks; a bundle has one",
            )
        rule = self._policy.inbound(primary.source)
        if rule is not None:
            check_required(rule, accepted, bool(markers), primary.source)
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
        data = self._compressor.restore(payload, markers[0].data)
        if set(accepted.plaintext) == {PAYLOAD_BLOCK} and accepted.verified <= {PRIMARY_BLOCK}:
            # the shapes _open_known opens: a BCB over the payload, and maybe a BIB over the
            # primary block
            security = [bundle.block_by_number(n) for n in accepted.security_blocks]
            bcbs = [block for block in security if block.block_type == _BCB]
            bibs = [block for block in security if block.block_type == _BIB]
            if len(bcbs) == 1 and len(bibs) == len(accepted.verified):
                bcb, payload = bcbs[0], bundle.payload_block
                template = self._learn(
                    bcb, self._openers, BcbTemplate, BcbParameters, PAYLOAD_BLOCK
                )
                if template is not None:  # placed as the sender's next bundles will have it
                    header = (payload.block_type, payload.number, payload.flags)
                    template.sealer(header, bcb.number, bcb.flags)
                if bibs:
                    self._learn(
                        bibs[0], self._bib_openers, BibTemplate, BibParameters, PRIMARY_BLOCK
                    )
        return data

    def markers_of(self, bundle: Bundle) -> list[CanonicalBlock]:
        """The bundle's payload compression blocks: blocks of our number whose data has our
        shape (another stack's block under the same private number is not one)."""
        number = self.compression_block_type
        return [
            block for block in bundle.blocks
            if block.block_type == number and is_compression_block_data(block.data)
        ]

    def _marker_of(self, bundle: Bundle) -> CanonicalBlock | None:
        markers = self.markers_of(bundle)
        return markers[0] if markers else None

    def _learn(
        self,
        block: CanonicalBlock,
        known: dict[tuple, BcbTemplate | BibTemplate],
        template_type: type[BcbTemplate] | type[BibTemplate],
        parameters_type: type[BcbParameters] | type[BibParameters],
        target: int,
    ) -> BcbTemplate | BibTemplate | None:
        """A template of an accepted BCB over the payload or BIB over the primary block, kept
        for _open_known (None when as many are kept as the pipeline keeps)."""
        asb = AbstractSecurityBlock.decode(block.data)
        parameters = parameters_type.from_asb(asb.parameters, BlockType(block.block_type).name)
        wrapped = parameters.wrapped_key is not None
        key = (asb.source, parameters.variant, parameters.scope, wrapped)
        template = known.get(key)
        if template is None:
            if len(known) >= _CACHE_MAX:
                return None
            template = known[key] = template_type(
                self.key_for(block.block_type, asb.source),
                asb.source,
                target,
                variant=parameters.variant,
                scope=parameters.scope,
                key_wrap=wrapped,
            )
        return template

    def key_for(self, service: BlockType, security_source: EID) -> bytes | None:
        rule = self._policy.inbound(security_source)
        key_id = None if rule is None else rule.key_id(service)
        return None if key_id is None else self._keyring.get(key_id)

    def _reject(self, reason: PayloadReason, message: str) -> PayloadRejected:
        self.rejections[reason] += 1
        return PayloadRejected(reason, message)


def check_required(rule: SecurityRule, accepted: Accepted, has_marker: bool, source: EID) -> None:
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
