"""Property tests: generated bundles round-trip; random and mutated bytes raise only BundleError."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtn.bundle import (
    EID,
    NULL_EID,
    BlockType,
    Bundle,
    BundleError,
    BundleFlags,
    CanonicalBlock,
    HopCount,
    PrimaryBlock,
)
from dtn.bundle.blocks import _encode_primary, _encode_primary_python
from dtn.bundle.decoder import decode_blocks, walk_blocks
from dtn.bundle.extensions import encode_bundle_age

UINT64 = st.integers(0, 2**64 - 1)
# A dtn node name is a reg-name (RFC 9171 §4.2.5.1.1): unreserved, sub-delims and %XX.
NAME = st.from_regex(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2}){1,12}", fullmatch=True)
ipn_eids = st.builds(EID.ipn, UINT64, UINT64)
dtn_eids = st.builds(lambda node, demux: EID.parse(f"dtn://{node}/{demux}"), NAME,
                     st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
                     .filter(lambda d: not d.startswith("~")))
eids = st.one_of(ipn_eids, dtn_eids)
crc_types = st.sampled_from([1, 2])


@st.composite
def bundles(draw):
    fragment = draw(st.booleans())
    flags = draw(st.integers(0, 0xFFFF) | st.just(0)) & ~int(
        BundleFlags.IS_FRAGMENT | BundleFlags.ADMIN_RECORD)
    flags &= ~0x4000  # status-report requests tested with the null source separately
    if fragment:
        flags |= BundleFlags.IS_FRAGMENT
    creation_time = draw(st.just(0) | UINT64)
    primary = PrimaryBlock(
        destination=draw(eids | st.just(NULL_EID)), source=draw(eids), report_to=draw(eids),
        creation_time=creation_time, sequence=draw(UINT64), lifetime=draw(UINT64), flags=flags,
        crc_type=draw(crc_types),
        fragment_offset=draw(UINT64) if fragment else None,
        total_adu_length=draw(UINT64) if fragment else None)
    blocks = []
    number = 2
    if draw(st.booleans()):
        blocks.append(CanonicalBlock(BlockType.HOP_COUNT, number,
                                     HopCount(draw(st.integers(1, 255)),
                                              draw(st.integers(0, 300))).encode(),
                                     draw(st.integers(0, 0x1F)), draw(st.sampled_from([0, 1, 2]))))
        number += 1
    if creation_time == 0 or draw(st.booleans()):
        blocks.append(CanonicalBlock(BlockType.BUNDLE_AGE, number, encode_bundle_age(draw(UINT64)),
                                     crc_type=draw(crc_types)))
        number += 1
    if draw(st.booleans()):
        blocks.append(CanonicalBlock(BlockType.PREVIOUS_NODE, number, draw(eids).to_cbor(),
                                     crc_type=draw(crc_types)))
        number += 1
    for _ in range(draw(st.integers(0, 3))):
        blocks.append(CanonicalBlock(draw(st.integers(192, 255)), number,
                                     draw(st.binary(max_size=40)), draw(st.integers(0, 0x1F)),
                                     draw(st.sampled_from([0, 1, 2]))))
        number += draw(st.integers(1, 1000))
    blocks.append(CanonicalBlock(BlockType.PAYLOAD, 1, draw(st.binary(max_size=3000)),
                                 crc_type=draw(st.sampled_from([0, 1, 2]))))
    if fragment:  # the payload lies within the ADU (RFC 9171 §4.3.1, §5.8)
        length = len(blocks[-1].data)
        primary.fragment_offset = min(primary.fragment_offset, 2**64 - 1 - length)
        primary.total_adu_length = max(primary.total_adu_length, primary.fragment_offset + length)
    return Bundle(primary, blocks)


@given(bundles())
def test_generated_bundles_round_trip(bundle):
    raw = bundle.encode()
    decoded = Bundle.decode(raw)
    assert decoded.primary == bundle.primary
    assert decoded.blocks == bundle.blocks
    assert decoded.encode() == raw


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_bundle_error(data):
    with contextlib.suppress(BundleError):
        Bundle.decode(data)


@given(st.binary(max_size=300))
def test_random_bytes_after_the_array_start_raise_only_bundle_error(data):
    with contextlib.suppress(BundleError):
        Bundle.decode(b"\x9f\x89\x07" + data)


@st.composite
def mutated(draw):
    raw = bytearray(draw(bundles()).encode())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(raw) - 1))
        if action == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            raw[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=9))
        else:
            del raw[at:at + draw(st.integers(1, 9))]
        if not raw:
            break
    return bytes(raw)


@given(mutated())
def test_mutated_bundles_raise_only_bundle_error(data):
    try:
        bundle = Bundle.decode(data)
    except BundleError:
        return
    # Whatever is accepted must survive its own re-encoding.
    assert Bundle.decode(bundle.encode()).encode() == bundle.encode()


def test_a_flipped_payload_bit_is_caught_by_the_crc():
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", b"x" * 100, creation_time=1)
    raw = bytearray(bundle.encode())
    raw[-10] ^= 0x04
    try:
        Bundle.decode(bytes(raw))
    except BundleError as error:
        assert "CRC mismatch" in str(error)
    else:
        raise AssertionError("corrupted payload accepted")


def _outcome(decode, data):
    try:
        primary, blocks = decode(data, False)
    except BundleError:
        return "rejected"
    return Bundle(primary, blocks).encode()


@given(st.one_of(mutated(), bundles().map(Bundle.encode)))
def test_the_c_fast_path_and_the_python_decoder_agree(data):
    """The C scanner must never accept what the strict Python walk rejects, nor decode
    differently."""
    assert _outcome(decode_blocks, data) == _outcome(walk_blocks, data)


@given(bundles(), st.integers(0, 2**64 - 1))
def test_a_changed_primary_field_is_encoded_not_the_remembered_bytes(bundle, lifetime):
    decoded = Bundle.decode(bundle.encode())
    decoded.primary.lifetime = lifetime
    assert Bundle.decode(decoded.encode()).primary.lifetime == lifetime


@given(bundles())
def test_the_c_and_python_primary_encoders_agree(bundle):
    primary = bundle.primary
    arguments = (primary.flags, primary.crc_type, primary.destination.to_cbor(),
                 primary.source.to_cbor(), primary.report_to.to_cbor(), primary.creation_time,
                 primary.sequence, primary.lifetime, primary.fragment_offset,
                 primary.total_adu_length)
    expected = _encode_primary_python(*arguments)
    if _encode_primary is not None:
        assert _encode_primary(*arguments) == expected
    assert primary.encode() == expected


@given(bundles(), st.integers(0, 2**64 - 1), st.booleans())
def test_the_c_and_python_bundle_encoders_agree(bundle, block_number, as_view):
    """Generated bundles, an extension block numbered anywhere in uint64, and block data held as
    a view of a larger buffer (as decoding leaves it): both encoders give the same bytes."""
    bundle.blocks.insert(0, CanonicalBlock(200, block_number, b"x" * 30, 0, 2))
    if as_view:
        payload = bundle.blocks[-1]
        payload.data = memoryview(b"..." + payload.data + b"...")[3:-3]
    assert bundle.encode() == bundle.encode_python()


def test_the_c_bundle_encoder_refuses_what_the_python_one_refuses():
    """A negative field or an unknown CRC type is a caller's error: neither encoder writes it."""
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", b"data", creation_time=1)
    for field, value in (("number", -1), ("crc_type", 3)):
        setattr(bundle.payload_block, field, value)
        with pytest.raises((ValueError, KeyError)):
            bundle.encode_python()
        with pytest.raises(ValueError):
            bundle.encode()
        setattr(bundle.payload_block, field, 1 if field == "number" else 2)
