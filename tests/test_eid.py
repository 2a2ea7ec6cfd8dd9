import pytest

from dtn.bundle import EID, NULL_EID, BundleError
from dtn.bundle.eid import decode_eid


@pytest.mark.parametrize("text", ["dtn:none", "dtn://mars-base/inbox", "dtn://earth/",
                                  "ipn:0.0", "ipn:18446744073709551615.7"])
def test_valid_eids_round_trip_through_text_and_cbor(text):
    eid = EID.parse(text)
    assert str(eid) == text
    assert decode_eid(eid.to_cbor(), 0, "eid") == (eid, len(eid.to_cbor()))


@pytest.mark.parametrize("text", ["dtn:", "dtn:/x/y", "dtn://", "dtn://node", "dtn://no de/x",
                                  "ipn:1", "ipn:1.-2", "ipn:a.b", "ipn:18446744073709551616.0",
                                  "http://x/", "", "ipn:١.٢"])
def test_invalid_eids_raise_bundle_error(text):
    with pytest.raises(BundleError):
        EID.parse(text)


def test_node_ids_and_singletons():
    assert EID.parse("ipn:7.42").node_id == EID.parse("ipn:7.0")
    assert EID.parse("dtn://mars/app/x").node_id == EID.parse("dtn://mars/")
    assert not EID.parse("dtn://group/~all").is_singleton
    assert NULL_EID.is_null and EID.parse("dtn:none") is NULL_EID
    assert EID.parse("ipn:1.1") != EID.parse("ipn:1.2")
    assert len({EID.parse("ipn:1.1"), EID.ipn(1, 1)}) == 1
