"""The four RFC 9173 Appendix A examples, byte for byte, in both directions."""

import pytest
from conftest import load_vectors

from dtn.bundle import EID, BlockType, Bundle, BundleError, cbor
from dtn.security import (
    AbstractSecurityBlock,
    AesVariant,
    Reason,
    SecurityError,
    ShaVariant,
    accept,
    add_bcb,
    add_bib,
)
from dtn.security.scope import block_header, scope_prefix

EXAMPLES = {
    example["rfc9173_section"][-3:]: example
    for example in load_vectors("rfc9173_examples.json")["examples"]
}
VARIANTS = {
    "HMAC 256/256 (id 5)": ShaVariant.HMAC_SHA_256,
    "HMAC 384/384 (id 6)": ShaVariant.HMAC_SHA_384,
    "HMAC 512/512 (id 7)": ShaVariant.HMAC_SHA_512,
    "A128GCM (id 1)": AesVariant.A128GCM,
    "A256GCM (id 3)": AesVariant.A256GCM,
}
h = bytes.fromhex


def original(name: str) -> Bundle:
    return Bundle.decode(h(EXAMPLES[name]["inputs"]["original_bundle_hex"]), lenient=True)


def final(name: str) -> Bundle:
    return Bundle.decode(h(EXAMPLES[name]["expected"]["final_bundle_hex"]), lenient=True)


def targets_of(spec: dict) -> list[int]:
    return spec["targets"] if "targets" in spec else [spec["target"]]


def sign(bundle: Bundle, spec: dict) -> None:
    add_bib(
        bundle,
        targets_of(spec),
        h(spec["key_hex"]),
        security_source=EID.parse(spec["security_source"]),
        variant=VARIANTS[spec["sha_variant"]],
        scope=spec["scope_flags"],
        block_number=spec["block_number"],
    )


def encrypt(bundle: Bundle, spec: dict) -> None:
    wrapped = "key_encryption_key_hex" in spec
    key = (
        spec.get("key_encryption_key_hex")
        or spec.get("content_encryption_key_hex")
        or spec["key_hex"]
    )
    add_bcb(
        bundle,
        targets_of(spec),
        h(key),
        security_source=EID.parse(spec["security_source"]),
        variant=VARIANTS[spec["aes_variant"]],
        scope=spec["scope_flags"],
        key_wrap=wrapped,
        content_key=h(spec["content_encryption_key_hex"]) if wrapped else None,
        iv=h(spec["iv_hex"]),
        block_number=spec["block_number"],
        flags=spec["block_flags"],
    )


def build(name: str) -> Bundle:
    """The example's bundle built from its original bundle and inputs, BIB first as in A.3/A.4."""
    bundle = original(name)
    inputs = EXAMPLES[name]["inputs"]
    if "bib" in inputs:
        sign(bundle, inputs["bib"])
    if "bcb" in inputs:
        encrypt(bundle, inputs["bcb"])
    return bundle


def keys_of(name: str):
    """The key lookup a receiver of the example would have: one key per service."""
    inputs = EXAMPLES[name]["inputs"]
    keys = {}
    if "bib" in inputs:
        keys[BlockType.BIB] = h(inputs["bib"]["key_hex"])
    if "bcb" in inputs:
        spec = inputs["bcb"]
        keys[BlockType.BCB] = h(
            spec.get("key_encryption_key_hex")
            or spec.get("content_encryption_key_hex")
            or spec["key_hex"]
        )
    return lambda service, source: keys.get(service)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_building_reproduces_the_final_bundle(name):
    expected = EXAMPLES[name]["expected"]
    bundle = build(name)
    assert bundle.encode().hex() == expected["final_bundle_hex"]
    blocks = {block.block_type: block for block in bundle.blocks}
    if "bib_block_hex" in expected:
        assert blocks[BlockType.BIB].encode().hex() == expected["bib_block_hex"]
    if "bcb_block_hex" in expected:
        assert blocks[BlockType.BCB].encode().hex() == expected["bcb_block_hex"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_accepting_recovers_the_original_bundle(name):
    bundle = final(name)
    accepted = accept(bundle, keys_of(name))
    inputs = EXAMPLES[name]["inputs"]
    assert (
        accepted.decrypted == set(targets_of(inputs["bcb"]))
        if "bcb" in inputs
        else not accepted.decrypted
    )
    if "bib" in inputs:
        assert accepted.verified == set(targets_of(inputs["bib"]))
    accepted.apply(bundle)
    assert bundle.encode().hex() == EXAMPLES[name]["inputs"]["original_bundle_hex"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_security_blocks_decode_and_reencode(name):
    expected = EXAMPLES[name]["expected"]
    for field in ("bib_asb_hex", "bcb_asb_hex"):
        if field in expected:
            asb = AbstractSecurityBlock.decode(h(expected[field]))
            assert asb.encode().hex() == expected[field]


def test_a1_signature_is_over_the_documented_ippt():
    expected = EXAMPLES["A.1"]["expected"]
    payload = original("A.1").payload
    prefix = scope_prefix(0, b"", original("A.1").payload_block, block_header(BlockType.BIB, 2, 0))
    assert (prefix + cbor.byte_string(payload)).hex() == expected["ippt_hex"]
    asb = AbstractSecurityBlock.decode(h(expected["bib_asb_hex"]))
    assert asb.results[0][1].hex() == expected["signature_hex"]


def test_a3_ippt_of_the_primary_block_is_its_encoding_as_a_byte_string():
    expected = EXAMPLES["A.3"]["expected"]
    bundle = original("A.3")
    primary = bundle.primary.encode()
    prefix = scope_prefix(0, primary, None, block_header(BlockType.BIB, 3, 0))
    assert (prefix + cbor.byte_string(primary)).hex() == expected["primary_ippt_hex"]
    age = bundle.block_by_number(2)
    prefix = scope_prefix(0, primary, age, block_header(BlockType.BIB, 3, 0))
    assert (prefix + cbor.byte_string(age.data)).hex() == expected["bundle_age_ippt_hex"]


def test_a4_full_scope_ippt_and_aads():
    expected = EXAMPLES["A.4"]["expected"]
    bundle = original("A.4")
    primary = bundle.primary.encode()
    payload = bundle.payload_block
    bib_header = block_header(BlockType.BIB, 3, 0)
    ippt = scope_prefix(7, primary, payload, bib_header) + cbor.byte_string(payload.data)
    assert ippt.hex() == expected["ippt_hex"]
    bcb_header = block_header(BlockType.BCB, 2, 1)
    assert scope_prefix(7, primary, payload, bcb_header).hex() == expected["payload_aad_hex"]
    signed = build("A.4")
    bib = signed.block_by_number(3)
    assert scope_prefix(7, primary, bib, bcb_header).hex() == expected["bib_aad_hex"]
    assert bib.data.hex() == expected["bib_ciphertext_hex"]
    assert signed.payload.hex() == expected["payload_ciphertext_hex"]


def test_a2_wrapped_key_ciphertext_and_tag():
    expected = EXAMPLES["A.2"]["expected"]
    bundle = build("A.2")
    asb = AbstractSecurityBlock.decode(bundle.block_of_type(BlockType.BCB).data)
    assert asb.parameters[3].hex() == expected["aes_wrapped_key_hex"]
    assert asb.results[0][1].hex() == expected["authentication_tag_hex"]
    assert bundle.payload.hex() == expected["payload_ciphertext_hex"]


def protected_spans(name: str) -> list[tuple[str, int, int]]:
    """(what, start, end) in the final bundle of every value the example's security covers:
    target data, IVs, wrapped keys, tags and HMACs."""
    expected, wire = EXAMPLES[name]["expected"], EXAMPLES[name]["expected"]["final_bundle_hex"]
    spans = []
    for field, value in expected.items():
        encrypted = name == "A.4" and field == "signature_hex"  # inside the BIB's ciphertext
        if (
            field.endswith(("signature_hex", "tag_hex", "ciphertext_hex", "wrapped_key_hex"))
            and not encrypted
        ):
            spans.append((field, value))
    for kind in ("bib", "bcb"):
        spec = EXAMPLES[name]["inputs"].get(kind, {})
        if "iv_hex" in spec:
            spans.append(("iv", spec["iv_hex"]))
    if name == "A.1":
        spans.append(("payload", EXAMPLES[name]["inputs"]["payload_data_hex"]))
    if name == "A.3":
        spans.append(("bundle age", "19012c"))
    located = []
    for field, value in spans:
        start = wire.index(value)
        located.append((field, start // 2, (start + len(value)) // 2))
    return located


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_flipped_bit_in_a_protected_value_is_rejected(name):
    wire = h(EXAMPLES[name]["expected"]["final_bundle_hex"])
    keys = keys_of(name)
    flips = 0
    for what, start, end in protected_spans(name):
        for index in range(start, end):
            for bit in range(8):
                tampered = bytearray(wire)
                tampered[index] ^= 1 << bit
                flips += 1
                try:
                    bundle = Bundle.decode(bytes(tampered), lenient=True)
                except BundleError:
                    continue  # the codec already refuses it (a bundle age that is not a uint)
                with pytest.raises(SecurityError) as caught:
                    accept(bundle, keys)
                assert caught.value.reason in (Reason.INTEGRITY_FAILED, Reason.DECRYPTION_FAILED), (
                    what
                )
    assert flips > 8 * 32


def test_a4_primary_block_and_headers_are_in_scope():
    keys = keys_of("A.4")
    for change in (
        lambda b: setattr(b.primary, "lifetime", b.primary.lifetime + 1),
        lambda b: setattr(b.primary, "sequence", 41),
        lambda b: setattr(b.primary, "destination", EID.parse("ipn:1.3")),
        lambda b: setattr(b.payload_block, "flags", 0x10),
        lambda b: setattr(b.block_of_type(BlockType.BCB), "flags", 0x03),
    ):
        bundle = final("A.4")
        change(bundle)
        with pytest.raises(SecurityError) as caught:
            accept(Bundle.decode(bundle.encode(), lenient=True), keys)
        assert caught.value.reason == Reason.DECRYPTION_FAILED


def test_wrong_and_missing_keys():
    with pytest.raises(SecurityError) as caught:
        accept(final("A.2"), lambda service, source: bytes(16))
    assert caught.value.reason == Reason.DECRYPTION_FAILED
    with pytest.raises(SecurityError) as caught:
        accept(final("A.1"), lambda service, source: bytes(16))
    assert caught.value.reason == Reason.INTEGRITY_FAILED
    with pytest.raises(SecurityError) as caught:
        accept(final("A.3"), lambda service, source: None)
    assert caught.value.reason == Reason.MISSING_KEY
    assert "ipn:2.1" in str(caught.value)
