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
