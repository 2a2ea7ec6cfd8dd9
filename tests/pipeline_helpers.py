"""What the payload pipeline tests share: one bundle sent to the wire and back."""

from dtn.bundle import Bundle
from dtn.payload import PayloadPipeline


def send(pipeline: PayloadPipeline, data: bytes, sequence: int = 0) -> bytes:
    return pipeline.send(
        data, "ipn:1.1", "ipn:2.1", creation_time=800_000_000_000, sequence=sequence
    ).encode()


def receive(pipeline: PayloadPipeline, wire: bytes) -> bytes:
    return pipeline.deliver(Bundle.decode(wire))
