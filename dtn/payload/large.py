"""Application data too large to hold in memory (docs/payload.md, Large data).

Sending, the data streams through the steps of PayloadPipeline.send (zstd, then the BCB the
security policy asks for) into a spool file, piece by piece: `FileSealer`. The sealed bundle is
then cut into RFC 9171 fragments read from that file (dtn.agent.fragment.fragments_of). At the
destination the agent reassembles the fragments into a file (dtn.agent.fragment.
reassemble_into), and `open_file` decrypts, authenticates and decompresses that file into the
application's. Memory is bounded by the piece size, whatever the size of the data.

The security blocks are the shapes the pipeline writes: none, a BCB over the payload, or a BCB
over the payload beside a BIB over the primary block. A BIB over the payload alone (a rule with
`bib` and no `bcb`) would have to be checked over the whole payload before its first byte is
used; large data under such a rule is refused rather than half honoured.

Nothing reaches the application before the AES-GCM tag over the whole payload has checked out:
the output file is written as the data is decrypted, and deleted if the tag or the restored
length is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from cryptography.exceptions import InvalidTag

from dtn.bundle import BlockFlags, BlockType, Bundle, CanonicalBlock
from dtn.security import AbstractSecurityBlock, Accepted, SecurityError, accept
from dtn.security.aes_gcm import (
    CONTEXT_ID,
    BcbParameters,
    BcbStream,
    authentication_failed,
    result_tag,
    stream_decryptor,
)
from dtn.security.bpsec import PRIMARY_BLOCK
from dtn.security.errors import Reason
from dtn.security.scope import block_header, scope_prefix

from .compression import COMPRESSION_BLOCK_FLAGS, StreamRestorer
from .errors import PayloadReason, PayloadRejected

if TYPE_CHECKING:
    from .pipeline import PayloadPipeline

PIECE = 1 << 20  # bytes read, compressed, encrypted or written at a time
PAYLOAD_BLOCK = 1
_REPLICATE = int(BlockFlags.REPLICATE_IN_FRAGMENTS)
_BCB, _BIB, _PAYLOAD = BlockType.BCB, BlockType.BIB, BlockType.PAYLOAD


class SealedFile(NamedTuple):
    """A sealed bundle whose payload is in a file."""

    bundle: Bundle  # every block but the payload's data: its payload block is empty
    path: Path  # the payload block's data
    length: int  # its size in bytes


class FileSealer:
    """PayloadPipeline.seal for `size` bytes of data that come piece by piece: write() each
    piece, then finish(). `bundle` is the unsealed bundle (Bundle.create with an empty
    payload), whose blocks finish() completes. The sealed payload goes to `path`; abort()
    removes it."""

    def __init__(self, pipeline: PayloadPipeline, path: Path, size: int, bundle: Bundle) -> None:
        primary = bundle.primary
        crc_type = bundle.payload_block.crc_type
        protection = pipeline.protection_for(primary.destination)
        if protection is not None and protection.bcb is None:
            raise PayloadRejected(
                PayloadReason.POLICY,
                f"large data for {primary.destination} falls under a rule that signs the "
                f"payload without encrypting it ({protection.rule.describe()}); large data "
                "needs a rule with bcb, or none",
            )
        self.size, self.path = size, path
        self._compressor, marker = pipeline.compressor.stream(size)
        marker_block = CanonicalBlock(
            pipeline.compression_block_type, 2, marker, COMPRESSION_BLOCK_FLAGS, crc_type
        )
        bundle.blocks.insert(0, marker_block)
        self._bcb: BcbStream | None = None
        if protection is not None:
            encoded, random_bytes = primary.canonical_encoding(), pipeline.random_bytes
            number = 3
            if protection.bib is not None:  # over the primary block, as seal() signs it
                bundle.blocks.insert(
                    0, protection.bib.sign(None, encoded, number, 0, crc_type, random_bytes)
                )
                number += 1
            sealer = protection.bcb.sealer((_PAYLOAD, PAYLOAD_BLOCK, 0), number, _REPLICATE)
            self._bcb = sealer.stream(encoded, crc_type, random_bytes)
        self._bundle = bundle
        self._pipeline = pipeline
        self._received = 0
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed by finish or abort)

    def write(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.size:
            raise ValueError(f"more than the {self.size} bytes announced")
        self._put(self._compressor.compress(data))

    def finish(self) -> SealedFile:
        """The sealed bundle, its payload in `path` (written, not yet fsynced)."""
        if self._received != self.size:
            raise ValueError(f"{self._received} bytes written of the {self.size} announced")
        self._put(self._compressor.flush())
        if self._bcb is not None:
            blocks = self._bundle.blocks
            blocks.insert(len(blocks) - 2, self._bcb.finish())
        length = self._file.tell()
        self._file.close()
        self._pipeline.count("compressed")
        return SealedFile(self._bundle, self.path, length)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def _put(self, sealed: bytes) -> None:
        if self._bcb is not None:
            sealed = self._bcb.update(sealed)
        self._file.write(sealed)


def open_file(
    pipeline: PayloadPipeline, bundle: Bundle, payload: Path, out: Path, limit: int
) -> int:
    """PayloadPipeline.deliver for a bundle whose payload block is empty and whose payload is
    the file `payload`: the application data written to `out`, at most `limit` bytes; how
    many. PayloadRejected, counted by reason, for anything that must not reach the
    application; `out` is then removed."""
    steps = open_file_steps(pipeline, bundle, payload, out, limit)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def open_file_steps(
    pipeline: PayloadPipeline, bundle: Bundle, payload: Path, out: Path, limit: int
) -> Iterator[None]:
    """open_file one piece at a time: the generator yields after each piece (so an event
    loop can run between them) and returns what open_file returns."""
    try:
        size = yield from _open_file(pipeline, bundle, payload, out, limit)
    except PayloadRejected as exc:
        out.unlink(missing_ok=True)
        pipeline.rejections[exc.reason] += 1
        raise
    except SecurityError as exc:
        out.unlink(missing_ok=True)
        pipeline.rejections[exc.reason] += 1
        raise PayloadRejected(exc.reason, str(exc)) from None
    pipeline.count("delivered")
    return size


def _open_file(
    pipeline: PayloadPipeline, bundle: Bundle, payload: Path, out: Path, limit: int
) -> Iterator[None]:
    primary = bundle.primary
    bcbs = [b for b in bundle.blocks if b.block_type == _BCB]
    markers = pipeline.markers_of(bundle)
    if len(markers) > 1:
        raise PayloadRejected(
            PayloadReason.MALFORMED_COMPRESSION_BLOCK,
            f"{len(markers)} payload compression blocks; a bundle has one",
        )
    if len(bcbs) > 1:
        raise _unsupported(f"{len(bcbs)} BCBs")
    others = [b for b in bundle.blocks if b.block_type != _BCB]
    accepted = accept(Bundle(primary, others), pipeline.key_for)
    if accepted.verified - {PRIMARY_BLOCK}:
        raise _unsupported("a BIB over a block other than the primary block")
    decryptor = None
    if bcbs:
        decryptor = _decryptor(pipeline, bundle, bcbs[0])
        accepted = Accepted({PAYLOAD_BLOCK: b""}, accepted.verified, [bcbs[0].number])
    rule = pipeline.policy.inbound(primary.source)
    if rule is not None:
        from .pipeline import check_required  # noqa: PLC0415 (pipeline imports this module)

        check_required(rule, accepted, bool(markers), primary.source)
    if markers:
        restorer = pipeline.compressor.stream_restorer(markers[0].data, limit)
    else:
        size = payload.stat().st_size
        if size > limit:
            raise PayloadRejected(
                PayloadReason.TOO_LARGE,
                f"payload of {size} bytes is more than this node accepts ({limit})",
            )
        restorer = StreamRestorer(size, None, check_magic=False)
    with open(payload, "rb") as source, open(out, "wb") as sink:
        try:
            while piece := source.read(PIECE):
                if decryptor is not None:
                    piece = decryptor.update(piece)
                sink.write(restorer.feed(piece))
                yield
            restorer.finish()
        except PayloadRejected:
            if decryptor is None:
                raise
            # Unauthenticated plaintext failed to restore: say what the tag says first.
            while piece := source.read(PIECE):
                decryptor.update(piece)
            _authenticate(decryptor, bcbs[0])
            raise
        if decryptor is not None:
            _authenticate(decryptor, bcbs[0])
    return restorer.declared


def _authenticate(decryptor: Any, bcb: CanonicalBlock) -> None:
    try:
        decryptor.finalize()
    except InvalidTag:
        raise authentication_failed(f"BCB (block {bcb.number})") from None


def _decryptor(pipeline: PayloadPipeline, bundle: Bundle, bcb: CanonicalBlock) -> Any:
    """The AES-GCM decryption context of a BCB over the payload (what bpsec.accept checks of
    it, for this one shape)."""
    what = f"BCB (block {bcb.number})"
    asb = AbstractSecurityBlock.decode(bcb.data)
    if asb.targets != [PAYLOAD_BLOCK] or asb.context_id != CONTEXT_ID:
        raise _unsupported(f"a BCB over blocks {asb.targets} in context {asb.context_id}")
    if not bcb.flags & _REPLICATE:
        raise SecurityError(
            Reason.RULE_BROKEN,
            f"{what}: a BCB over the payload must be replicated in every fragment (RFC 9172 3.8)",
        )
    parameters = BcbParameters.from_asb(asb.parameters, what)
    key = pipeline.key_for(_BCB, asb.source)
    if key is None:
        raise SecurityError(Reason.MISSING_KEY, f"{what}: no key for security source {asb.source}")
    content_key = parameters.content_key(key, what)
    aad = scope_prefix(
        parameters.scope,
        bundle.primary.canonical_encoding(),
        bundle.payload_block,
        block_header(_BCB, bcb.number, bcb.flags),
    )
    return stream_decryptor(content_key, parameters.iv, result_tag(asb.results[0], what), aad)


def _unsupported(what: str) -> PayloadRejected:
    return PayloadRejected(
        Reason.UNSUPPORTED_CONTEXT,
        f"large data with {what} is not supported: a BCB over the payload, and a BIB over the "
        "primary block beside it, are",
    )
