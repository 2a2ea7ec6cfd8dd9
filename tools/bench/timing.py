"""Rates for benchmarks that compare dtn with a peer in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_rates(actions: list[Callable[[], object]], rounds: int) -> list[float]:
    """Calls per second of each action: batches of ~30 ms, interleaved so that machine load
    hits every action alike, the best of `rounds` batches each."""
    batches = []
    for action in actions:
        count = 1
        while True:
            start = time.perf_counter()
            for _ in range(count):
                action()
            elapsed = time.perf_counter() - start
            if elapsed > 0.01:
                break
            count *= 2
        batches.append(max(1, int(count * 0.03 / elapsed)))
    best = [0.0] * len(actions)
    for _ in range(rounds):
        for index, (action, batch) in enumerate(zip(actions, batches, strict=True)):
            start = time.perf_counter()
            for _ in range(batch):
                action()
            best[index] = max(best[index], batch / (time.perf_counter() - start))
    return best
