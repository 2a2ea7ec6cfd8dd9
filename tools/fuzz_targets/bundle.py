"""The bundle decoder: the C scanner path and the pure-Python walk must agree, and every
accepted bundle must be a fixed point of encode -> decode.

`decoder.decode_blocks` takes the C scanner when it is built (falling back to the walk for
what the scanner does not take); `decoder.walk_blocks` is the walk alone. Both run strict, and
on a strict rejection both run lenient too (the mode the RFC 9173 examples need)."""

from __future__ import annotations

from dtn.bundle import Bundle, BundleError
from dtn.bundle.decoder import decode_blocks, walk_blocks

from . import _seeds


def _decode(decode, data: bytes, lenient: bool) -> Bundle | BundleError:
    try:
        return Bundle(*decode(data, lenient))
    except BundleError as error:
        return error


def _same(first: Bundle, second: Bundle) -> bool:
    return first.primary == second.primary and first.blocks == second.blocks


def _check_paths(data: bytes, lenient: bool) -> Bundle | None:
    scanned = _decode(decode_blocks, data, lenient)
    walked = _decode(walk_blocks, data, lenient)
    if isinstance(scanned, BundleError) or isinstance(walked, BundleError):
        if type(scanned) is not type(walked):
            raise AssertionError(f"decode paths disagree (lenient={lenient}): C scanner path "
                                 f"gives {scanned!r}, Python walk gives {walked!r}")
        return None
    if not _same(scanned, walked):
        raise AssertionError(f"decode paths give different bundles: {scanned!r} / {walked!r}")
    return scanned


def _check_fixed_point(bundle: Bundle, lenient: bool) -> None:
    encoded = bundle.encode()
    if encoded != bundle.encode_python():
        raise AssertionError("C and Python encoders give different bytes")
    again = Bundle.decode(encoded, lenient=lenient)  # a BundleError here is a crash too
    if not _same(again, bundle) or again.encode() != encoded:
        raise AssertionError(f"encode -> decode is not a fixed point for {bundle!r}")


def test_one_input(data: bytes) -> None:
    for lenient in (False, True):
        bundle = _check_paths(data, lenient)
        if bundle is not None:
            _check_fixed_point(bundle, lenient)
            return


def seeds() -> list[bytes]:
    return [*_seeds.valid_bundles(), *_seeds.invalid_bundles(), *_seeds.rfc9173_bundles()]
