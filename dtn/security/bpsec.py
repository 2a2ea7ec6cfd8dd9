"""BPSec on a bundle (RFC 9172): adding BIBs and BCBs as a security source, and accepting them
(decrypt, then verify) as the security acceptor. Sans-I/O: keys come in as bytes.

Rules of RFC 9172 enforced both when adding and when accepting:
- a security service applies to a target at most once (3.2);
- a BIB never targets a BIB or a BCB (3.7);
- a BCB never targets the primary block or a BCB, and targets a BIB only when the two share a
  target (3.8); a BCB that targets the payload is replicated in fragments, and is never marked
  "discard if unprocessable" (3.8);
- a BIB is not added to a target a BCB already encrypts, and a BCB over a BIB's targets also
  encrypts that BIB (3.9); security blocks are not added to a fragment (5.2).

Accepting decrypts every BCB first (a BIB may sit inside one), then verifies every BIB over the
plaintext. It does not change the bundle: it returns the plaintexts, and `Accepted.apply`
writes them back and drops the processed security blocks when a caller wants the bundle itself.

New security blocks go after the security blocks at the front of the bundle, the layout of the
RFC 9173 Appendix A examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dtn.bundle import EID, BlockFlags, BlockType, Bundle, CanonicalBlock, CRCType

from . import aes_gcm, hmac_sha2
from .aes_gcm import AesVariant, BcbParameters
from .asb import AbstractSecurityBlock
from .errors import Reason, SecurityError
from .hmac_sha2 import BibParameters, ShaVariant
from .keywrap import wrap_key
from .scope import FULL_SCOPE, block_header, scope_prefix

PRIMARY_BLOCK = 0  # the number a security target uses for the primary block
# Enum members read once: looking one up on its class costs more than the comparison.
_BIB, _BCB, _PAYLOAD = BlockType.BIB, BlockType.BCB, BlockType.PAYLOAD
_SECURITY_TYPES = (_BIB, _BCB)
_REPLICATE = int(BlockFlags.REPLICATE_IN_FRAGMENTS)  # ints: IntFlag arithmetic is slow
_DISCARD = int(BlockFlags.DISCARD_IF_UNPROCESSABLE)

KeyLookup = Callable[[BlockType, EID], "bytes | None"]
"""Which key a security source used for a service: (BlockType.BIB or BCB, source) -> key."""
RandomBytes = Callable[[int], bytes]


def add_bib(
    bundle: Bundle,
    targets: Iterable[int],
    key: bytes,
    *,
    security_source: EID,
    variant: ShaVariant = hmac_sha2.DEFAULT_VARIANT,
    scope: int = FULL_SCOPE,
    key_wrap: bool = False,
    random_bytes: RandomBytes = os.urandom,
    block_number: int | None = None,
    flags: int = 0,
    crc_type: int = CRCType.NONE,
) -> CanonicalBlock:
    """Sign `targets` (block numbers, 0 for the primary block) with BIB-HMAC-SHA2 and add the BIB.

    With `key_wrap`, a fresh HMAC key signs and travels wrapped under `key`. ValueError when an
    RFC 9172 rule forbids the operation."""
    targets = _new_targets(bundle, targets)
    blocks = _blocks_by_number(bundle)
    covered = _covered_targets(bundle, blocks)
    for number in targets:
        if number != PRIMARY_BLOCK and blocks[number].block_type in _SECURITY_TYPES:
            raise ValueError(f"a BIB must not target security block {number} (RFC 9172 §3.7)")
        if number in covered[_BIB]:
            raise ValueError(f"block {number} already has a BIB (RFC 9172 §3.2)")
        if number in covered[_BCB]:
            raise ValueError(
                f"block {number} is encrypted already: a BIB goes on before the BCB (RFC 9172 §3.9)"
            )
    hmac_key, wrapped = key, None
    if key_wrap:
        hmac_key = random_bytes(variant.digest_size)
        wrapped = wrap_key(key, hmac_key)
    parameters = BibParameters(variant, _check_new_scope(scope), wrapped)
    number = _new_block_number(bundle, blocks, block_number)
    header = block_header(_BIB, number, flags)
    primary = bundle.primary.canonical_encoding()
    results = []
    for target_number in targets:
        target = blocks.get(target_number)
        data = primary if target is None else target.data_view
        prefix = scope_prefix(scope, primary, target, header)
        results.append(hmac_sha2.sign(hmac_key, variant, prefix, data))
    asb = AbstractSecurityBlock(
        targets, hmac_sha2.CONTEXT_ID, security_source, parameters.to_asb(), results
    )
    block = CanonicalBlock(_BIB, number, asb.encode(), flags, crc_type)
    _insert_security_block(bundle, block)
    return block


def add_bcb(
    bundle: Bundle,
    targets: Iterable[int],
    key: bytes,
    *,
    security_source: EID,
    variant: AesVariant = aes_gcm.DEFAULT_VARIANT,
    scope: int = FULL_SCOPE,
    key_wrap: bool = False,
    content_key: bytes | None = None,
    iv: bytes | None = None,
    random_bytes: RandomBytes = os.urandom,
    block_number: int | None = None,
    flags: int = _REPLICATE,
    crc_type: int = CRCType.NONE,
) -> CanonicalBlock:
    """Encrypt `targets` in place with BCB-AES-GCM and add the BCB.

    `key` is the AES key, or with `key_wrap` the key-encryption key for a content key
    (`content_key`, fresh when None). One IV serves every target of the block, as RFC 9173
    defines it: give a block more than one target only when that is what the RFC asks for (a BIB
    over the same target, 3.9). ValueError when an RFC 9172 rule forbids the operation."""
    targets = _new_targets(bundle, targets)
    blocks = _blocks_by_number(bundle)
    _check_new_bcb(bundle, targets, blocks, flags)
    if key_wrap:
        content_key = random_bytes(variant.key_size) if content_key is None else content_key
        wrapped = wrap_key(key, content_key)
    else:
        content_key, wrapped = key, None
    if len(content_key) != variant.key_size:
        raise ValueError(
            f"{variant.name} needs a {variant.key_size}-byte key, not {len(content_key)} bytes"
        )
    iv = random_bytes(aes_gcm.IV_SIZE) if iv is None else iv
    scope = _check_new_scope(scope)
    number = _new_block_number(bundle, blocks, block_number)
    header = block_header(_BCB, number, flags)
    primary = bundle.primary.canonical_encoding()
    results = []
    for target_number in targets:
        target = blocks[target_number]
        aad = scope_prefix(scope, primary, target, header)
        target.data, result = aes_gcm.encrypt(content_key, iv, target.data_view, aad)
        results.append(result)
    parameters = BcbParameters(iv, variant, scope, wrapped)
    asb = AbstractSecurityBlock(
        targets, aes_gcm.CONTEXT_ID, security_source, parameters.to_asb(), results
    )
    block = CanonicalBlock(_BCB, number, asb.encode(), flags, crc_type)
    _insert_security_block(bundle, block)
    return block


@dataclass(slots=True)
class Accepted:
    """What accepting a bundle's security blocks found: all of them decrypted and verified."""

    plaintext: dict[int, bytes] = field(default_factory=dict)  # decrypted target -> its data
    verified: set[int] = field(default_factory=set)  # targets whose BIB checked out
    security_blocks: list[int] = field(default_factory=list)  # the BIBs and BCBs processed

    @property
    def decrypted(self) -> set[int]:
        return set(self.plaintext)

    def apply(self, bundle: Bundle) -> None:
        """Put the plaintexts in place and drop the processed security blocks (RFC 9172 §5.1)."""
        for block in bundle.blocks:
            if block.number in self.plaintext:
                block.data = self.plaintext[block.number]
        processed = set(self.security_blocks)
        bundle.blocks = [block for block in bundle.blocks if block.number not in processed]


def accept(bundle: Bundle, keys: KeyLookup) -> Accepted:
    """Decrypt every BCB, then verify every BIB, as the bundle's security acceptor.

    SecurityError on the first failure: malformed block, broken RFC 9172 rule, unknown context,
    no key for a security source, failed decryption or failed integrity check."""
    accepted = Accepted()
    blocks = _blocks_by_number(bundle)
    security = [block for block in bundle.blocks if block.block_type in _SECURITY_TYPES]
    if not security:
        return accepted
    primary = bundle.primary.canonical_encoding()
    bcb_targets: dict[int, set[int]] = {}  # target -> the targets of the BCB that encrypted it
    for block in security:
        if block.block_type == _BCB:
            targets = _decrypt(block, blocks, primary, keys, accepted)
            for target in targets:
                bcb_targets[target] = targets
    for block in security:
        if block.block_type == _BIB:
            _verify(block, blocks, primary, keys, accepted, bcb_targets.get(block.number))
    return accepted


def _decrypt(
    bcb: CanonicalBlock,
    blocks: dict[int, CanonicalBlock],
    primary: bytes,
    keys: KeyLookup,
    accepted: Accepted,
) -> set[int]:
    what = f"BCB (block {bcb.number})"
    asb = _parse(bcb, bcb.data, aes_gcm.CONTEXT_ID, what)
    if bcb.flags & _DISCARD:
        _broken(what, "is marked 'discard if unprocessable' (RFC 9172 §3.8)")
    for number in asb.targets:
        target = blocks.get(number)
        if number == PRIMARY_BLOCK:
            _broken(what, "targets the primary block (RFC 9172 §3.8)")
        if target is None:
            _broken(what, f"targets block {number}, which is not in the bundle (RFC 9172 §3.6)")
        if target.block_type == _BCB:
            _broken(what, f"targets BCB {number} (RFC 9172 §3.8)")
        if number in accepted.plaintext:
            _broken(what, f"targets block {number}, which another BCB encrypts (RFC 9172 §3.2)")
        if target.block_type == _PAYLOAD and not bcb.flags & _REPLICATE:
            _broken(what, "targets the payload but is not replicated in fragments (RFC 9172 §3.8)")
    parameters = BcbParameters.from_asb(asb.parameters, what)
    content_key = parameters.content_key(_key(keys, _BCB, asb.source, what), what)
    header = block_header(_BCB, bcb.number, bcb.flags)
    for number, result in zip(asb.targets, asb.results, strict=True):
        target = blocks[number]
        aad = scope_prefix(parameters.scope, primary, target, header)
        accepted.plaintext[number] = aes_gcm.decrypt(
            content_key, parameters.iv, target.data_view, aad, result, what
        )
    accepted.security_blocks.append(bcb.number)
    return set(asb.targets)


def _verify(
    bib: CanonicalBlock,
    blocks: dict[int, CanonicalBlock],
    primary: bytes,
    keys: KeyLookup,
    accepted: Accepted,
    encrypted_with: set[int] | None,
) -> None:
    what = f"BIB (block {bib.number})"
    asb = _parse(bib, accepted.plaintext.get(bib.number, bib.data), hmac_sha2.CONTEXT_ID, what)
    if encrypted_with is not None and not encrypted_with & set(asb.targets):
        _broken(what, "is encrypted by a BCB it shares no target with (RFC 9172 §3.8)")
    for number in asb.targets:
        target = blocks.get(number)
        if number != PRIMARY_BLOCK and target is None:
            _broken(what, f"targets block {number}, which is not in the bundle (RFC 9172 §3.6)")
        if target is not None and target.block_type in _SECURITY_TYPES:
            _broken(what, f"targets security block {number} (RFC 9172 §3.7)")
        if number in accepted.plaintext and number not in (encrypted_with or ()):
            _broken(
                what,
                f"signs block {number}, which a BCB encrypts without this BIB (RFC 9172 §3.9)",
            )
        if number in accepted.verified:
            _broken(what, f"targets block {number}, which another BIB signs (RFC 9172 §3.2)")
    parameters = BibParameters.from_asb(asb.parameters, what)
    hmac_key = parameters.hmac_key(_key(keys, _BIB, asb.source, what), what)
    header = block_header(_BIB, bib.number, bib.flags)
    for number, result in zip(asb.targets, asb.results, strict=True):
        target = blocks.get(number)
        data = primary if target is None else accepted.plaintext.get(number, target.data_view)
        prefix = scope_prefix(parameters.scope, primary, target, header)
        hmac_sha2.verify(hmac_key, parameters.variant, prefix, data, result, what)
        accepted.verified.add(number)
    accepted.security_blocks.append(bib.number)


def _parse(block: CanonicalBlock, data: bytes, context_id: int, what: str) -> AbstractSecurityBlock:
    asb = AbstractSecurityBlock.decode(data, what)
    if asb.context_id != context_id:
        raise SecurityError(
            Reason.UNSUPPORTED_CONTEXT,
            f"{what}: security context "
            f"{asb.context_id} is not supported (this node has RFC 9173's "
            f"{context_id} for this block type)",
        )
    return asb


def _key(keys: KeyLookup, service: BlockType, source: EID, what: str) -> bytes:
    key = keys(service, source)
    if key is None:
        raise SecurityError(
            Reason.MISSING_KEY, f"{what}: no {service.name} key for security source {source}"
        )
    return key


def _broken(what: str, rule: str) -> None:
    raise SecurityError(Reason.RULE_BROKEN, f"{what} {rule}")


def _blocks_by_number(bundle: Bundle) -> dict[int, CanonicalBlock]:
    return {block.number: block for block in bundle.blocks}


def _new_targets(bundle: Bundle, targets: Iterable[int]) -> list[int]:
    targets = list(targets)
    if bundle.primary.is_fragment:
        raise ValueError("security blocks must not be added to a fragment (RFC 9172 §5.2)")
    if not targets or len(set(targets)) != len(targets):
        raise ValueError(f"security targets must be distinct and at least one: {targets}")
    numbers = {block.number for block in bundle.blocks}
    missing = [number for number in targets if number != PRIMARY_BLOCK and number not in numbers]
    if missing:
        raise ValueError(f"no block numbered {missing} in the bundle")
    return targets


def _new_block_number(
    bundle: Bundle, blocks: dict[int, CanonicalBlock], block_number: int | None
) -> int:
    if block_number is None:
        return bundle.next_block_number()
    if block_number <= PRIMARY_BLOCK or block_number in blocks:
        raise ValueError(f"block number {block_number} is reserved or in use")
    return block_number


def _check_new_scope(scope: int) -> int:
    if not 0 <= scope <= FULL_SCOPE:
        raise ValueError(f"scope flags must be 0..7 (RFC 9173), not {scope}")
    return scope


def _covered_targets(
    bundle: Bundle, blocks: dict[int, CanonicalBlock]
) -> dict[BlockType, dict[int, int]]:
    """For each service, target -> number of the security block that covers it. An encrypted
    BIB cannot be read; its targets are not listed."""
    covered: dict[BlockType, dict[int, int]] = {_BIB: {}, _BCB: {}}
    for block in bundle.blocks:
        if block.block_type == _BCB:
            asb = AbstractSecurityBlock.decode(block.data, f"BCB (block {block.number})")
            covered[_BCB].update(dict.fromkeys(asb.targets, block.number))
    for block in bundle.blocks:
        if block.block_type == _BIB and block.number not in covered[_BCB]:
            asb = AbstractSecurityBlock.decode(block.data, f"BIB (block {block.number})")
            covered[_BIB].update(dict.fromkeys(asb.targets, block.number))
    return covered


def _check_new_bcb(
    bundle: Bundle, targets: list[int], blocks: dict[int, CanonicalBlock], flags: int
) -> None:
    if flags & _DISCARD:
        raise ValueError("a BCB must not be marked 'discard if unprocessable' (RFC 9172 §3.8)")
    covered = _covered_targets(bundle, blocks)
    target_set = set(targets)
    for number in targets:
        if number == PRIMARY_BLOCK:
            raise ValueError("a BCB must not target the primary block (RFC 9172 §3.8)")
        target = blocks[number]
        if target.block_type == _BCB:
            raise ValueError(f"a BCB must not target BCB {number} (RFC 9172 §3.8)")
        if number in covered[_BCB]:
            raise ValueError(f"block {number} is encrypted already (RFC 9172 §3.2)")
        if target.block_type == _PAYLOAD and not flags & _REPLICATE:
            raise ValueError(
                "a BCB over the payload must be replicated in fragments (RFC 9172 §3.8)"
            )
    bib_targets: dict[int, set[int]] = {}
    for target, bib in covered[_BIB].items():
        bib_targets.setdefault(bib, set()).add(target)
    for bib, signed in bib_targets.items():
        shared = signed & target_set
        if bib in target_set and not shared:
            raise ValueError(
                f"a BCB may target BIB {bib} only with one of its targets (RFC 9172 §3.8)"
            )
        if shared and bib not in target_set:
            raise ValueError(
                f"blocks {sorted(shared)} carry BIB {bib}: "
                "encrypt the BIB with them (RFC 9172 §3.9)"
            )
        if shared and shared != signed:
            raise ValueError(
                f"BIB {bib} also signs blocks {sorted(signed - shared)}, which this "
                "BCB leaves in the clear: RFC 9172 §3.9 would split the BIB, which "
                "this node does not do; encrypt them all, or none"
            )


def _insert_security_block(bundle: Bundle, block: CanonicalBlock) -> None:
    position = 0
    while bundle.blocks[position].block_type in _SECURITY_TYPES:
        position += 1
    bundle.blocks.insert(position, block)
