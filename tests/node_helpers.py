"""What the tests of real node daemons share: taking what a node delivers, as an application."""

from __future__ import annotations

import time

from dtn.client import Client


def receive_all(path: str, endpoint: str, count: int, timeout: float) -> list[tuple[str, bytes]]:
    """(bundle id, data) of up to `count` deliveries on `endpoint`, each acknowledged, in the
    order they came; fewer if `timeout` seconds pass first."""
    got = []
    deadline = time.monotonic() + timeout
    with Client(path) as client:
        client.register(endpoint)
        while len(got) < count and time.monotonic() < deadline:
            item = client.receive(timeout=max(0.1, deadline - time.monotonic()))
            if item is None:
                break
            got.append((item.bundle_id, item.data))
            client.ack(item)
    return got
