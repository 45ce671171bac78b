"""Opening a run: what the store holds when it cannot be started."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from precip_repro.exceptions import RecordWriteFailed
from precip_repro.record import Run, RunStore
from precip_repro.record.blobs import BlobStore


def test_a_run_that_cannot_write_its_start_leaves_no_empty_run_behind(
    store: RunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "exp.py"
    script.write_text("print('hello')\n")

    def disk_full(self: BlobStore, **_: object) -> None:
        raise RecordWriteFailed(
            "could not store a blob: No space left on device",
            cause=OSError(errno.ENOSPC, "No space left on device"),
        )

    monkeypatch.setattr(BlobStore, "sink", disk_full)
    with pytest.raises(RecordWriteFailed) as info:
        Run.open(store, name="full", script=script)
    assert str(info.value).startswith(f"cannot start a run in the store {store.root}: ")
    assert "nothing of the run was kept" in str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert list(store.root.iterdir()) == []


def test_a_checkpoint_the_disk_refuses_leaves_a_finished_run_that_recover_completes(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from precip_repro.exceptions import CheckpointNotWritten
    from precip_repro.record import recorder, recover, verify

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    run = Run.open(store, name="no-room")
    monkeypatch.setattr(recorder, "write_checkpoint", disk_full)
    with pytest.raises(CheckpointNotWritten) as info:
        run.finish("ok")
    message = str(info.value)
    assert f"run {run.id} finished (ok; its log ends with run.finished" in message
    assert f"digest {run.digest}" in message and f"precip-repro recover {run.id}" in message
    assert run.finished and not run.checkpointed
    assert run.finish("ok") == run.digest  # finished once: the same digest again
    monkeypatch.undo()
    verdict = verify(run.path)
    assert verdict.state == "unsealed" and "no checkpoint seals it" in verdict.reason
    assert recover(run.path).action == "checkpoint"
    assert verify(run.path, digest=run.digest).state == "intact"


def test_a_run_whose_first_event_is_refused_says_nothing_was_kept_not_recover(
    store: RunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import file_size_limit

    # capsys: the log line goes to memory, not to a file the size limit would refuse too.
    with file_size_limit(10), pytest.raises(RecordWriteFailed) as info:
        Run.open(store, name="no-first")
    message = str(info.value)
    assert "the log holds no event" in message
    assert "seq -1" not in message and "recover" not in message
    assert "nothing of the run was kept" in message
    assert list(store.root.iterdir()) == []
