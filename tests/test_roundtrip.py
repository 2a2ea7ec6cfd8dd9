"""decode -> encode gives back the received bytes, for every valid bundle in the test vectors:
bpv7_valid.json, the RFC 9171 boundary cases of bpv7_invalid.json, the ION and µD3TN captures
and the RFC 9173 Appendix A bundles (read leniently, as they need), on both decode paths.

One vector is not deterministic CBOR and is not given back: canonical_block_indefinite_length_array
holds a canonical block as an indefinite-length array. The encoder writes canonical blocks in
the deterministic form (definite-length array, CRC recomputed); only the primary block, which
RFC 9171 §4.3.1 makes immutable, keeps its received bytes. Its re-encoding must decode to the
same bundle and be a fixed point."""

import pytest
from conftest import load_vectors

from dtn.bundle import Bundle

NOT_DETERMINISTIC = {"canonical_block_indefinite_length_array"}


def _named(vectors: list[dict], key: str = "name") -> list[tuple[str, bytes]]:
    return [(str(vector[key]), bytes.fromhex(vector["hex"])) for vector in vectors]


VALID = load_vectors("bpv7_valid.json")
STRICT = (
    _named(VALID["vectors"] + VALID["valid_but_pyd3tn_cannot_parse"])
    + _named(load_vectors("bpv7_invalid.json")["not_invalid_boundary_cases"]["vectors"])
    + _named(load_vectors("peers/ion_bundles.json")["bundles"], "id")
    + _named(load_vectors("peers/ud3tn_bundles.json")["bundles"], "id")
)
LENIENT = [
    (example["rfc9173_section"] + " " + stage, bytes.fromhex(hex_))
    for example in load_vectors("rfc9173_examples.json")["examples"]
    for stage, hex_ in (("final", example["expected"]["final_bundle_hex"]),
                        ("original", example["inputs"].get("original_bundle_hex")))
    if hex_
]
CASES = [(name, wire, False) for name, wire in STRICT] + [(n, w, True) for n, w in LENIENT]


pytestmark = pytest.mark.usefixtures("decode_path")


def test_every_vector_is_covered():
    assert len(STRICT) >= 60 and len(LENIENT) == 8
    assert {name for name, _wire in STRICT} >= NOT_DETERMINISTIC


@pytest.mark.parametrize(("name", "wire", "lenient"), CASES, ids=[c[0] for c in CASES])
def test_decode_encode_gives_the_received_bytes(name, wire, lenient):
    bundle = Bundle.decode(wire, lenient=lenient)
    encoded = bundle.encode()
    assert encoded == bundle.encode_python()
    if name in NOT_DETERMINISTIC:
        assert encoded != wire
        again = Bundle.decode(encoded, lenient=lenient)
        assert (again.primary, again.blocks) == (bundle.primary, bundle.blocks)
        assert again.encode() == encoded
    else:
        assert encoded == wire
