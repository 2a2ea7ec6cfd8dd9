"""Large data: sealed into a file piece by piece, cut into fragments, reassembled into a file and
opened into the application's file; the same bytes and the same checks as the in-memory path."""

import os
import random

import pytest
from pipeline_helpers import RULES, TELEMETRY, pair

from dtn.agent.fragment import fragments_of, reassemble_into
from dtn.bundle import Bundle
from dtn.payload import PayloadRejected
from dtn.payload.large import FileSealer, open_file

STREAMABLE = [None, "bcb-256", "bcb-128-wrapped", "bcb+bib", "bcb-128-scope-1"]
DATA = TELEMETRY * 40 + os.urandom(300_000)  # compressible, then not: ~1.7 MB


def seal(earth, tmp_path, data: bytes, piece: int = 65_536):
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", b"", creation_time=800_000_000_000)
    sealer = FileSealer(earth, tmp_path / "spool", len(data), bundle)
    for start in range(0, len(data), piece):
        sealer.write(data[start : start + piece])
    return sealer.finish()


def wire_fragments(sealed, max_size: int) -> list[bytes]:
    with open(sealed.path, "rb") as f:

        def read(position: int, count: int) -> bytes:
            f.seek(position)
            return f.read(count)

        return [b.encode() for b in fragments_of(sealed.bundle, sealed.length, read, max_size)]


def reassembled(tmp_path, wires: list[bytes]):
    path = tmp_path / "reassembled"
    with open(path, "wb") as out:
        whole = reassemble_into((Bundle.decode(w) for w in wires), out)
    return whole, path


@pytest.mark.parametrize("name", STREAMABLE)
def test_fragments_reassemble_and_open_to_the_data(name, tmp_path):
    earth, mars = pair(RULES.get(name))
    sealed = seal(earth, tmp_path, DATA)
    wires = wire_fragments(sealed, 40_000)
    assert len(wires) > 5 and all(len(w) <= 40_000 for w in wires)
    random.Random(1).shuffle(wires)
    whole, payload = reassembled(tmp_path, wires)
    out = tmp_path / "out"
    assert open_file(mars, whole, payload, out, 10 << 20) == len(DATA)
    assert out.read_bytes() == DATA
    assert mars.counts["delivered"] == 1


@pytest.mark.parametrize("name", STREAMABLE)
def test_a_file_sealed_bundle_opens_on_the_in_memory_path(name, tmp_path):
    """The streaming sealer writes what seal() would: the in-memory deliver accepts it."""
    earth, mars = pair(RULES.get(name))
    sealed = seal(earth, tmp_path, DATA)
    whole = sealed.bundle
    whole.payload = sealed.path.read_bytes()
    assert mars.deliver(Bundle.decode(whole.encode())) == DATA


def test_an_in_memory_sealed_bundle_opens_on_the_file_path(tmp_path):
    earth, mars = pair(RULES["bcb-256"])
    bundle = earth.send(DATA, "ipn:1.1", "ipn:2.1", creation_time=800_000_000_000)
    payload = tmp_path / "payload"
    payload.write_bytes(bundle.payload)
    bundle.payload = b""
    out = tmp_path / "out"
    assert open_file(mars, bundle, payload, out, 10 << 20) == len(DATA)
    assert out.read_bytes() == DATA


@pytest.mark.parametrize("position", [0, 1000, -1])
def test_a_changed_byte_anywhere_is_rejected_and_nothing_is_left(tmp_path, position):
    earth, mars = pair(RULES["bcb-256"])
    sealed = seal(earth, tmp_path, DATA)
    tampered = bytearray(sealed.path.read_bytes())
    tampered[position] ^= 0x01
    sealed.path.write_bytes(tampered)
    out = tmp_path / "out"
    with pytest.raises(PayloadRejected) as caught:
        open_file(mars, sealed.bundle, sealed.path, out, 10 << 20)
    assert "authentication failed" in str(caught.value)
    assert not out.exists()
    assert mars.rejections[caught.value.reason] == 1


def test_the_limit_is_checked_before_anything_is_written(tmp_path):
    earth, mars = pair(None)
    sealed = seal(earth, tmp_path, DATA)
    with pytest.raises(PayloadRejected, match="more than this node accepts"):
        open_file(mars, sealed.bundle, sealed.path, tmp_path / "out", len(DATA) - 1)
    assert not (tmp_path / "out").exists()


def test_a_payload_that_restores_to_another_length_is_rejected(tmp_path):
    earth, mars = pair(None)
    sealed = seal(earth, tmp_path, DATA)
    with open(sealed.path, "ab") as f:  # a second frame after the first
        f.write(sealed.path.read_bytes()[:100])
    with pytest.raises(PayloadRejected):
        open_file(mars, sealed.bundle, sealed.path, tmp_path / "out", 10 << 20)


def test_policy_requires_the_bcb_on_the_file_path_too(tmp_path):
    plain, _ = pair(None)
    _, mars = pair(RULES["bcb-256"])
    sealed = seal(plain, tmp_path, DATA)
    with pytest.raises(PayloadRejected, match="must be encrypted"):
        open_file(mars, sealed.bundle, sealed.path, tmp_path / "out", 10 << 20)


def test_a_sign_only_rule_is_refused_for_large_data(tmp_path):
    earth, _ = pair(RULES["bib-512"])
    with pytest.raises(PayloadRejected, match="needs a rule with bcb"):
        seal(earth, tmp_path, DATA)


def test_the_sealer_holds_the_announced_size(tmp_path):
    earth, _ = pair(None)
    bundle = Bundle.create("ipn:1.1", "ipn:2.1", b"", creation_time=1)
    sealer = FileSealer(earth, tmp_path / "spool", 10, bundle)
    with pytest.raises(ValueError, match="more than the 10 bytes"):
        sealer.write(bytes(11))
    sealer.abort()
    assert not (tmp_path / "spool").exists()
