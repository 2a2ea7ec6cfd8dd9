"""BPSec acceptance (dtn.security.bpsec.accept: decrypt every BCB, verify every BIB) on
mutated secured bundles. An input is one key-set byte then the bundle: the byte picks which
keys the receiver holds (those of an RFC 9173 Appendix A example, or of the bundles this module
secures itself), so a mutation can also hand a right key to the wrong bundle."""

from __future__ import annotations

from functools import cache

from dtn.bundle import EID, BlockType, Bundle, BundleError
from dtn.security import AesVariant, SecurityError, ShaVariant, accept, add_bcb, add_bib

from . import _seeds

_SOURCE = EID.parse("ipn:1.1")
_HMAC_KEY = bytes(range(48))
_AES_KEY = bytes(range(100, 132))
_KEK = bytes(range(7, 31))


def _example_keys(example: dict) -> dict[BlockType, bytes]:
    """The key per service a receiver of an RFC 9173 example holds."""
    inputs, keys = example["inputs"], {}
    if "bib" in inputs:
        keys[BlockType.BIB] = bytes.fromhex(inputs["bib"]["key_hex"])
    if "bcb" in inputs:
        spec = inputs["bcb"]
        key = (spec.get("key_encryption_key_hex") or spec.get("content_encryption_key_hex")
               or spec["key_hex"])
        keys[BlockType.BCB] = bytes.fromhex(key)
    return keys


@cache
def _key_sets() -> tuple[dict[BlockType, bytes], ...]:
    own = ({BlockType.BIB: _HMAC_KEY, BlockType.BCB: _AES_KEY},
           {BlockType.BIB: _KEK, BlockType.BCB: _KEK},
           {BlockType.BIB: b"short", BlockType.BCB: b"\x00" * 5})  # wrong sizes: typed errors
    return (*(_example_keys(e) for e in _seeds.rfc9173_examples()), *own)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    keys = _key_sets()[data[0] % len(_key_sets())]
    try:
        bundle = Bundle.decode(data[1:], lenient=True)
    except BundleError:
        return
    try:
        accepted = accept(bundle, lambda service, source: keys.get(service))
    except SecurityError:
        return
    accepted.apply(bundle)
    bundle.encode()


def _own_bundles() -> list[bytes]:
    """Bundles secured here with known keys and IVs: each service alone, both, key wrap, and
    scopes 0 and full, over the payload, the primary block and an extension block."""
    def fresh(**options) -> Bundle:
        return Bundle.create("ipn:1.1", "ipn:2.1", b"telemetry " * 8, creation_time=800_000,
                             hop_limit=30, **options)

    iv = bytes(range(12))
    made = []
    bundle = fresh()
    add_bib(bundle, [0, 1], _HMAC_KEY, security_source=_SOURCE, variant=ShaVariant.HMAC_SHA_384)
    made.append((0, bundle))
    bundle = fresh()
    add_bcb(bundle, [1], _AES_KEY, security_source=_SOURCE, iv=iv, variant=AesVariant.A256GCM)
    made.append((0, bundle))
    bundle = fresh(crc_type=0)
    add_bib(bundle, [1], _HMAC_KEY, security_source=_SOURCE, scope=0)
    add_bib(bundle, [2], _HMAC_KEY, security_source=EID.parse("ipn:3.0"))
    add_bcb(bundle, [1, 3], _AES_KEY, security_source=_SOURCE, iv=iv)
    made.append((0, bundle))
    bundle = fresh()
    add_bib(bundle, [0], _KEK, security_source=_SOURCE, key_wrap=True,
            random_bytes=lambda n: bytes(n))
    add_bcb(bundle, [1], _KEK, security_source=_SOURCE, key_wrap=True, iv=iv,
            content_key=bytes(range(16)), variant=AesVariant.A128GCM)
    made.append((1, bundle))
    offset = len(_seeds.rfc9173_examples())
    return [bytes([offset + keys]) + bundle.encode() for keys, bundle in made]


def seeds() -> list[bytes]:
    examples = [bytes([index]) + bytes.fromhex(example["expected"]["final_bundle_hex"])
                for index, example in enumerate(_seeds.rfc9173_examples())]
    return examples + _own_bundles()
