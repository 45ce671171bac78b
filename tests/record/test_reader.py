from __future__ import annotations

import tracemalloc

from precip_repro.record import LogReader, Run, verify
from precip_repro.record.payloads import Note
from precip_repro.record.store import EVENTS


def test_the_reader_streams_a_long_log_in_bounded_memory(store):
    run = Run.open(store, name="long")
    for i in range(20_000):
        run.append(Note(text=f"event number {i} " + "x" * 200))
    run.finish()
    size = (run.path / EVENTS).stat().st_size
    assert size > 5 << 20
    tracemalloc.start()
    count = sum(1 for _ in LogReader(run.path / EVENTS))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_002
    assert peak < 4 << 20, f"peak {peak} bytes reading a {size}-byte log"


def test_verify_of_a_long_log_uses_bounded_memory(store):
    run = Run.open(store, name="long")
    for i in range(20_000):
        run.append(Note(text=f"event {i}", fields={"blob": {"sha256": f"{i:064x}"}}))
    run.finish()
    tracemalloc.start()
    verdict = verify(run.path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert verdict.state == "intact", verdict.reason
    assert peak < 8 << 20
