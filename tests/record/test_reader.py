from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precip_repro.exceptions import RecordCorrupted
from precip_repro.record import LogReader, Run, RunStore, verify
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


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_reading_a_growing_log_in_any_pieces_yields_the_events_read_at_once(tmp_path, cuts):
    # What show --follow sees: a log whose bytes arrive in arbitrary pieces, a line cut
    # anywhere, read again after each piece.
    store = RunStore(tmp_path / f"r{len(list(tmp_path.iterdir()))}")
    run = Run.open(store, name="grown")
    for i in range(5):
        run.append(Note(text=f"note {i}", fields={"i": i}))
    run.finish()
    whole = (run.path / EVENTS).read_bytes()
    grown = run.path.parent / "grown.jsonl"
    grown.write_bytes(b"")
    reader = LogReader(grown)
    seen = list(reader)
    for cut in [*sorted(c * len(whole) // 400 for c in cuts), len(whole)]:
        grown.write_bytes(whole[:cut])
        seen.extend(reader.more())
        assert reader.torn is None or reader.torn.offset == reader.end
    assert seen == list(LogReader(run.path / EVENTS))
    assert reader.torn is None and reader.last_hash == run.digest


def test_more_checks_the_new_lines_against_the_chain_read_so_far(store):
    run = Run.open(store, name="tampered")
    run.append(Note(text="first", fields={}))
    run.finish()
    lines = (run.path / EVENTS).read_bytes().splitlines(keepends=True)
    grown = Path(run.path) / "grown.jsonl"
    grown.write_bytes(lines[0])
    reader = LogReader(grown)
    assert len(list(reader)) == 1
    grown.write_bytes(lines[0] + lines[2])  # seq 1 left out
    with pytest.raises(RecordCorrupted, match="expected seq 1"):
        list(reader.more())
