"""The BPv7 codec against bytes nobody here wrote: pyd3tn output, malformed inputs, peers."""

import pytest
from conftest import load_vectors

from dtn.bundle import Bundle, BundleError

VALID = load_vectors("bpv7_valid.json")
INVALID = load_vectors("bpv7_invalid.json")
PEERS = (load_vectors("peers/ion_bundles.json")["bundles"]
         + load_vectors("peers/ud3tn_bundles.json")["bundles"])
RFC9173 = load_vectors("rfc9173_examples.json")["examples"]
REJECTED = [v for v in INVALID["vectors"] if v["strictness"] in ("must", "implied")]


def _ids(vectors):
    return [v.get("name") or v.get("id") for v in vectors]


@pytest.mark.parametrize("vector", VALID["vectors"], ids=_ids(VALID["vectors"]))
def test_valid_vector_decodes_to_its_fields_and_reencodes_identically(vector):
    raw = bytes.fromhex(vector["hex"])
    bundle = Bundle.decode(raw)
    primary, expected = bundle.primary, vector["primary"]
    assert primary.version == expected["version"]
    assert primary.flags == expected["bundle_proc_flags"]
    assert primary.crc_type == expected["crc_type"]
    assert str(primary.destination) == expected["destination"]
    assert str(primary.source) == expected["source"]
    assert str(primary.report_to) == expected["report_to"]
    assert primary.creation_time == expected["creation_timestamp"]["time"]
    assert primary.sequence == expected["creation_timestamp"]["sequence"]
    assert primary.lifetime == expected["lifetime"]
    assert primary.fragment_offset == expected.get("fragment_offset")
    assert primary.total_adu_length == expected.get("total_application_data_unit_length",
                                                    expected.get("total_adu_length"))
    assert primary.encode().hex() == expected["encoded_hex"]
    assert len(bundle.blocks) == len(vector["canonical_blocks"])
    for block, want in zip(bundle.blocks, vector["canonical_blocks"], strict=True):
        assert block.block_type == want["block_type"]
        assert block.number == want["block_number"]
        assert block.flags == want["block_proc_flags"]
        assert block.crc_type == want["crc_type"]
        assert len(block.data) == want["data_length"]
        if want["data_hex"] is not None:
            assert block.data.hex() == want["data_hex"]
        if want["encoded_hex"] is not None:
            assert block.encode().hex() == want["encoded_hex"]
    assert len(bundle.payload) == vector["payload"]["length"]
    assert bundle.encode() == raw


@pytest.mark.parametrize("vector", VALID["valid_but_pyd3tn_cannot_parse"],
                         ids=_ids(VALID["valid_but_pyd3tn_cannot_parse"]))
def test_private_block_types_are_kept_byte_exact(vector):
    raw = bytes.fromhex(vector["hex"])
    bundle = Bundle.decode(raw)
    for block, want in zip(bundle.blocks, vector["canonical_blocks"], strict=True):
        assert (block.block_type, block.number, block.flags, block.crc_type) == (
            want["block_type"], want["block_number"], want["block_proc_flags"], want["crc_type"])
        assert block.data.hex() == want["data_hex"]
    assert bundle.encode() == raw


@pytest.mark.parametrize("vector", REJECTED, ids=_ids(REJECTED))
def test_malformed_input_raises_bundle_error(vector):
    with pytest.raises(BundleError) as info:
        Bundle.decode(bytes.fromhex(vector["hex"]))
    assert str(info.value)  # a message that says what is wrong


BOUNDARY = INVALID["not_invalid_boundary_cases"]["vectors"]


@pytest.mark.parametrize("vector", BOUNDARY, ids=_ids(BOUNDARY))
def test_boundary_cases_are_accepted(vector):
    bundle = Bundle.decode(bytes.fromhex(vector["hex"]))
    # Re-encoding normalises to deterministic CBOR; that form must itself decode the same.
    again = Bundle.decode(bundle.encode())
    assert again.encode() == bundle.encode()
    assert again.payload == bundle.payload


@pytest.mark.parametrize("vector", PEERS, ids=_ids(PEERS))
def test_peer_bundles_decode_and_reencode_identically(vector):
    raw = bytes.fromhex(vector["hex"])
    bundle = Bundle.decode(raw)
    blocks = vector["decoded"]["blocks"]
    assert [b.block_type for b in bundle.blocks] == [b["type"] for b in blocks]
    assert bundle.encode() == raw


@pytest.mark.parametrize("example", RFC9173, ids=[e["name"][:4] for e in RFC9173])
def test_rfc9173_final_bundles_need_and_get_the_lenient_mode(example):
    raw = bytes.fromhex(example["expected"]["final_bundle_hex"])
    if example["rfc9171_conformance_of_final_bundle"].startswith("final bundle conformant"):
        Bundle.decode(raw)
    else:
        with pytest.raises(BundleError):
            Bundle.decode(raw)
    assert Bundle.decode(raw, lenient=True).encode() == raw
