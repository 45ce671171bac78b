from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from precip_repro.exceptions import (
    RecordWriteFailed,
    RunAlreadyFinished,
    RunLocked,
    UnrecordableValue,
)
from precip_repro.record import Run, recover, verify
from precip_repro.record.journal import Journal
from precip_repro.record.payloads import CallStarted, Note
from precip_repro.record.store import EVENTS
from tests.helpers import file_size_limit


def test_a_second_writer_in_the_same_process_is_refused(store):
    run = Run.open(store, name="one")
    try:
        with pytest.raises(RunLocked, match="open for writing by another writer"):
            Journal.acquire(run.path / EVENTS, run=run.id)
    finally:
        run.finish()


def test_a_second_writer_in_another_process_is_refused(store):
    run = Run.open(store, name="one")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from precip_repro.exceptions import RunLocked\n"
        "from precip_repro.record.journal import Journal\n"
        "try:\n"
        "    Journal.acquire(Path(sys.argv[1]), run='x')\n"
        "except RunLocked as exc:\n"
        "    print('refused:', exc)\n"
        "    sys.exit(7)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(run.path / EVENTS)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 7, done.stderr
        assert run.id in done.stdout
    finally:
        run.finish()
    # Once the first writer is gone the lock is free again (recover may take it).
    Journal.acquire(run.path / EVENTS, run=run.id).close()


def test_a_forked_child_cannot_append_to_its_parents_run(store):
    # It inherits the descriptor and the lock: only the writer's pid tells them apart.
    run = Run.open(store, name="one")
    child = os.fork()
    if child == 0:
        try:
            run.append(Note(text="from the child", fields={}))
        except RunLocked as exc:
            os._exit(7 if "is a fork of it" in str(exc) else 8)
        os._exit(9)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    run.append(Note(text="from the parent", fields={}))
    run.finish()
    verdict = verify(run.path)
    assert (verdict.state, verdict.events) == ("intact", 3)


def test_an_event_longer_than_a_reader_accepts_is_refused_and_nothing_written(store, monkeypatch):
    from precip_repro.record import journal, reader

    assert journal.MAX_LINE is reader.MAX_LINE  # type: ignore[attr-defined]  # the same limit
    monkeypatch.setattr(journal, "MAX_LINE", 2000)
    run = Run.open(store, name="big-note")
    before = (run.path / EVENTS).read_bytes()
    with pytest.raises(UnrecordableValue, match="past the 2,000 an event may hold") as info:
        run.append(Note(text="x" * 5000, fields={"small": 1}))
    assert info.value.field == "text" and info.value.seq == 1
    assert (run.path / EVENTS).read_bytes() == before
    run.append(Note(text="small enough", fields={}))
    run.finish()
    verdict = verify(run.path)
    assert (verdict.state, verdict.events) == ("intact", 3)


def test_appends_from_many_threads_form_one_unbroken_chain(store):
    run = Run.open(store, name="threads")
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(250):
            run.append(Note(text=f"w{worker} e{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.finish()
    verdict = verify(run.path)
    assert verdict.state == "intact", verdict.reason
    assert verdict.events == 1 + 8 * 250 + 1


def test_costly_intents_and_the_end_are_fsynced_and_notes_are_not(store, monkeypatch):
    import os

    synced: list[str] = []
    real_fsync = os.fsync
    run = Run.open(store, name="fsync")

    def spy(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    log = str(run.path / EVENTS)
    run.append(Note(text="cheap"))
    assert synced.count(log) == 0
    run.append(CallStarted(call=1, exp="e1", method="run", args={}))
    assert synced.count(log) == 0
    run.append(CallStarted(call=2, exp="e1", method="provision", args={}))
    assert synced.count(log) == 1
    run.append(CallStarted(call=3, exp="e1", method="deprovision", args={}))
    assert synced.count(log) == 2
    run.finish()
    assert synced.count(log) == 3
    assert str(run.path / "checkpoint") not in synced  # written via a temp file, then renamed
    assert any(path.endswith(".checkpoint.tmp") for path in synced)


def test_every_event_is_in_the_file_when_append_returns(store):
    run = Run.open(store, name="through")
    event = run.append(Note(text="visible"))
    on_disk = (run.path / EVENTS).read_bytes().splitlines()[-1]
    assert on_disk == event.line()[:-1]
    run.finish()


def test_appending_after_finish_raises(store):
    run = Run.open(store, name="done")
    run.finish()
    with pytest.raises(RunAlreadyFinished, match="finished"):
        run.append(Note(text="late"))


def test_a_run_started_records_who_where_and_what(store, tmp_path):
    script = tmp_path / "exp.py"
    script.write_text("print('hi')\n")
    run = Run.open(store, name="who", script=script, argv=["exp.py", "--x"])
    run.finish()
    from precip_repro.record import LogReader
    from precip_repro.record.events import payload_of
    from precip_repro.record.payloads import RunStarted

    first = next(iter(LogReader(run.path / EVENTS)))
    started = payload_of(first)
    assert isinstance(started, RunStarted)
    assert started.run == run.id
    assert started.argv == ["exp.py", "--x"]
    assert started.script is not None
    assert run.blobs.read_bytes(started.script) == b"print('hi')\n"
    assert started.python.count(".") == 2


def test_a_refused_write_is_cut_off_and_the_chain_goes_on_once_there_is_room(store):
    run = Run.open(store, name="full")
    run.append(Note(text="before", fields={}))
    log = run.path / EVENTS
    size = log.stat().st_size
    with file_size_limit(size + 40), pytest.raises(RecordWriteFailed) as refused:
        run.append(Note(text="x" * 200, fields={}))  # 40 bytes of it fit: a partial line
    assert refused.value.seq == 2 and refused.value.errno == errno.EFBIG
    assert isinstance(refused.value, OSError)
    assert f"event seq 2 (note) of run {run.id}" in str(refused.value)
    assert "intact up to event seq 1" in str(refused.value)
    assert f"precip-repro recover {run.id}" in str(refused.value)
    assert log.stat().st_size == size  # the partial line is gone
    run.append(Note(text="after", fields={}))
    run.finish()
    verdict = verify(run.path)
    assert verdict.state == "intact" and verdict.events == 4


def test_a_run_whose_end_cannot_be_written_is_left_recoverable(store):
    run = Run.open(store, name="full-at-end")
    run.append(Note(text="work", fields={}))
    size = (run.path / EVENTS).stat().st_size
    with file_size_limit(size + 10), pytest.raises(RecordWriteFailed):
        run.finish()
    run.close()
    assert verify(run.path).state == "abandoned"
    assert recover(run.path).action == "finished"
    assert verify(run.path).state == "intact"


def test_a_store_that_cannot_be_written_is_refused_at_open_saying_what_to_do(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RecordWriteFailed) as refused:
        Run.open(blocker / "records", name="nowhere")
    assert f"cannot start a run in the store {blocker / 'records'}" in str(refused.value)
    assert "record=False" in str(refused.value)
    assert refused.value.errno == errno.ENOTDIR
