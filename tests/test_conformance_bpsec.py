"""RFC 9172 (BPSec) conformance: one test per row of the `## RFC 9172 BPSec` table in
docs/conformance.md. Each breaks exactly one rule, as a sender that ignores RFC 9172 would, and
expects the acceptor to refuse it with a SecurityError naming the rule; the nearest valid bundle
is accepted."""

from contextlib import contextmanager
from dataclasses import replace

import pytest
from pipeline_helpers import KEYS as NODE_KEYS
from pipeline_helpers import receive, send
from test_agent_harness import T0, chain
from test_agent_harness import pair as agent_pair
from test_conformance_format import PAYLOAD, primary
from test_conformance_format import bundle as raw_bundle
from test_payload_pipeline import pair
from test_security_bpsec import KEY32, SOURCE, forged, keys_for, make_bundle

from dtn.bundle import (
    EID,
    BlockFlags,
    BlockType,
    Bundle,
    BundleError,
    BundleFlags,
    CanonicalBlock,
)
from dtn.bundle.admin import DELIVERED, decode_status_report
from dtn.payload import PayloadPipeline, PayloadReason, PayloadRejected
from dtn.payload.pipeline import check_required
from dtn.security import (
    AbstractSecurityBlock,
    Reason,
    SecurityError,
    SecurityPolicy,
    SecurityRule,
    accept,
    add_bcb,
    add_bib,
)

KEYS = keys_for(KEY32, KEY32)
UNKNOWN_TYPE = 200  # what a security block looks like to a sender that ignores it
EXTENSION = 3  # make_bundle's extension block (type 200, CRC-32C); 2 is its hop count block


def received(bundle: Bundle) -> Bundle:
    return Bundle.decode(bundle.encode())


def refused(bundle: Bundle, rule: str, reason: Reason = Reason.RULE_BROKEN) -> SecurityError:
    """Accepting `bundle` fails for `reason`, citing `rule` (e.g. "§3.8")."""
    with pytest.raises(SecurityError, match=f"RFC 9172 {rule}") as caught:
        accept(received(bundle), KEYS)
    assert caught.value.reason == reason
    return caught.value


def accepted(bundle: Bundle):
    return accept(received(bundle), KEYS)


@contextmanager
def unseen(*blocks: CanonicalBlock):
    """Hide security blocks from the `add_*` checks: a sender that does not know them."""
    types = [block.block_type for block in blocks]
    for block in blocks:
        block.block_type = UNKNOWN_TYPE
    try:
        yield
    finally:
        for block, block_type in zip(blocks, types, strict=True):
            block.block_type = block_type


def bib(bundle: Bundle, targets: list[int], **options) -> CanonicalBlock:
    return add_bib(bundle, targets, KEY32, security_source=SOURCE, **options)


def bcb(bundle: Bundle, targets: list[int], **options) -> CanonicalBlock:
    return add_bcb(bundle, targets, KEY32, security_source=SOURCE, **options)


def asb_bytes(*items: bytes) -> bytes:
    """An ASB (a CBOR sequence) from encoded items."""
    return b"".join(items)


# The items of a one-target ASB, encoded: targets [1], context 1, flags 0, source ipn:1.0,
# results [[[1, h'00']]].
TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE = b"\x81\x01", b"\x01", b"\x00", b"\x82\x02\x82\x01\x00"
RESULTS = b"\x81\x81\x82\x01\x41\x00"


def decode_asb(data: bytes) -> AbstractSecurityBlock:
    return AbstractSecurityBlock.decode(data, "BIB (block 2)")


def malformed(data: bytes) -> None:
    with pytest.raises(SecurityError, match="RFC 9172 §3.6") as caught:
        decode_asb(data)
    assert caught.value.reason == Reason.MALFORMED


# === §3.2 uniqueness of security operations =================================================


def test_3_2_one_bib_per_target():
    bundle = make_bundle()
    first = bib(bundle, [1])
    assert accepted(bundle).verified == {1}
    with unseen(first):
        bib(bundle, [1])
    refused(bundle, "§3.2")


def test_3_2_one_bcb_per_target():
    bundle = make_bundle()
    first = bcb(bundle, [1])
    assert accepted(bundle).decrypted == {1}
    with unseen(first):
        bcb(bundle, [1])  # encrypts the ciphertext again, and is decrypted first
    refused(bundle, "§3.2")


def test_3_2_a_bib_and_a_bcb_may_share_a_target():
    bundle = make_bundle()
    signature = bib(bundle, [1])
    bcb(bundle, [signature.number, 1])
    result = accepted(bundle)
    assert result.verified == {1} and result.decrypted == {1, signature.number}


# === §3.3 target multiplicity =============================================================


def test_3_3_one_block_may_carry_several_operations():
    bundle = make_bundle()
    bib(bundle, [0, 1, EXTENSION])
    assert accepted(bundle).verified == {0, 1, EXTENSION}
    bundle.block_by_number(EXTENSION).data = b"EXTENSION"  # one operation of three fails
    with pytest.raises(SecurityError) as caught:
        accepted(bundle)
    assert caught.value.reason == Reason.INTEGRITY_FAILED


# === §3.6 abstract security block ==========================================================


def test_3_6_targets_not_empty():
    decode_asb(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS))
    malformed(asb_bytes(b"\x80", CONTEXT, NO_FLAGS, IPN_SOURCE, b"\x80"))
    refused(forged(make_bundle(), BlockType.BIB, []), "§3.6", Reason.MALFORMED)


@pytest.mark.parametrize("block_type", [BlockType.BIB, BlockType.BCB])
def test_3_6_targets_exist_in_the_bundle(block_type):
    error = refused(forged(make_bundle(), block_type, [9], flags=1), "§3.6")
    assert "block 9" in str(error)
    bundle = make_bundle()
    (bib if block_type == BlockType.BIB else bcb)(bundle, [EXTENSION])
    accepted(bundle)


def test_3_6_targets_not_repeated():
    malformed(asb_bytes(b"\x82\x01\x01", CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS[:1] + RESULTS))
    refused(forged(make_bundle(), BlockType.BIB, [1, 1]), "§3.6", Reason.MALFORMED)
    bundle = make_bundle()
    bib(bundle, [1, EXTENSION])
    assert accepted(bundle).verified == {1, EXTENSION}


def test_3_6_targets_are_block_numbers():
    malformed(asb_bytes(b"\x81\x61\x31", CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS))  # ["1"]
    assert decode_asb(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS)).targets == [1]


def test_3_6_context_id_is_a_signed_integer():
    malformed(asb_bytes(TARGETS, b"\x61\x31", NO_FLAGS, IPN_SOURCE, RESULTS))  # "1"
    negative = decode_asb(asb_bytes(TARGETS, b"\x20", NO_FLAGS, IPN_SOURCE, RESULTS))
    assert negative.context_id == -1


def test_3_6_parameters_present_iff_flag_bit_0():
    parameters = b"\x81\x82\x01\x07"  # [[1, 7]]
    with_them = decode_asb(asb_bytes(TARGETS, CONTEXT, b"\x01", IPN_SOURCE, parameters, RESULTS))
    assert with_them.parameters == {1: 7}
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, parameters, RESULTS))
    malformed(asb_bytes(TARGETS, CONTEXT, b"\x01", IPN_SOURCE, RESULTS))


def test_3_6_reserved_context_flags_ignored_and_written_zero():
    asb = decode_asb(asb_bytes(TARGETS, CONTEXT, b"\x18\x82", IPN_SOURCE, RESULTS))  # 0x82
    assert asb.parameters == {}
    assert asb.encode() == asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS)
    malformed(asb_bytes(TARGETS, CONTEXT, b"\x41\x00", IPN_SOURCE, RESULTS))  # not a uint


def test_3_6_security_source_is_an_eid():
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, b"\x01", RESULTS))
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, b"\x82\x02\x01", RESULTS))
    assert str(decode_asb(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS)).source) == (
        "ipn:1.0"
    )


def test_3_6_one_result_set_per_target():
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, b"\x80"))
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, b"\x82\x80\x80"))
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS, b"\x00"))  # left over


def test_3_6_results_in_target_order():
    bundle = make_bundle()
    block = bib(bundle, [1, EXTENSION])
    accepted(bundle)
    asb = AbstractSecurityBlock.decode(block.data)
    asb.results.reverse()
    block.data = asb.encode()
    with pytest.raises(SecurityError) as caught:
        accept(received(bundle), KEYS)
    assert caught.value.reason == Reason.INTEGRITY_FAILED


def test_3_6_pairs_are_id_and_value():
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, b"\x81\x81\x83\x01\x41\x00\x00"))
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, b"\x81\x81\x82\x20\x41\x00"))
    assert decode_asb(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, RESULTS)).results == [
        {1: b"\x00"}
    ]


def test_3_10_ids_unique_within_a_set():
    repeated, distinct = b"\x81\x82\x82\x01\x00\x82\x01\x00", b"\x81\x82\x82\x01\x00\x82\x02\x00"
    malformed(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, repeated))
    both = decode_asb(asb_bytes(TARGETS, CONTEXT, NO_FLAGS, IPN_SOURCE, distinct))
    assert both.results == [{1: 0, 2: 0}]


@pytest.mark.parametrize(("block_type", "context_id"), [(BlockType.BIB, 2), (BlockType.BCB, 1)])
def test_3_6_context_fits_the_block_type(block_type, context_id):
    bundle = make_bundle()
    block = (bib if block_type == BlockType.BIB else bcb)(bundle, [1])
    accepted(bundle)
    asb = AbstractSecurityBlock.decode(block.data)
    asb.context_id = context_id
    block.data = asb.encode()
    with pytest.raises(SecurityError, match="not supported") as caught:
        accept(received(bundle), KEYS)
    assert caught.value.reason == Reason.UNSUPPORTED_CONTEXT


def test_3_7_3_8_block_type_codes():
    bundle = make_bundle()
    assert bib(bundle, [1]).block_type == BlockType.BIB == 11
    assert bcb(bundle, [EXTENSION]).block_type == BlockType.BCB == 12
    accepted(bundle)


@pytest.mark.parametrize("block_type", [BlockType.BIB, BlockType.BCB])
def test_3_7_3_8_data_is_an_asb(block_type):
    bundle = make_bundle()
    block = (bib if block_type == BlockType.BIB else bcb)(bundle, [EXTENSION])
    accepted(bundle)
    block.data = b"\x01" + block.data  # a uint, then the ASB: not an ASB any more
    refused(bundle, "§3.6", Reason.MALFORMED)


def test_3_8_encrypted_in_place():
    bundle = make_bundle()
    target = bundle.block_by_number(EXTENSION)
    header = (target.block_type, target.number, target.flags, target.crc_type)
    bcb(bundle, [EXTENSION])
    assert (target.block_type, target.number, target.flags, target.crc_type) == header
    assert target.data != b"extension" and len(target.data) == len(b"extension")  # tag: result
    assert accepted(bundle).plaintext == {EXTENSION: b"extension"}


def test_3_8_bcb_targets_the_payload_an_extension_block_or_a_bib():
    bundle = make_bundle()
    signature = bib(bundle, [1])
    bcb(bundle, [1, EXTENSION, signature.number])
    assert accepted(bundle).decrypted == {1, EXTENSION, signature.number}


# === §3.7 BIB ==============================================================================


def test_3_7_bib_does_not_target_a_bib():
    bundle = make_bundle()
    signature = bib(bundle, [1])
    refused(forged(bundle, BlockType.BIB, [signature.number], flags=0), "§3.7")
    bundle = make_bundle()
    bib(bundle, [0, 1])
    assert accepted(bundle).verified == {0, 1}  # the primary block may be a BIB target


def test_3_7_bib_does_not_target_a_bcb():
    bundle = make_bundle()
    encryption = bcb(bundle, [EXTENSION])
    refused(forged(bundle, BlockType.BIB, [encryption.number], flags=0), "§3.7")
    with pytest.raises(ValueError, match="RFC 9172 §3.7"):
        bib(bundle, [encryption.number])


# === §3.8 BCB ==============================================================================


def test_3_8_bcb_does_not_target_the_primary_block():
    refused(forged(make_bundle(), BlockType.BCB, [0]), "§3.8")
    with pytest.raises(ValueError, match="RFC 9172 §3.8"):
        bcb(make_bundle(), [0])


def test_3_8_bcb_does_not_target_a_bcb():
    bundle = make_bundle()
    encryption = bcb(bundle, [EXTENSION])
    refused(forged(bundle, BlockType.BCB, [encryption.number]), "§3.8")
    with pytest.raises(ValueError, match="RFC 9172 §3.8"):
        bcb(bundle, [encryption.number])


def test_3_8_bcb_targets_a_bib_only_with_a_shared_target():
    bundle = make_bundle()
    signature = bib(bundle, [EXTENSION])
    with unseen(signature):
        bcb(bundle, [signature.number], scope=0)  # scope 0: the disguise is not in the AAD
    refused(bundle, "§3.8")
    bundle = make_bundle()
    signature = bib(bundle, [EXTENSION])
    bcb(bundle, [signature.number, EXTENSION])
    accepted(bundle)


def test_3_8_bcb_over_the_payload_replicated_in_fragments():
    refused(forged(make_bundle(), BlockType.BCB, [1], flags=0), "§3.8")
    with pytest.raises(ValueError, match="RFC 9172 §3.8"):
        bcb(make_bundle(), [1], flags=0)
    bundle = make_bundle()
    bcb(bundle, [EXTENSION], flags=0)  # only a BCB over the payload needs the flag
    accepted(bundle)


def test_3_8_bcb_not_discarded_if_unprocessable():
    flags = BlockFlags.REPLICATE_IN_FRAGMENTS | BlockFlags.DISCARD_IF_UNPROCESSABLE
    refused(forged(make_bundle(), BlockType.BCB, [1], flags=int(flags)), "§3.8")
    with pytest.raises(ValueError, match="RFC 9172 §3.8"):
        bcb(make_bundle(), [1], flags=int(flags))
    bundle = make_bundle()
    bcb(bundle, [1], flags=int(BlockFlags.REPLICATE_IN_FRAGMENTS))
    accepted(bundle)


def test_3_8_target_crc_covers_the_ciphertext():
    bundle = make_bundle()  # the extension block carries a CRC-32C
    bcb(bundle, [EXTENSION])
    again = received(bundle)
    assert again.block_by_number(EXTENSION).crc_type == 2
    result = accept(again, KEYS)
    assert result.plaintext[EXTENSION] == b"extension"


# === §3.9 block interactions ===============================================================


def test_3_9_no_bib_over_an_encrypted_target():
    bundle = make_bundle()
    encryption = bcb(bundle, [EXTENSION])
    with pytest.raises(ValueError, match="RFC 9172 §3.9"):
        bib(bundle, [EXTENSION])
    with unseen(encryption):
        bib(bundle, [EXTENSION])  # signs the ciphertext
    refused(bundle, "§3.9")


def test_3_9_bcb_over_a_bib_target_also_encrypts_the_bib():
    bundle = make_bundle()
    signature = bib(bundle, [EXTENSION])
    with pytest.raises(ValueError, match="RFC 9172 §3.9"):
        bcb(bundle, [EXTENSION])
    with unseen(signature):
        bcb(bundle, [EXTENSION])  # leaves the BIB in the clear
    refused(bundle, "§3.9")
    bundle = make_bundle()
    signature = bib(bundle, [EXTENSION])
    bcb(bundle, [signature.number, EXTENSION])
    assert accepted(bundle).decrypted == {signature.number, EXTENSION}


def test_3_9_bib_is_not_split():
    bundle = make_bundle()
    signature = bib(bundle, [1, EXTENSION])
    with pytest.raises(ValueError, match="split the BIB"):
        bcb(bundle, [signature.number, EXTENSION])
    bcb(bundle, [signature.number, 1, EXTENSION])
    assert accepted(bundle).verified == {1, EXTENSION}


# === §4 canonical forms ====================================================================


def test_4_reserved_block_flags_not_in_the_canonical_form():
    bundle = make_bundle()
    bib(bundle, [EXTENSION])
    bundle.block_by_number(EXTENSION).flags |= 0x80  # an unassigned bit: not covered
    accepted(bundle)
    bundle.block_by_number(EXTENSION).flags |= int(BlockFlags.REPLICATE_IN_FRAGMENTS)  # covered
    with pytest.raises(SecurityError) as caught:
        accept(received(bundle), KEYS)
    assert caught.value.reason == Reason.INTEGRITY_FAILED


def test_4_non_primary_block_canonical_form_is_deterministic():
    """A block's canonical header is its values in shortest form; a block that arrives encoded
    otherwise is refused before security processing (RFC 9171 §4.1), so no IPPT is ambiguous."""
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", PAYLOAD, creation_time=1, sequence=1)
    number = bundle.next_block_number()
    bundle.insert_block(CanonicalBlock(UNKNOWN_TYPE, number, b"extension", 0, 0))
    bib(bundle, [number])
    wire = bundle.encode()
    shortest = bytes([0x85, 0x18, UNKNOWN_TYPE, number, 0, 0, 0x49]) + b"extension"
    assert accept(Bundle.decode(wire), KEYS).verified == {number}
    longer = bytes([0x85, 0x18, UNKNOWN_TYPE, 0x18, number, 0, 0, 0x49]) + b"extension"
    assert wire.count(shortest) == 1
    with pytest.raises(BundleError, match="non-shortest"):
        Bundle.decode(wire.replace(shortest, longer))


def test_4_only_block_type_specific_data_is_encrypted():
    bundle = make_bundle()
    target = bundle.block_by_number(EXTENSION)
    bcb(bundle, [EXTENSION], scope=0)  # scope 0: the header is not even in the AAD
    assert len(target.data) == len(b"extension")  # the ciphertext holds the data, nothing else
    target.flags |= int(BlockFlags.REPORT_IF_UNPROCESSABLE)  # a header field: not encrypted
    assert accepted(bundle).plaintext == {EXTENSION: b"extension"}
    target.data = bytes([target.data[0] ^ 1]) + target.data[1:]  # the data is
    with pytest.raises(SecurityError) as caught:
        accepted(bundle)
    assert caught.value.reason == Reason.DECRYPTION_FAILED


# === §5 security processing ================================================================


def test_5_1_acceptor_processes_and_removes_security_blocks():
    bundle = make_bundle()
    plain = bundle.encode()
    signature = bib(bundle, [1])
    bcb(bundle, [signature.number, 1])
    again = received(bundle)
    result = accept(again, KEYS)
    assert again.encode() == bundle.encode()  # accepting alone changes nothing
    result.apply(again)
    assert again.encode() == plain


def test_5_1_1_plaintext_replaces_the_ciphertext_reframed():
    payload = b"x" * 30  # RFC 9173 keeps the tag in the result: ciphertext and plaintext agree
    bundle = make_bundle(payload)
    bcb(bundle, [1])
    again = received(bundle)
    accept(again, KEYS).apply(again)
    assert again.payload == payload
    assert again.block_of_type(BlockType.BCB) is None  # no operation left: the BCB is gone
    assert Bundle.decode(again.encode()).payload == payload  # valid CBOR byte string


def test_5_1_1_destination_decrypts_before_delivery():
    earth, mars = pair({"bcb": "A256GCM", "key": "link"})
    wire = send(earth, b"secret", 1)
    sent = Bundle.decode(wire)
    assert sent.block_of_type(BlockType.BCB) is not None and b"secret" not in sent.payload
    assert receive(mars, wire) == b"secret"


def test_5_1_2_verified_bib_is_removed_by_the_acceptor_only():
    bundle = make_bundle()
    bib(bundle, [1, EXTENSION])
    again = received(bundle)
    result = accept(again, KEYS)  # a waypoint: verifies, removes nothing
    assert again.block_of_type(BlockType.BIB) is not None
    result.apply(again)  # the acceptor: every operation done, the BIB goes
    assert again.block_of_type(BlockType.BIB) is None


def test_5_1_2_failed_verification_refuses_the_bundle():
    bundle = make_bundle()
    bib(bundle, [1])
    accepted(bundle)
    bundle.block_by_number(1).data = b"hello venus" * 8
    again = received(bundle)
    before = again.encode()
    with pytest.raises(SecurityError, match="BIB") as caught:
        accept(again, KEYS)
    assert caught.value.reason == Reason.INTEGRITY_FAILED
    assert again.encode() == before


def test_5_1_2_bib_over_a_bcb_target_not_processed_in_the_clear():
    bundle = make_bundle()
    encryption = bcb(bundle, [1])
    with unseen(encryption):
        bib(bundle, [1])  # a BIB in the clear over the ciphertext
    refused(bundle, "§3.9")
    bundle = make_bundle()
    signature = bib(bundle, [1])
    bcb(bundle, [1, signature.number])  # encrypted with its target: checked once decrypted
    assert accepted(bundle).verified == {1}


def test_5_1_1_bcbs_decrypted_before_bibs_verified():
    bundle = make_bundle()
    signature = bib(bundle, [1])
    bcb(bundle, [signature.number, 1])
    result = accepted(bundle)  # the BIB is readable only once decrypted
    assert result.security_blocks.index(signature.number) == 1


def test_5_1_failure_leaves_the_bundle_unchanged():
    bundle = make_bundle()
    bcb(bundle, [1])
    again = received(bundle)
    before = again.encode()
    with pytest.raises(SecurityError) as caught:
        accept(again, keys_for(bytes(32), KEY32))
    assert caught.value.reason == Reason.DECRYPTION_FAILED
    assert again.encode() == before


def test_5_2_no_security_blocks_added_to_a_fragment():
    fragment = make_bundle()
    fragment.primary.flags |= BundleFlags.IS_FRAGMENT
    fragment.primary.fragment_offset, fragment.primary.total_adu_length = 0, 1000
    for add in (bib, bcb):
        with pytest.raises(ValueError, match="RFC 9172 §5.2"):
            add(fragment, [1])
    bundle = make_bundle()
    bib(bundle, [1])
    accepted(bundle)


# === §6 key management, §7 policy ==========================================================


def test_6_keys_by_security_source():
    policy = SecurityPolicy.from_config(
        {"rule": [{"source": "ipn:1.*", "bcb": "A256GCM", "key": "link"}]}
    )
    assert policy.inbound(SOURCE).key_id(BlockType.BCB) == "link"
    bundle = make_bundle()
    bcb(bundle, [1])
    with pytest.raises(SecurityError, match="ipn:1.0") as caught:
        accept(received(bundle), keys_for(None, KEY32))
    assert caught.value.reason == Reason.MISSING_KEY
    accepted(bundle)


@pytest.mark.usefixtures("fast_path")
def test_3_9_node_refuses_a_clear_bib_over_its_encrypted_payload():
    """Through a node's payload pipeline, on the C path and in Python: a sender it knows (the
    first bundle teaches it the sender's BCB) adds a BIB in the clear over the ciphertext."""
    earth, mars = pair({"bcb": "A256GCM", "key": "link"})
    assert receive(mars, send(earth, b"first", 1)) == b"first"
    assert receive(mars, send(earth, b"second", 2)) == b"second"
    bundle = Bundle.decode(send(earth, b"third", 3))
    with unseen(bundle.block_of_type(BlockType.BCB)):
        bib(bundle, [1])
    with pytest.raises(PayloadRejected, match="RFC 9172 §3.9") as caught:
        receive(mars, bundle.encode())
    assert caught.value.reason == Reason.RULE_BROKEN


def test_4_primary_block_canonical_form_is_deterministic():
    """A BIB over the primary block signs its deterministic encoding, also when the bundle
    arrives with another one (a chunked text string, which RFC 9171 allows and keeps)."""
    chunked = b"\x82\x01\x7f\x62//\x66node/x\xff"  # dtn://node/x
    raw = raw_bundle(primary(dst=chunked), PAYLOAD)
    arrived = Bundle.decode(raw)
    deterministic = Bundle.decode(raw)
    deterministic.primary = replace(deterministic.primary, _encoded=None)
    assert deterministic.primary.encode() != arrived.primary.encode()
    signature = bib(deterministic, [0])  # what a sender that encodes deterministically signs
    arrived.insert_block(signature)
    wire = arrived.encode()
    assert wire.startswith(raw[:1] + primary(dst=chunked))  # still as it arrived
    assert accept(Bundle.decode(wire), KEYS).verified == {0}


# === what a node does where RFC 9172 leaves it a choice, and per operation =================


def rule(**fields) -> SecurityRule:
    """The inbound rule a node holds for SOURCE (ipn:1.0)."""
    return SecurityPolicy.from_config({"rule": [{"source": "ipn:1.*", **fields}]}).inbound(SOURCE)


def outcome(bundle: Bundle, required: SecurityRule) -> tuple:
    """What a node's acceptor and policy make of a bundle: what it decrypted and verified, or
    why it refused it (and the bundle is left as it came)."""
    again = received(bundle)
    before = again.encode()
    try:
        result = accept(again, KEYS)
        check_required(required, result, True, SOURCE)
    except (SecurityError, PayloadRejected) as exc:
        assert again.encode() == before
        return ("refused", exc.reason)
    return ("accepted", result.plaintext, result.verified)


def tamper(bundle: Bundle, number: int) -> None:
    block = bundle.block_by_number(number)
    block.data = bytes([block.data[0] ^ 1]) + block.data[1:]


def grouped_and_split(add, targets: list[int], policy, broken: int | None = None) -> list:
    """The outcomes for one block of `add` over all `targets`, then one block per target."""
    outcomes = []
    for blocks in ([targets], [[target] for target in targets]):
        bundle = make_bundle()
        for block_targets in blocks:
            add(bundle, block_targets)
        if broken is not None:
            tamper(bundle, broken)
        outcomes.append(outcome(bundle, policy))
    return outcomes


@pytest.mark.parametrize("broken", [None, 1, EXTENSION])
def test_5_1_2_each_bib_operation_as_its_own_block(broken):
    """A BIB over the payload and an extension block, against two one-target BIBs: the same
    outcome when both operations pass and when either fails, and the policy (a BIB over the
    payload) is met by the payload's operation, whichever block carries it."""
    outcomes = grouped_and_split(bib, [1, EXTENSION], rule(bib="HMAC-SHA-256", key="k"), broken)
    assert outcomes[0] == outcomes[1]
    if broken is None:
        assert outcomes[0] == ("accepted", {}, {1, EXTENSION})
    else:
        assert outcomes[0] == ("refused", Reason.INTEGRITY_FAILED)


def test_5_1_2_policy_checks_each_operation_target():
    """The policy asks for the payload's operation, not for a BIB: a BIB whose two operations
    pass but neither covers the payload is refused as one-target BIBs over those blocks are."""
    outcomes = grouped_and_split(bib, [0, EXTENSION], rule(bib="HMAC-SHA-256", key="k"))
    assert outcomes[0] == outcomes[1] == ("refused", PayloadReason.POLICY)


@pytest.mark.parametrize("broken", [None, 1, EXTENSION])
def test_5_1_1_each_bcb_operation_as_its_own_block(broken):
    """A BCB over the payload and an extension block, against two one-target BCBs: the same
    plaintexts when both operations pass, the same refusal when either fails; the policy (a BCB
    over the payload) is met by the payload's operation, and not by the extension block's."""
    required = rule(bcb="A256GCM", key="k")
    outcomes = grouped_and_split(bcb, [1, EXTENSION], required, broken)
    assert outcomes[0] == outcomes[1]
    if broken is None:
        plaintext = {1: make_bundle().payload, EXTENSION: b"extension"}
        assert outcomes[0] == ("accepted", plaintext, set())
    else:
        assert outcomes[0] == ("refused", Reason.DECRYPTION_FAILED)
    bundle = make_bundle()
    bcb(bundle, [EXTENSION])  # the one operation there is does not cover the payload
    assert outcome(bundle, required) == ("refused", PayloadReason.POLICY)


def test_4_integrity_scope_beyond_the_block_data():
    """RFC 9173's scope flags (the rule's `scope`, default 7) put the primary block and the
    target's and BIB's headers under the HMAC too; scope 0 covers the block data alone."""
    for scope, covered in ((7, True), (1, True), (2, True), (0, False)):
        bundle = make_bundle()
        bib(bundle, [EXTENSION], scope=scope)
        accepted(bundle)
        changed = received(bundle)
        if scope in (7, 1, 0):  # the primary block: another lifetime
            changed.primary = replace(changed.primary, lifetime=1, _encoded=None)
        else:  # the target's header: an assigned block flag
            changed.block_by_number(EXTENSION).flags |= int(BlockFlags.REPLICATE_IN_FRAGMENTS)
        if covered:
            with pytest.raises(SecurityError) as caught:
                accept(received(changed), KEYS)
            assert caught.value.reason == Reason.INTEGRITY_FAILED
        else:
            assert accept(received(changed), KEYS).verified == {EXTENSION}
    assert rule(bib="HMAC-SHA-256", key="k").scope == 7


@pytest.mark.parametrize(
    ("policy", "change", "reason"),
    [
        ({"bcb": "A256GCM", "key": "link"}, "payload", Reason.DECRYPTION_FAILED),
        ({"bib": "HMAC-SHA-512", "key": "sign"}, "payload", Reason.INTEGRITY_FAILED),
        ({"bcb": "A256GCM", "key": "link"}, "bcb", Reason.RULE_BROKEN),
    ],
)
def test_5_1_security_failure_is_refused_and_counted_not_reported(policy, change, reason):
    """This node takes none of RFC 9172's MAYs to report a failed or deleted operation: the
    pipeline refuses the bundle with a reason, counts it, delivers nothing and makes no bundle
    (no status report) of its own."""
    earth, mars = pair(policy)
    bundle = Bundle.decode(send(earth, b"status?", 1))
    bundle.primary = replace(
        bundle.primary, flags=bundle.primary.flags | BundleFlags.REPORT_DELETION, _encoded=None
    )
    if change == "payload":
        tamper(bundle, 1)
    else:  # a BCB marked "discard if unprocessable" (RFC 9172 §3.8)
        bundle.block_of_type(BlockType.BCB).flags |= int(BlockFlags.DISCARD_IF_UNPROCESSABLE)
    with pytest.raises(PayloadRejected) as caught:
        receive(mars, bundle.encode())
    assert caught.value.reason == reason
    assert mars.rejections == {reason: 1} and "delivered" not in mars.counts
    assert "sealed" not in mars.counts  # it sent nothing


def test_5_1_2_no_bib_required_over_an_extension_block():
    """The policy asks a BIB only over the payload (or, with a BCB, the primary block), whose
    absence refuses the bundle; an extension block without one is kept and never removed."""
    earth, mars = pair({"bib": "HMAC-SHA-512", "key": "sign"})
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", b"data", creation_time=1, sequence=1)
    bundle.insert_block(CanonicalBlock(UNKNOWN_TYPE, bundle.next_block_number(), b"extra", 0, 0))
    wire = earth.seal(bundle).encode()
    arrived = Bundle.decode(wire)
    assert accept(arrived, mars.key_for).verified == {1}  # the payload's BIB, no other
    assert mars.deliver(arrived) == b"data"
    assert arrived.encode() == wire


def test_5_1_1_waypoint_forwards_a_bcb_unprocessed(tmp_path):
    """a (ipn:1.0) encrypts for c (ipn:3.0) through b. The agent relays a bundle for another
    node without the payload pipeline, so no policy directs b to process the BCB: the BCB and
    the ciphertext reach c as a sent them, and c decrypts."""
    policy = {"bcb": "A256GCM", "key": "link"}
    a_pipeline = PayloadPipeline(
        SecurityPolicy.from_config({"rule": [{"destination": "ipn:3.*", **policy}]}),
        NODE_KEYS,
        SOURCE,
    )
    c_pipeline = PayloadPipeline(
        SecurityPolicy.from_config({"rule": [{"source": "ipn:1.*", **policy}]}),
        NODE_KEYS,
        EID.parse("ipn:3.0"),
    )
    net = chain(tmp_path)
    sent = a_pipeline.send(b"for c only", "ipn:1.1", "ipn:3.1", creation_time=int(T0 * 1000))
    secured = {
        b.number: b.encode()
        for b in sent.blocks
        if b.block_type in (BlockType.BCB, BlockType.PAYLOAD)
    }
    net.nodes["a"].agent.submit_bundle(Bundle.decode(sent.encode()), net.now)
    net.contact("a", "b", True)
    net.contact("b", "c", True)
    net.run_until(T0 + 100)
    relayed = [Bundle.decode(d) for _, src, dst, d in net.sent if (src, dst) == ("b", "c")]
    assert len(relayed) == 1 and net.nodes["b"].agent.counters["transmitted"] >= 1
    for bundle in (relayed[0], net.nodes["c"].delivered[0].bundle):
        assert {n: bundle.block_by_number(n).encode() for n in secured} == secured
    assert c_pipeline.deliver(net.nodes["c"].delivered[0].bundle) == b"for c only"


def test_5_1_refused_payload_is_not_reported_delivered(tmp_path):
    """A bundle that asks for delivery and deletion reports, its ciphertext broken on the way:
    the receiving node refuses it and tells its agent so (as the daemon does), and no report
    goes back, neither "delivered" nor "deleted"; an intact one is reported delivered."""
    earth, mars = pair({"bcb": "A256GCM", "key": "link"})
    net = agent_pair(tmp_path)
    a, b = net.nodes["a"], net.nodes["b"]
    b.ack_deliveries = False
    flags = BundleFlags.REPORT_DELIVERY | BundleFlags.REPORT_DELETION
    for sequence, broken in ((1, True), (2, False)):
        bundle = earth.send(
            b"report?", "ipn:1.1", "ipn:2.1", creation_time=int(T0 * 1000),
            sequence=sequence, report_to="ipn:1.9", flags=flags,
        )  # fmt: skip
        if broken:
            tamper(bundle, 1)
        a.agent.submit_bundle(bundle, net.now)
    net.contact("a", "b", True)
    net.run_until(T0 + 10)
    for delivery in b.delivered:
        try:
            mars.deliver(delivery.bundle)
        except PayloadRejected:
            b.agent.delivered(delivery.delivery_id, net.now, refused=True)
        else:
            b.agent.delivered(delivery.delivery_id, net.now)
    net.run_until(T0 + 20)
    assert mars.rejections == {Reason.DECRYPTION_FAILED: 1}
    reports = [decode_status_report(d.payload) for d in a.delivered if d.is_admin_record]
    assert [(r.sequence, r.assertions[DELIVERED] is not None) for r in reports] == [(2, True)]
    assert b.agent.counters["delivered"] == 1 and not b.agent.next_actions()
