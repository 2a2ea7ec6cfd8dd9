"""RFC 9171 §4 (bundle format), rule by rule: each test breaks one rule and expects a BundleError
that names the rule's section, and decodes the nearest valid bundle. docs/conformance.md maps the
rules to these tests. Every test runs on both decode paths: the C scanner and the Python walk."""

import re
import zlib

import pytest
from conftest import load_vectors
from test_agent_harness import T0

from dtn.agent import Agent, AgentConfig, Router
from dtn.bundle import Bundle, BundleError, decode_hop_count
from dtn.bundle.admin import StatusReport
from dtn.bundle.blocks import BlockFlags, BlockType, BundleFlags, crc_field, crc_value
from dtn.bundle.cbor import byte_string, head, text_string, uint
from dtn.bundle.eid import EID
from dtn.clock import dtn_time_ms
from dtn.store import BundleStore

INVALID = load_vectors("bpv7_invalid.json")
MUST = [v for v in INVALID["vectors"] if v["strictness"] == "must"]


pytestmark = pytest.mark.usefixtures("decode_path")  # every test on both decode paths


# --- hand-made CBOR: every field an encoded item, so one can be broken at a time ---------------

ARRAY = 4
IPN_SRC = b"\x82\x02\x82\x01\x01"  # ipn:1.1
IPN_DST = b"\x82\x02\x82\x02\x01"  # ipn:2.1
NULL = b"\x82\x01\x00"  # dtn:none


def eid(text: str) -> bytes:
    return EID.parse(text).to_cbor()


def block(items: list[bytes], crc_type: int, count: int | None = None) -> bytes:
    """An array of `items` plus its CRC (correct for the bytes as given) when crc_type > 0."""
    if count is None:
        count = len(items) + (1 if crc_type else 0)
    body = head(ARRAY, count) + b"".join(items)
    return body + crc_field(crc_type, (body,)) if crc_type else body


def primary_items(*, flags=0, crc_type=2, dst=IPN_DST, src=IPN_SRC, report_to=IPN_SRC,
                  timestamp=b"\x82\x19\x03\xe8\x00", lifetime=b"\x1a\x00\x01\x51\x80",
                  fragment=None) -> list[bytes]:
    items = [b"\x07", uint(flags), uint(crc_type), dst, src, report_to, timestamp, lifetime]
    if fragment is not None:
        items += [uint(fragment[0]), uint(fragment[1])]
    return items


def primary(crc_type=2, **fields) -> bytes:
    return block(primary_items(crc_type=crc_type, **fields), crc_type)


def canonical(block_type=1, number=1, data=b"hello", flags=0, crc_type=1) -> bytes:
    return block([uint(block_type), uint(number), uint(flags), uint(crc_type), byte_string(data)],
                 crc_type)


PAYLOAD = canonical()
REPORT = StatusReport(EID.parse("ipn:2.1"), 1000, 0, assertions=(0, None, None, None)).encode()
HOP_COUNT = canonical(BlockType.HOP_COUNT, 2, b"\x82\x18\x1e\x00")


def bundle(*blocks: bytes) -> bytes:
    return b"\x9f" + b"".join(blocks) + b"\xff"


def good(**fields) -> bytes:
    return bundle(primary(**fields), PAYLOAD)


def accepts(raw: bytes) -> Bundle:
    decoded = Bundle.decode(raw)
    assert decoded.encode() == raw or Bundle.decode(decoded.encode()).encode() == decoded.encode()
    return decoded


def rejects(raw: bytes, section: str) -> str:
    with pytest.raises(BundleError) as info:
        Bundle.decode(raw)
    assert names_section(str(info.value), section), str(info.value)
    return str(info.value)


def names_section(message: str, section: str) -> bool:
    return re.search("§" + re.escape(section) + r"(?![.\d])", message) is not None


def with_crc_bytes(raw_block: bytes, crc: bytes) -> bytes:
    return raw_block[:-len(crc)] + crc


# --- §4.1 bundle structure ----------------------------------------------------------------------

def test_4_1_cbor_well_formed():
    raw = good()
    accepts(raw)
    rejects(raw[:-3], "4.1")  # truncated
    huge = block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x5b\x40" + bytes(7)], 0)
    rejects(bundle(primary(), huge), "4.1")  # a 2^62-byte string


def test_4_1_deterministic_encoding():
    accepts(good(lifetime=b"\x18\x64"))
    rejects(good(lifetime=b"\x18\x05"), "4.1")  # 5 in two bytes
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x58\x02hi"], 0)),
            "4.1")
    accepts(good(dst=b"\x82\x01\x7f\x68//node/x\xff"))
    rejects(good(dst=b"\x82\x01\x7f\x78\x08//node/x\xff"), "4.1")  # a chunk's length too
    accepts(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x82\x05\x00"), PAYLOAD))
    rejects(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x82\x18\x05\x00"), PAYLOAD),
            "4.1")  # and inside the §4.4 blocks' data


def test_4_1_indefinite_length_items_allowed():
    body = b"\x9f" + b"".join(primary_items())
    indefinite = body + b"\x44" + crc_value(2, (body, b"\x44", bytes(4), b"\xff")) + b"\xff"
    raw = bundle(indefinite, PAYLOAD)
    assert accepts(raw).encode() == raw  # the primary block comes back byte for byte (§4.3.1)
    rejects(bundle(indefinite[:-1] + b"\x00\xff", PAYLOAD), "4.3.1")  # a 12th item


def test_4_1_bundle_is_indefinite_array():
    accepts(good())
    rejects(b"\x82" + primary() + PAYLOAD, "4.1")
    rejects(b"\xbf" + primary() + PAYLOAD + b"\xff", "4.1")


def test_4_1_at_least_two_blocks():
    accepts(good())
    rejects(bundle(primary()), "4.1")


def test_4_1_first_block_is_primary():
    accepts(good())
    rejects(bundle(PAYLOAD, primary()), "4.1")


def test_4_1_exactly_one_primary_block():
    accepts(good())
    rejects(bundle(primary(), primary(), PAYLOAD), "4.1")


def test_4_1_last_block_is_payload():
    accepts(bundle(primary(), HOP_COUNT, PAYLOAD))
    rejects(bundle(primary(), PAYLOAD, HOP_COUNT), "4.1")


def test_4_1_exactly_one_payload_block():
    accepts(bundle(primary(), canonical(200, 2), PAYLOAD))
    rejects(bundle(primary(), canonical(1, 2), PAYLOAD), "4.1")


def test_4_1_break_ends_the_bundle():
    raw = good()
    accepts(raw)
    rejects(raw + b"\x00", "4.1")
    rejects(raw[:-1], "4.1")


def test_4_1_block_numbers_unique():
    accepts(bundle(primary(), HOP_COUNT, canonical(200, 3), PAYLOAD))
    rejects(bundle(primary(), HOP_COUNT, canonical(200, 2), PAYLOAD), "4.1")


def test_4_1_primary_block_number_zero():
    accepts(bundle(primary(), canonical(200, 2), PAYLOAD))
    rejects(bundle(primary(), canonical(200, 0), PAYLOAD), "4.1")


def test_4_1_payload_block_number_one():
    accepts(good())
    rejects(bundle(primary(), canonical(1, 2)), "4.1")


def test_4_1_nonconforming_input_rejected_not_transformed():
    """§4.1 MAY accept and transform non-conformant bytes; this codec rejects them, except the two
    defects lenient=True accepts for the RFC 9173 examples."""
    rejects(b"\x82" + primary() + PAYLOAD, "4.1")
    no_age = bundle(primary(timestamp=b"\x82\x00\x00"), PAYLOAD)
    rejects(no_age, "4.4.2")
    assert Bundle.decode(no_age, lenient=True).encode() == no_age


# --- §4.2.1 CRC type, §4.2.2 CRC ---------------------------------------------------------------

def test_4_2_1_crc_type_values():
    accepts(bundle(primary(crc_type=1), canonical(crc_type=0)))
    accepts(bundle(primary(crc_type=2), canonical(crc_type=2)))
    items = primary_items(crc_type=3)
    rejects(bundle(block(items, 0, count=9) + b"\x44\x00\x00\x00\x00", PAYLOAD), "4.2.1")
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x03", b"\x41x", b"\x41x"], 0)),
            "4.2.1")


def test_4_2_1_crc_type_unsigned():
    accepts(good())
    items = primary_items()
    items[2] = b"\x21"  # -2
    rejects(bundle(block(items, 0, count=9) + b"\x44\x00\x00\x00\x00", PAYLOAD), "4.2.1")


def test_4_2_1_crc16_x25_and_crc32c():
    accepts(good())
    items = primary_items()
    body = head(ARRAY, 9) + b"".join(items) + b"\x44"
    ieee = zlib.crc32(body + bytes(4)).to_bytes(4, "big")
    rejects(bundle(body + ieee, PAYLOAD), "4.2.1")


def test_4_2_2_crc_present_iff_type_nonzero():
    accepts(bundle(primary(), canonical(crc_type=0)))
    no_crc = block([b"\x01", b"\x01", b"\x00", b"\x01", b"\x45hello"], 0)
    rejects(bundle(primary(), no_crc), "4.2.2")
    extra_crc = block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x45hello", b"\x42\x00\x00"], 0)
    rejects(bundle(primary(), extra_crc), "4.2.2")


def test_4_2_2_crc_length_matches_type():
    accepts(good())
    body = head(ARRAY, 6) + b"\x01\x01\x00\x01\x45hello"
    rejects(bundle(primary(), body + b"\x44\x00\x00\x00\x00"), "4.2.2")


def test_4_2_2_crc_definite_byte_string():
    accepts(good())
    body = head(ARRAY, 6) + b"\x01\x01\x00\x01\x45hello"
    rejects(bundle(primary(), body + b"\x5f\x42\x00\x00\xff"), "4.2.2")
    rejects(bundle(primary(), body + b"\x19\x12\x34"), "4.2.2")


def test_4_2_2_crc_network_byte_order():
    raw_block = canonical(crc_type=2)
    accepts(bundle(primary(), raw_block))
    swapped = with_crc_bytes(raw_block, raw_block[-4:][::-1])
    rejects(bundle(primary(), swapped), "4.2.2")


# --- §4.2.3 bundle processing control flags, §4.2.4 block processing control flags -----------

def test_4_2_3_flags_unsigned():
    accepts(good(flags=0x04))
    items = primary_items()
    items[1] = b"\x20"  # -1
    rejects(bundle(block(items, 2), PAYLOAD), "4.2.3")


def test_4_2_3_admin_record_no_status_reports():
    report = canonical(data=REPORT)
    accepts(bundle(primary(flags=0x02), report))
    rejects(bundle(primary(flags=0x02 | 0x4000), report), "4.2.3")


def test_4_2_3_anonymous_must_not_fragment():
    accepts(good(flags=0x04, src=NULL))
    rejects(good(flags=0, src=NULL), "4.2.3")


def test_4_2_3_anonymous_no_status_reports():
    accepts(good(flags=0x04, src=NULL))
    for request in (0x4000, 0x10000, 0x20000, 0x40000):
        rejects(good(flags=0x04 | request, src=NULL), "4.2.3")
    accepts(good(flags=0x4000))  # the same requests are fine with a source


def test_4_2_3_unrecognized_flags_ignored():
    raw = good(flags=0x0000FFFFF0000004 | 0x08)
    assert accepts(raw).primary.flags == 0x0000FFFFF000000C
    items = primary_items()
    items[1] = b"\x3b" + b"\xff" * 8  # a negative integer is not a flag word, recognised or not
    rejects(bundle(block(items, 2), PAYLOAD), "4.2.3")


def test_4_2_3_flags_are_a_bit_field_from_the_low_order_bit():
    every = (0x01 | 0x04 | 0x20 | 0x40 | 0x4000 | 0x10000 | 0x20000 | 0x40000)
    decoded = accepts(good(flags=every, fragment=(0, 10)))
    assert BundleFlags(decoded.primary.flags) == (
        BundleFlags.IS_FRAGMENT | BundleFlags.MUST_NOT_FRAGMENT | BundleFlags.ACK_REQUESTED
        | BundleFlags.STATUS_TIME_REQUESTED | BundleFlags.REPORT_RECEPTION
        | BundleFlags.REPORT_FORWARDING | BundleFlags.REPORT_DELIVERY | BundleFlags.REPORT_DELETION)
    assert decoded.primary.fragment_offset == 0 and decoded.primary.total_adu_length == 10
    accepts(good(flags=0x04, src=NULL))
    # Bits counted from the high-order end are not the flags: 1 << 61 is no "must not fragment",
    # 1 << 63 no "is a fragment" (so the fragment fields are out of place).
    rejects(good(flags=1 << 61, src=NULL), "4.2.3")
    rejects(good(flags=1 << 63, fragment=(0, 10)), "4.3.1")


def test_4_2_4_block_flags_unsigned():
    accepts(bundle(primary(), canonical(flags=0x10)))
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x20", b"\x00", b"\x41x"], 0)), "4.2.4")


def test_4_2_4_unrecognized_block_flags_ignored():
    decoded = accepts(bundle(primary(), canonical(200, 2, flags=0xFFE8), PAYLOAD))
    assert decoded.blocks[0].flags == 0xFFE8
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x38\xff", b"\x00", b"\x41x"], 0)),
            "4.2.4")


def test_4_2_4_block_flags_are_a_bit_field_from_the_low_order_bit():
    decoded = accepts(bundle(primary(), canonical(200, 2, flags=0x17), PAYLOAD))
    assert BlockFlags(decoded.blocks[0].flags) == (
        BlockFlags.REPLICATE_IN_FRAGMENTS | BlockFlags.REPORT_IF_UNPROCESSABLE
        | BlockFlags.DELETE_BUNDLE_IF_UNPROCESSABLE | BlockFlags.DISCARD_IF_UNPROCESSABLE)
    anonymous = primary(flags=0x04, src=NULL)
    accepts(bundle(anonymous, canonical(flags=1 << 62)))  # bit 1 counted from the high-order end
    rejects(bundle(anonymous, canonical(flags=0x02)), "4.2.4")  # bit 1: "transmit status report"


def test_4_2_4_admin_record_no_block_status_report():
    report = REPORT
    accepts(bundle(primary(flags=0x02), canonical(200, 2, flags=0x05), canonical(data=report)))
    rejects(bundle(primary(flags=0x02), canonical(200, 2, flags=0x02), canonical(data=report)),
            "4.2.4")
    rejects(bundle(primary(flags=0x02), canonical(data=report, flags=0x02)), "4.2.4")


def test_4_2_4_anonymous_no_block_status_report():
    accepts(bundle(primary(flags=0x04, src=NULL), canonical(flags=0x15)))
    rejects(bundle(primary(flags=0x04, src=NULL), canonical(flags=0x02)), "4.2.4")
    accepts(bundle(primary(), canonical(flags=0x02)))  # with a source the request is fine


# --- §4.2.5 identifiers -------------------------------------------------------------------------

def test_4_2_5_1_eid_two_item_array():
    accepts(good(dst=eid("ipn:2.1")))
    rejects(good(dst=b"\x83\x02\x82\x02\x01\x00"), "4.2.5.1")
    rejects(good(dst=text_string("ipn:2.1")), "4.2.5.1")


def test_4_2_5_1_scheme_code_unsigned():
    accepts(good())
    rejects(good(dst=b"\x82\x63ipn\x82\x02\x01"), "4.2.5.1")


def test_4_2_5_1_scheme_code_0_reserved():
    accepts(good())
    rejects(good(dst=b"\x82\x00\x82\x02\x01"), "4.2.5.1")


def test_4_2_5_1_unknown_scheme_rejected():
    """Only dtn (1) and ipn (2) are known here; another scheme's SSP cannot be read or routed."""
    accepts(good(dst=eid("dtn://node/inbox")))
    rejects(good(dst=b"\x82\x03\x41x"), "4.2.5.1")


def test_4_2_5_1_1_dtn_ssp_text_or_zero():
    accepts(good(dst=NULL))
    accepts(good(dst=eid("dtn://node/inbox")))
    rejects(good(dst=b"\x82\x01\x05"), "4.2.5.1.1")
    rejects(good(dst=b"\x82\x01\x44none"), "4.2.5.1.1")
    rejects(good(dst=b"\x82\x01" + text_string("none")), "4.2.5.1.1")


def test_4_2_5_1_1_dtn_ssp_syntax():
    accepts(good(dst=eid("dtn://node/")))
    for ssp in ("node/app", "//node", "//node/a b", "//node/caf\u00e9", "///app"):
        rejects(good(dst=b"\x82\x01" + text_string(ssp)), "4.2.5.1.1")


def test_4_2_5_1_1_node_name_is_a_reg_name():
    """node-name = reg-name (RFC 3986): unreserved, percent-encoded and sub-delims characters."""
    accepts(good(dst=eid("dtn://a.b-c_d~e%4F!$&'()*+,;=/any:thing@[]")))
    for node in ("no:de", "n@de", "n[1]", "no%4", "n%g1", 'n"', "n{}", "n|", "n^", "n\\"):
        rejects(good(dst=b"\x82\x01" + text_string(f"//{node}/x")), "4.2.5.1.1")


def test_4_2_5_1_1_tilde_demux_is_not_a_node_id():
    accepts(good(dst=eid("dtn://group/~all")))
    rejects(good(src=eid("dtn://group/~all")), "4.2.5.1.1")


def test_4_2_5_1_2_ipn_ssp_two_uints():
    accepts(good(dst=b"\x82\x02\x82\x1b" + b"\xff" * 8 + b"\x00"))
    rejects(good(dst=b"\x82\x02\x81\x02"), "4.2.5.1.2")
    rejects(good(dst=b"\x82\x02\x82\x02\x20"), "4.2.5.1.2")
    rejects(good(dst=b"\x82\x02\x83\x02\x01\x00"), "4.2.5.1.2")
    rejects(good(dst=b"\x82\x02" + text_string("2.1")), "4.2.5.1.2")


def test_4_2_5_2_node_id_of_endpoint():
    """A node's administrative endpoint names it: ipn:N.0, dtn://node/ (the agent's node ID)."""
    assert str(EID.parse("ipn:7.3").node_id) == "ipn:7.0"
    assert str(EID.parse("dtn://mars/inbox").node_id) == "dtn://mars/"
    accepts(good(src=eid("dtn://mars/")))
    rejects(good(src=eid("dtn://mars/~all")), "4.2.5.2")


# --- §4.2.6 DTN time, §4.2.7 creation timestamp, §4.2.8 block-type-specific data --------------

def test_4_2_6_dtn_time_unsigned():
    accepts(good(timestamp=b"\x82\x1b\x00\x00\x00\xaf\x65\x15\xbc\x7b\x00"))
    rejects(good(timestamp=b"\x82\xfb\x41\xc6\x73\x56\xc0\x0f\xbe\x77\x00"), "4.2.6")
    rejects(good(timestamp=b"\x82\x20\x00"), "4.2.6")


def test_4_2_7_creation_timestamp_two_uints():
    accepts(good(timestamp=b"\x82\x19\x03\xe8\x05"))
    rejects(good(timestamp=b"\x83\x19\x03\xe8\x05\x00"), "4.2.7")
    rejects(good(timestamp=b"\x81\x19\x03\xe8"), "4.2.7")
    rejects(good(timestamp=b"\x82\x19\x03\xe8\x25"), "4.2.7")


def test_4_2_7_sequence_numbers_grow():
    """The source's counter (RFC 9171 §4.2.7) is the agent's; a bundle keeps what it was given."""
    first = Bundle.create("ipn:1.1", "ipn:2.1", b"a", creation_time=5, sequence=0)
    second = Bundle.create("ipn:1.1", "ipn:2.1", b"b", creation_time=5, sequence=1)
    assert first.id != second.id
    assert Bundle.decode(second.encode()).primary.sequence == 1


def test_4_2_7_creation_time_is_the_request_time(tmp_path):
    """The agent stamps a bundle with the DTN time of the request, or 0 without a clock."""
    clocked = Agent("ipn:1.0", BundleStore(tmp_path / "clocked.db"), Router())
    assert clocked.submit(b"x", "ipn:2.1", T0).creation_time == dtn_time_ms(T0)
    assert clocked.submit(b"y", "ipn:2.1", T0 + 1.5).creation_time == dtn_time_ms(T0 + 1.5)
    unclocked = Agent("ipn:1.0", BundleStore(tmp_path / "unclocked.db"), Router(),
                      AgentConfig(has_clock=False))
    assert unclocked.submit(b"x", "ipn:2.1", T0).creation_time == 0


def test_4_2_8_block_data_is_the_type_encoding():
    accepts(bundle(primary(), canonical(BlockType.BUNDLE_AGE, 2, b"\x19\x01\x00"), PAYLOAD))
    rejects(bundle(primary(), canonical(BlockType.BUNDLE_AGE, 2, b"\x19\x01"), PAYLOAD), "4.2.8")
    rejects(bundle(primary(), canonical(BlockType.BUNDLE_AGE, 2, b"\x01\x02"), PAYLOAD), "4.2.8")


# --- §4.3.1 primary block -----------------------------------------------------------------------

def test_4_3_1_primary_is_array_of_8_to_11():
    accepts(bundle(primary(crc_type=0), canonical(BlockType.BIB, 2, b"\x81\x00\x01\x00"),
                   PAYLOAD))
    items = primary_items()
    rejects(bundle(block(items + [b"\x00", b"\x00", b"\x00"], 2), PAYLOAD), "4.3.1")
    mapped = b"\xa8" + b"".join(bytes([k]) + v for k, v in enumerate(primary_items(crc_type=0)))
    rejects(bundle(mapped, PAYLOAD), "4.3.1")
    # Each count goes with one shape: 8 no CRC, 9 CRC, 10 fragment without CRC, 11 both.
    bib = canonical(BlockType.BIB, 2, b"\x81\x00\x01\x00")
    accepts(good())
    accepts(bundle(primary(crc_type=0, flags=0x01, fragment=(0, 10)), bib, PAYLOAD))
    accepts(good(flags=0x01, fragment=(0, 10)))
    rejects(bundle(block(primary_items(crc_type=0) + [b"\x00"], 0), bib, PAYLOAD), "4.3.1")
    rejects(bundle(block(primary_items() + [b"\x00"], 2), PAYLOAD), "4.3.1")
    rejects(bundle(block(primary_items(flags=0x01, crc_type=0, fragment=(0, 10)) + [b"\x00"], 0),
                   bib, PAYLOAD), "4.3.1")


def test_4_3_1_field_order():
    accepts(good())
    items = primary_items()
    items[6], items[7] = items[7], items[6]  # lifetime before the creation timestamp
    rejects(bundle(block(items, 2), PAYLOAD), "4.3.1")


def test_4_3_1_primary_block_immutable():
    """Decoding keeps the received primary block; encode() gives it back unchanged."""
    dst = b"\x82\x01\x7f\x62//\x66node/x\xff"  # dtn://node/x as a chunked text string
    raw = bundle(primary(dst=dst), PAYLOAD)
    decoded = accepts(raw)
    assert decoded.primary.encode() == primary(dst=dst)
    assert decoded.encode() == raw
    decoded.primary.lifetime = 7  # a field changed on purpose is encoded afresh
    assert Bundle.decode(decoded.encode()).primary.lifetime == 7


def test_4_3_1_version_7():
    accepts(good())
    for version in (b"\x06", b"\x08", b"\x61\x37"):
        items = primary_items()
        items[0] = version
        rejects(bundle(block(items, 2), PAYLOAD), "4.3.1")


def test_4_3_1_primary_crc_unless_bib():
    accepts(bundle(primary(crc_type=0), canonical(BlockType.BIB, 2, b"\x81\x00\x01\x00"),
                   PAYLOAD))
    rejects(bundle(primary(crc_type=0), PAYLOAD), "4.3.1")
    rejects(bundle(primary(crc_type=0), canonical(BlockType.BIB, 2, b"\x81\x01\x01\x00"),
                   PAYLOAD), "4.3.1")


def test_4_3_1_lifetime_unsigned():
    accepts(good(lifetime=b"\x1b" + b"\xff" * 8))
    rejects(good(lifetime=b"\xc2\x49\x01" + bytes(8)), "4.3.1")
    rejects(good(lifetime=b"\x20"), "4.3.1")


def test_4_3_1_fragment_fields_iff_fragment():
    accepts(good(flags=0x01, fragment=(0, 10)))
    rejects(good(flags=0x01), "4.3.1")
    rejects(good(flags=0, fragment=(0, 10)), "4.3.1")


def test_4_3_1_fragment_fields_unsigned():
    accepts(good(flags=0x01, fragment=(5, 10)))
    items = primary_items(flags=0x01, fragment=(0, 10))
    items[8] = b"\x20"
    rejects(bundle(block(items, 2), PAYLOAD), "4.3.1")
    items = primary_items(flags=0x01, fragment=(0, 10))
    items[9] = b"\x42\x00\x0a"
    rejects(bundle(block(items, 2), PAYLOAD), "4.3.1")


def test_4_3_1_fragment_lies_within_the_adu():
    accepts(good(flags=0x01, fragment=(5, 10)))  # "hello" is bytes 5..10 of 10
    rejects(good(flags=0x01, fragment=(6, 10)), "4.3.1")
    rejects(good(flags=0x01, fragment=(0, 4)), "5.8")


def test_4_3_1_primary_crc_over_zeroed_field():
    raw_block = primary()
    accepts(bundle(raw_block, PAYLOAD))
    body = raw_block[:-4]
    with_itself = crc_field(2, (body[:-1], b"\x44" + raw_block[-4:]))[1:]
    rejects(bundle(body + with_itself, PAYLOAD), "4.3.1")


# --- §4.3.2 canonical blocks --------------------------------------------------------------------

def test_4_3_2_canonical_array_5_or_6():
    accepts(good())
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x00"], 0)), "4.3.2")
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x41x", b"\x00",
                                     b"\x00"], 0)), "4.3.2")
    rejects(bundle(primary(), b"\xa1\x01\x41x"), "4.3.2")


def test_4_3_2_field_order():
    accepts(good())
    rejects(bundle(primary(), block([b"\x45hello", b"\x01", b"\x01", b"\x00", b"\x00"], 0)),
            "4.3.2")


def test_4_3_2_block_type_unsigned():
    accepts(bundle(primary(), canonical(255, 2), PAYLOAD))
    rejects(bundle(primary(), block([b"\x29", b"\x02", b"\x00", b"\x00", b"\x41x"], 0), PAYLOAD),
            "4.3.2")


def test_4_3_2_block_number_unsigned():
    accepts(bundle(primary(), canonical(200, 2**64 - 1), PAYLOAD))
    rejects(bundle(primary(), block([b"\x18\xc8", b"\x61\x32", b"\x00", b"\x00", b"\x41x"], 0),
                   PAYLOAD), "4.3.2")


def test_4_3_2_block_data_definite_byte_string():
    accepts(good())
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x5f\x42he\x43llo\xff"],
                                    0)), "4.3.2")
    rejects(bundle(primary(), block([b"\x01", b"\x01", b"\x00", b"\x00", b"\x65hello"], 0)),
            "4.3.2")


def test_4_3_2_block_crc_over_zeroed_field():
    raw_block = canonical(crc_type=1)
    accepts(bundle(primary(), raw_block))
    body = raw_block[:-2]
    with_itself = crc_field(1, (body[:-1], b"\x42" + raw_block[-2:]))[1:]
    rejects(bundle(primary(), body + with_itself), "4.3.2")


def test_4_3_2_unknown_block_types_kept():
    """An unknown block type is well formed; what to do with it is §5.6 step 4's business."""
    raw = bundle(primary(), canonical(200, 2, b"\x00", flags=0x04), PAYLOAD)
    assert accepts(raw).blocks[0].block_type == 200
    rejects(bundle(primary(), canonical(200, 2, b"\x00", flags=0x04)), "4.1")


# --- §4.4 extension blocks ----------------------------------------------------------------------

def test_4_4_extension_blocks_parsed():
    decoded = accepts(bundle(primary(), canonical(BlockType.PREVIOUS_NODE, 2, eid("ipn:9.0")),
                             canonical(BlockType.BUNDLE_AGE, 3, b"\x18\x2a"),
                             canonical(BlockType.HOP_COUNT, 4, b"\x82\x18\x1e\x00"), PAYLOAD))
    assert [b.block_type for b in decoded.blocks] == [6, 7, 10, 1]
    rejects(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x41x"), PAYLOAD), "4.4.3")


def test_4_4_1_previous_node_is_a_node_id():
    accepts(bundle(primary(), canonical(BlockType.PREVIOUS_NODE, 2, eid("dtn://relay/")),
                   PAYLOAD))
    for bad in (NULL, eid("dtn://relay/~all")):
        rejects(bundle(primary(), canonical(BlockType.PREVIOUS_NODE, 2, bad), PAYLOAD), "4.4.1")


def test_4_4_1_one_previous_node_block():
    prev = canonical(BlockType.PREVIOUS_NODE, 2, eid("ipn:9.0"))
    accepts(bundle(primary(), prev, PAYLOAD))
    rejects(bundle(primary(), prev, canonical(BlockType.PREVIOUS_NODE, 3, eid("ipn:8.0")),
                   PAYLOAD), "4.4.1")


def test_4_4_1_created_bundle_has_no_previous_node():
    created = Bundle.create("ipn:1.1", "ipn:2.1", b"x", creation_time=0, hop_limit=9)
    assert created.block_of_type(BlockType.PREVIOUS_NODE) is None
    accepts(created.encode())


def test_4_4_2_bundle_age_unsigned():
    accepts(bundle(primary(), canonical(BlockType.BUNDLE_AGE, 2, b"\x00"), PAYLOAD))
    rejects(bundle(primary(), canonical(BlockType.BUNDLE_AGE, 2, b"\x20"), PAYLOAD), "4.4.2")


def test_4_4_2_creation_time_zero_needs_bundle_age():
    zero = b"\x82\x00\x00"
    accepts(bundle(primary(timestamp=zero), canonical(BlockType.BUNDLE_AGE, 2, b"\x00"), PAYLOAD))
    rejects(bundle(primary(timestamp=zero), PAYLOAD), "4.4.2")
    created = Bundle.create("ipn:1.1", "ipn:2.1", b"x", creation_time=0)
    assert created.block_of_type(BlockType.BUNDLE_AGE) is not None


def test_4_4_2_one_bundle_age_block():
    age = canonical(BlockType.BUNDLE_AGE, 2, b"\x00")
    accepts(bundle(primary(), age, PAYLOAD))
    rejects(bundle(primary(), age, canonical(BlockType.BUNDLE_AGE, 3, b"\x00"), PAYLOAD), "4.4.2")


def test_4_4_3_hop_limit_range():
    for limit in (b"\x01", b"\x18\xff"):
        accepts(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x82" + limit + b"\x00"),
                       PAYLOAD))
    for limit in (b"\x00", b"\x19\x01\x00"):
        rejects(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x82" + limit + b"\x00"),
                       PAYLOAD), "4.4.3")


def test_4_4_3_hop_count_two_uints():
    accepts(bundle(primary(), HOP_COUNT, PAYLOAD))
    for data in (b"\x83\x18\x1e\x00\x00", b"\x81\x18\x1e", b"\x82\x18\x1e\x20", b"\x18\x1e"):
        rejects(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, data), PAYLOAD), "4.4.3")


def test_4_4_3_one_hop_count_block():
    accepts(bundle(primary(), HOP_COUNT, PAYLOAD))
    rejects(bundle(primary(), HOP_COUNT, canonical(BlockType.HOP_COUNT, 3, b"\x82\x05\x00"),
                   PAYLOAD), "4.4.3")


def test_4_4_3_exceeded_hop_limit_still_decodes():
    """Past its limit a bundle is well formed; the agent deletes it (a SHOULD of §4.4.3)."""
    decoded = accepts(bundle(primary(), canonical(BlockType.HOP_COUNT, 2, b"\x82\x02\x05"),
                             PAYLOAD))
    assert decode_hop_count(decoded.blocks[0].data).exceeded


# --- the third-party malformed vectors ---------------------------------------------------------

def _first_section(reference: str) -> str:
    return re.match(r"\s*(\d+(?:\.\d+)*)", reference).group(1)


@pytest.mark.parametrize("vector", MUST, ids=[v["name"] for v in MUST])
def test_invalid_vector_rejected_naming_its_section(vector):
    rejects(bytes.fromhex(vector["hex"]), _first_section(vector["rfc9171_ref"]))
