"""The in-flight queue: delivery order, the memory cap, and the disk spool."""

import random

from dtn.emulator.inflight import (
    ITEM_OVERHEAD,
    READ_AHEAD_BYTES,
    InFlightQueue,
    MemoryBudget,
    SpoolError,
)


def drain(queue: InFlightQueue, step: float) -> list[tuple[float, bytes]]:
    out, horizon = [], 0.0
    while queue.datagrams:
        out += queue.pop_due(horizon, 100)
        horizon += step
    return out


def test_memory_stays_under_the_cap_and_the_rest_spools_without_loss(tmp_path):
    rng = random.Random(5)
    budget = MemoryBudget(256 << 10)
    queue = InFlightQueue(budget, tmp_path)
    items = [(i * 0.001, rng.randbytes(rng.randint(0, 9000))) for i in range(3000)]
    peak = 0
    for deliver_at, data in items:
        queue.push(deliver_at, data)
        peak = max(peak, budget.used)
    assert queue.spooled_bytes > 10 * budget.cap
    assert queue.bytes == sum(len(data) for _, data in items)
    out, horizon = [], 0.0
    while queue.datagrams:
        out += queue.pop_due(horizon, 50)
        peak = max(peak, budget.used)
        horizon += 0.05
        if horizon < 2.0:  # keep writing while reading back
            queue.push(10.0 + horizon, b"late arrival")
            items.append((10.0 + horizon, b"late arrival"))
    assert out == items
    assert peak <= budget.cap + READ_AHEAD_BYTES + 9000 + ITEM_OVERHEAD
    assert budget.used == 0 and queue.bytes == 0
    assert list(tmp_path.rglob("*.spool")) == []  # read back segments are deleted
    queue.close()
    assert list(tmp_path.iterdir()) == []


def test_out_of_order_deliveries_wait_in_memory_and_come_out_sorted(tmp_path):
    queue = InFlightQueue(MemoryBudget(1 << 20), tmp_path)
    times = [0.0, 1.0, 5.0, 2.0, 3.0, 6.0, 4.0, 7.0]
    for t in times:
        queue.push(t, str(t).encode())
    assert queue.next_due() == 0.0
    assert queue.pop_due(3.5, 100) == [(t, str(t).encode()) for t in (0.0, 1.0, 2.0, 3.0)]
    assert queue.next_due() == 4.0
    assert [t for t, _ in drain(queue, 1.0)] == [4.0, 5.0, 6.0, 7.0]


def test_pop_due_respects_horizon_and_limit(tmp_path):
    queue = InFlightQueue(MemoryBudget(1 << 20), tmp_path)
    for i in range(10):
        queue.push(float(i), b"x")
    assert len(queue.pop_due(100.0, 3)) == 3
    assert [t for t, _ in queue.pop_due(5.0, 100)] == [3.0, 4.0, 5.0]
    assert queue.next_due() == 6.0 and queue.datagrams == 4


def test_close_drops_in_flight_data_and_removes_the_spool(tmp_path):
    budget = MemoryBudget(10_000)
    queue = InFlightQueue(budget, tmp_path)
    for i in range(100):
        queue.push(float(i), bytes(1000))
    assert any(tmp_path.iterdir())
    queue.close()
    assert budget.used == 0 and queue.datagrams == 0 and list(tmp_path.iterdir()) == []
    queue.push(1.0, b"still usable")
    assert queue.pop_due(1.0, 10) == [(1.0, b"still usable")]


def test_a_spool_that_does_not_read_back_is_a_typed_error_and_the_queue_goes_on(tmp_path):
    queue = InFlightQueue(MemoryBudget(5_000), tmp_path)
    for i in range(400):  # past the write batch: some records are on disk
        queue.push(float(i), bytes(1000))
    [segment] = tmp_path.rglob("*.spool")
    with segment.open("r+b") as spool:
        spool.seek(8)
        spool.write((1 << 30).to_bytes(4, "little"))  # a record claiming 1 GiB
    drain_error = None
    try:
        while queue.datagrams:
            assert queue.pop_due(1000.0, 100)
    except SpoolError as error:
        drain_error = error
    assert drain_error is not None and drain_error.lost > 390
    assert queue.datagrams == 0 and list(tmp_path.iterdir()) == []
    queue.push(200.0, b"after")
    assert queue.pop_due(200.0, 10) == [(200.0, b"after")]
