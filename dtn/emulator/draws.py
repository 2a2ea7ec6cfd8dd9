"""Random numbers drawn from numpy in batches and handed out one at a time.

A call into numpy per datagram costs more than the rest of the channel model; a batch of 4096
drawn at once and popped from a Python list costs tens of nanoseconds per value. The batch size is
fixed, so a seed gives the same sequence however the values are consumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

BATCH = 4096


class BatchedDraws:
    __slots__ = ("_refill", "_values")

    def __init__(self, refill: Callable[[], list]) -> None:
        self._refill = refill
        self._values: list = []

    def next(self):
        values = self._values
        if not values:
            values = self._values = self._refill()
            values.reverse()  # pop() from the end hands them out in drawn order
        return values.pop()


def uniform_draws(rng: np.random.Generator) -> BatchedDraws:
    """Uniform floats in [0, 1)."""
    return BatchedDraws(lambda: rng.random(BATCH).tolist())


def geometric_draws(rng: np.random.Generator, probability: float) -> BatchedDraws:
    """Trials up to and including the first success (>= 1); infinite when probability is 0."""
    if probability <= 0.0:
        return BatchedDraws(lambda: [math.inf] * BATCH)
    return BatchedDraws(lambda: rng.geometric(probability, BATCH).tolist())
