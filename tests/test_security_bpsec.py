"""BPSec on bundles: RFC 9172 targeting rules, every RFC 9173 variant, the ASB codec."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtn.bundle import EID, BlockFlags, BlockType, Bundle, BundleFlags, CanonicalBlock
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
from dtn.security.asb import RawValue

SOURCE = EID.parse("ipn:1.0")
KEY16, KEY32, KEK = bytes(range(16)), bytes(range(32)), bytes(range(100, 132))


def make_bundle(payload: bytes = b"hello mars " * 8) -> Bundle:
    bundle = Bundle.create(
        "ipn:1.1", "ipn:2.1", payload, creation_time=700_000_000_000, sequence=3, hop_limit=30
    )
    bundle.insert_block(CanonicalBlock(200, bundle.next_block_number(), b"extension", 0, 2))
    return bundle


def roundtrip(bundle: Bundle, keys) -> Bundle:
    """Over the wire, accepted, security blocks removed."""
    received = Bundle.decode(bundle.encode())
    accept(received, keys).apply(received)
    return received


def keys_for(bcb: bytes | None = None, bib: bytes | None = None):
    return lambda service, source: {BlockType.BCB: bcb, BlockType.BIB: bib}[service]


@pytest.mark.parametrize("variant", list(ShaVariant))
@pytest.mark.parametrize("scope", range(8))
@pytest.mark.parametrize("key_wrap", [False, True])
def test_bib_every_variant_and_scope(variant, scope, key_wrap):
    bundle = make_bundle()
    plain = bundle.encode()
    add_bib(
        bundle,
        [0, 1, 2, 3],
        KEK,
        security_source=SOURCE,
        variant=variant,
        scope=scope,
        key_wrap=key_wrap,
    )
    assert roundtrip(bundle, keys_for(bib=KEK)).encode() == plain


@pytest.mark.parametrize("variant", list(AesVariant))
@pytest.mark.parametrize("scope", range(8))
@pytest.mark.parametrize("key_wrap", [False, True])
def test_bcb_every_variant_and_scope(variant, scope, key_wrap):
    bundle = make_bundle()
    plain = bundle.encode()
    key = KEK if key_wrap else (KEY16 if variant == AesVariant.A128GCM else KEY32)
    add_bcb(
        bundle, [1], key, security_source=SOURCE, variant=variant, scope=scope, key_wrap=key_wrap
    )
    assert bundle.payload != make_bundle().payload
    assert roundtrip(bundle, keys_for(bcb=key)).encode() == plain


def test_bib_then_bcb_over_the_same_target_encrypts_the_bib():
    bundle = make_bundle()
    plain = bundle.encode()
    bib = add_bib(bundle, [1], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="encrypt the BIB with them"):
        add_bcb(bundle, [1], KEY32, security_source=SOURCE)
    add_bcb(bundle, [bib.number, 1], KEK, security_source=SOURCE)
    received = Bundle.decode(bundle.encode())
    accepted = accept(received, keys_for(bcb=KEK, bib=KEY32))
    assert accepted.decrypted == {bib.number, 1} and accepted.verified == {1}
    accepted.apply(received)
    assert received.encode() == plain


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([0], "primary block"),
        ([1, 1], "distinct"),
        ([9], "no block numbered"),
        ([], "at least one"),
    ],
)
def test_bcb_target_rules_when_adding(targets, message):
    with pytest.raises(ValueError, match=message):
        add_bcb(make_bundle(), targets, KEY32, security_source=SOURCE)


def test_rfc9172_rules_when_adding():
    bundle = make_bundle()
    bcb = add_bcb(bundle, [3], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="BCB must not target BCB"):
        add_bcb(bundle, [bcb.number], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="encrypted already"):
        add_bcb(bundle, [3], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="before the BCB"):
        add_bib(bundle, [3], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="must not target security block"):
        add_bib(bundle, [bcb.number], KEY32, security_source=SOURCE)
    bib = add_bib(bundle, [1, 2], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="already has a BIB"):
        add_bib(bundle, [2], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="split the BIB"):
        add_bcb(bundle, [bib.number, 1], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="replicated in fragments"):
        add_bcb(make_bundle(), [1], KEY32, security_source=SOURCE, flags=0)
    with pytest.raises(ValueError, match="discard"):
        add_bcb(
            make_bundle(),
            [3],
            KEY32,
            security_source=SOURCE,
            flags=BlockFlags.DISCARD_IF_UNPROCESSABLE,
        )
    other = make_bundle()
    unrelated = add_bib(other, [3], KEY32, security_source=SOURCE)
    with pytest.raises(ValueError, match="only with one of its targets"):
        add_bcb(other, [unrelated.number, 1], KEY32, security_source=SOURCE)
    fragment = make_bundle()
    fragment.primary.flags |= BundleFlags.IS_FRAGMENT
    fragment.primary.fragment_offset, fragment.primary.total_adu_length = 0, 1000
    with pytest.raises(ValueError, match="fragment"):
        add_bib(fragment, [1], KEY32, security_source=SOURCE)


def forged(bundle: Bundle, block_type: int, targets: list[int], flags: int = 1) -> Bundle:
    """`bundle` with a security block a sender that ignores RFC 9172 would add."""
    donor = make_bundle()
    if block_type == BlockType.BCB:
        real = add_bcb(donor, [1], KEY32, security_source=SOURCE)
    else:
        real = add_bib(donor, [1], KEY32, security_source=SOURCE)
    asb = AbstractSecurityBlock.decode(real.data)
    asb.targets = targets
    asb.results = asb.results * len(targets)
    bundle.insert_block(CanonicalBlock(block_type, bundle.next_block_number(), asb.encode(), flags))
    return Bundle.decode(bundle.encode())


@pytest.mark.parametrize(
    ("block_type", "targets", "flags", "message"),
    [
        (BlockType.BCB, [0], 1, "primary block"),
        (BlockType.BCB, [7], 1, "not in the bundle"),
        (BlockType.BCB, [1], 0, "replicated in fragments"),
        (BlockType.BCB, [1], 0x11, "discard"),
        (BlockType.BIB, [9], 0, "not in the bundle"),
    ],
)
def test_rfc9172_rules_when_accepting(block_type, targets, flags, message):
    bundle = forged(make_bundle(), block_type, targets, flags)
    with pytest.raises(SecurityError, match=message) as caught:
        accept(bundle, keys_for(KEY32, KEY32))
    assert caught.value.reason == Reason.RULE_BROKEN


def test_accepting_refuses_security_blocks_over_security_blocks_and_duplicates():
    bundle = make_bundle()
    bcb = add_bcb(bundle, [3], KEY32, security_source=SOURCE)
    for block_type, targets, message in (
        (BlockType.BCB, [bcb.number], "targets BCB"),
        (BlockType.BIB, [bcb.number], "security block"),
        (BlockType.BCB, [3], "another BCB"),
    ):
        copy = Bundle.decode(bundle.encode())
        with pytest.raises(SecurityError, match=message):
            accept(forged(copy, block_type, targets), keys_for(KEY32, KEY32))
    signed = make_bundle()
    add_bib(signed, [3], KEY32, security_source=SOURCE)
    with pytest.raises(SecurityError, match="another BIB"):
        accept(forged(signed, BlockType.BIB, [3], 0), keys_for(KEY32, KEY32))


def test_unknown_security_context_is_unsupported():
    bundle = make_bundle()
    block = add_bib(bundle, [1], KEY32, security_source=SOURCE)
    asb = AbstractSecurityBlock.decode(block.data)
    asb.context_id = -5  # private-use contexts are negative
    block.data = asb.encode()
    with pytest.raises(SecurityError, match="context -5") as caught:
        accept(Bundle.decode(bundle.encode()), keys_for(bib=KEY32))
    assert caught.value.reason == Reason.UNSUPPORTED_CONTEXT


@pytest.mark.parametrize(
    ("add", "parameters", "reason"),
    [
        (add_bcb, {1: b"short"}, Reason.MALFORMED),
        (add_bcb, {1: bytes(12), 2: 2}, Reason.UNSUPPORTED_CONTEXT),
        (add_bcb, {1: bytes(12), 4: 8}, Reason.MALFORMED),
        (add_bcb, {1: bytes(12), 9: 0}, Reason.MALFORMED),
        (add_bcb, {1: bytes(12), 3: b"not a wrapped key"}, Reason.MALFORMED),
        (add_bcb, {1: bytes(12), 3: bytes(40)}, Reason.DECRYPTION_FAILED),
        (add_bcb, {1: RawValue(b"\x80")}, Reason.MALFORMED),
        (add_bib, {1: 4}, Reason.UNSUPPORTED_CONTEXT),
        (add_bib, {1: RawValue(b"\x80")}, Reason.UNSUPPORTED_CONTEXT),
        (add_bib, {3: 8}, Reason.MALFORMED),
        (add_bib, {4: 0}, Reason.MALFORMED),
        (add_bib, {2: 5}, Reason.MALFORMED),  # not a byte string
        (add_bib, {2: bytes(40)}, Reason.DECRYPTION_FAILED),
    ],
)
def test_bad_context_parameters(add, parameters, reason):
    bundle = make_bundle()
    block = add(bundle, [1], KEY32, security_source=SOURCE)
    asb = AbstractSecurityBlock.decode(block.data)
    asb.parameters = parameters
    block.data = asb.encode()
    with pytest.raises(SecurityError) as caught:
        accept(Bundle.decode(bundle.encode()), keys_for(bcb=KEY32, bib=KEY32))
    assert caught.value.reason == reason


def test_wrong_key_size_for_the_variant_is_a_clear_failure():
    bundle = make_bundle()
    add_bcb(bundle, [1], KEY16, security_source=SOURCE, variant=AesVariant.A128GCM)
    with pytest.raises(SecurityError, match="A128GCM needs a 16-byte key") as caught:
        accept(Bundle.decode(bundle.encode()), keys_for(bcb=KEY32))
    assert caught.value.reason == Reason.DECRYPTION_FAILED
    with pytest.raises(ValueError, match="A256GCM needs a 32-byte key"):
        add_bcb(make_bundle(), [1], KEY16, security_source=SOURCE)


asb_values = st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=40))
asb_pairs = st.dictionaries(st.integers(0, 300), asb_values, max_size=4)


@settings(max_examples=200)
@given(
    targets=st.lists(st.integers(0, 2**32), min_size=1, max_size=5, unique=True),
    context_id=st.integers(-(2**63), 2**63 - 1),
    parameters=asb_pairs,
    data=st.data(),
)
def test_asb_roundtrip(targets, context_id, parameters, data):
    results = [data.draw(asb_pairs) for _ in targets]
    asb = AbstractSecurityBlock(
        targets, context_id, EID.parse("dtn://mars-base/"), parameters, results
    )
    encoded = asb.encode()
    assert AbstractSecurityBlock.decode(encoded) == asb
    assert AbstractSecurityBlock.decode(encoded) == asb  # second time from the layout cache
    assert AbstractSecurityBlock.decode(encoded).encode() == encoded


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_asb_decoder_refuses_garbage_with_security_error_only(data):
    try:
        asb = AbstractSecurityBlock.decode(data)
    except SecurityError as exc:
        assert exc.reason == Reason.MALFORMED
    else:
        assert asb.encode() == data or len(asb.targets) == len(asb.results)


def test_layout_cache_gives_fresh_objects_and_the_new_byte_strings():
    bundle = make_bundle()
    first = AbstractSecurityBlock.decode(add_bcb(bundle, [1], KEY32, security_source=SOURCE).data)
    first.targets.append(99)
    first.parameters.clear()
    again = make_bundle()
    block = add_bcb(again, [1], KEY32, security_source=SOURCE, iv=os.urandom(12))
    second = AbstractSecurityBlock.decode(block.data)
    assert second.targets == [1] and set(second.parameters) == {1, 2, 4}
    assert second.encode() == block.data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("8101 01 01", "truncated"),
        ("8001008202820100 80", "must not be empty"),
        ("820101 01 00 8202820100 8080", "twice"),
        ("8101 01 00 8202820100 828080", "2 result sets for 1 security targets"),
        ("8101 01 00 8202820100 8180 00", "1 bytes after"),
        ("8101 01 01 8202820100 820100 818182014100", "must be an array"),
        ("8101 01 01 8202820100 8283010203 80 8180", "must have 2 items"),
        ("8101 01 01 8202820100 82820100820102 8180", "repeat an id"),
        ("8101 61 01 8202820100 8180", "must be an integer"),
        ("8101 01 00 820105 8180", "dtn SSP integer must be 0"),
    ],
)
def test_malformed_asbs(data, message):
    with pytest.raises(SecurityError, match=message) as caught:
        AbstractSecurityBlock.decode(bytes.fromhex(data.replace(" ", "")))
    assert caught.value.reason == Reason.MALFORMED


def test_caller_errors_on_numbers_and_scope():
    with pytest.raises(ValueError, match="in use"):
        add_bib(make_bundle(), [1], KEY32, security_source=SOURCE, block_number=2)
    with pytest.raises(ValueError, match="reserved"):
        add_bcb(make_bundle(), [1], KEY32, security_source=SOURCE, block_number=0)
    with pytest.raises(ValueError, match="0..7"):
        add_bcb(make_bundle(), [1], KEY32, security_source=SOURCE, scope=8)


def byte_strings(pairs: dict) -> list[bytes]:
    return [value for value in pairs.values() if isinstance(value, bytes)]


@settings(max_examples=200)
@given(
    targets=st.lists(st.integers(0, 2**32), min_size=1, max_size=4, unique=True),
    parameters=asb_pairs,
    data=st.data(),
)
def test_layout_fills_and_matches_like_the_encoder(targets, parameters, data):
    """Templates splice new byte-string contents into an encoding; whatever the fixed bytes
    hold (CBOR for 37 is 0x18 0x25, a '%'; regex metacharacters), the result is what the
    encoder writes, and only encodings of that layout match."""
    results = [data.draw(asb_pairs) for _ in targets]
    asb = AbstractSecurityBlock(targets, 2, EID.parse("dtn://(.*)%25s/"), parameters, results)
    layout = asb.layout()
    values = tuple(byte_strings(parameters) + [v for r in results for v in byte_strings(r)])
    encoded = asb.encode()
    assert layout.fill(values) == encoded
    assert layout.match(encoded) == values
    fresh = tuple(data.draw(st.binary(min_size=len(v), max_size=len(v))) for v in values)
    refilled = layout.fill(fresh)
    assert layout.match(refilled) == fresh
    assert AbstractSecurityBlock.decode(refilled).encode() == refilled
    assert layout.with_values(fresh).encode() == refilled
    assert layout.match(encoded + b"\x00") is None
    assert layout.match(encoded[:-1]) is None
    for start, end in layout.holes:  # a change outside the holes is another layout
        assert layout.match(flip(encoded, start - 1)) is None
        if end > start:
            assert layout.match(flip(encoded, start)) is not None


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
