"""The contract every store of runs keeps, run against each (a directory, S3 through a
real HTTP endpoint): what it lists, finds, fetches, removes and prunes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from precip_repro import (
    AmbiguousRun,
    Run,
    RunLocked,
    RunNotFound,
    Store,
    StoreCapability,
    StoreError,
    verify,
)
from precip_repro.record.blobs import BlobStore
from precip_repro.record.store import OBJECTS
from tests.helpers import record_sample_run


def kept(store: Store, run: Run) -> Run:
    """The run as its store keeps it: pushed, where the store is shared."""
    if StoreCapability.SHARED in store.capabilities:
        store.push(run.path)
    return run


def test_a_finished_run_is_listed_with_its_digest_status_and_signer(store_target):
    run = kept(store_target, record_sample_run(store_target.local))
    (row,) = store_target.summaries()
    assert (row.run, row.status, row.digest, row.events) == (run.id, "ok", run.digest, 14)
    assert row.signer is not None and row.signer.startswith("SHA256:")


def test_runs_are_listed_oldest_first(store_target):
    runs = [kept(store_target, record_sample_run(store_target.local, name=n)).id
            for n in ("one", "two", "three")]  # fmt: skip
    assert [row.run for row in store_target.summaries()] == runs


def test_a_run_is_found_by_id_prefix_and_latest_with_its_blobs_intact(store_target):
    run = kept(store_target, record_sample_run(store_target.local))
    for spec in (run.id, run.id[:20], "latest"):
        found = store_target.resolve(spec)
        assert found.name == run.id
        verdict = verify(found)
        assert (verdict.state, verdict.digest) == ("intact", run.digest), verdict.reason


def test_a_run_read_elsewhere_has_the_same_blobs(store_target, tmp_path, monkeypatch):
    """What a reader of another machine fetches is what was recorded, byte for byte."""
    run = kept(store_target, record_sample_run(store_target.local))
    recorded = dict(BlobStore(run.path / OBJECTS).objects())
    if StoreCapability.SHARED in store_target.capabilities:
        monkeypatch.setenv("PRECIP_CACHE", str(tmp_path / "elsewhere"))
        from precip_repro import open_store

        store_target = open_store(store_target.location)
    found = store_target.resolve(run.id)
    fetched = dict(BlobStore(found / OBJECTS).objects())
    assert fetched.keys() == recorded.keys()
    assert all(fetched[sha].read_bytes() == recorded[sha].read_bytes() for sha in recorded)


def test_an_unknown_run_is_not_found_and_an_ambiguous_prefix_names_the_candidates(store_target):
    with pytest.raises(RunNotFound, match="holds no runs"):
        store_target.resolve("latest")
    a = kept(store_target, record_sample_run(store_target.local, name="same"))
    b = kept(store_target, record_sample_run(store_target.local, name="same"))
    with pytest.raises(RunNotFound, match="no run 'nothing-like-it'"):
        store_target.resolve("nothing-like-it")
    shared = a.id[:9] if a.id[:9] == b.id[:9] else ""
    with pytest.raises(AmbiguousRun) as raised:
        store_target.resolve(shared or "2")
    assert {a.id, b.id} <= set(raised.value.candidates)


def test_a_removed_run_is_neither_listed_nor_found_and_the_others_stay_whole(store_target):
    gone = kept(store_target, record_sample_run(store_target.local, name="gone"))
    stays = kept(store_target, record_sample_run(store_target.local, name="stays"))
    removal = store_target.remove(gone.id)
    assert removal.runs == (gone.id,)
    assert [row.run for row in store_target.summaries()] == [stays.id]
    with pytest.raises(RunNotFound):
        store_target.resolve(gone.id)
    assert verify(store_target.resolve(stays.id)).state == "intact"


def test_a_run_still_being_recorded_is_not_removed(store_target):
    run = record_sample_run(store_target.local, finish=False)
    try:
        with pytest.raises(RunLocked, match="still being recorded"):
            store_target.remove(run.id)
        assert [row.run for row in store_target.summaries()] == [run.id]
    finally:
        run.finish("ok")


def test_prune_keeps_every_blob_a_run_references(store_target):
    run = kept(store_target, record_sample_run(store_target.local))
    store_target.prune(grace=timedelta(0))
    assert verify(store_target.resolve(run.id)).state == "intact"


def test_only_a_shared_store_takes_pushes(store_target, tmp_path):
    run = record_sample_run(Path(tmp_path / "elsewhere"))
    if StoreCapability.SHARED in store_target.capabilities:
        result = store_target.push(run.path)
        assert (result.run, result.digest, result.already) == (run.id, run.digest, False)
        assert [row.run for row in store_target.summaries()] == [run.id]
    else:
        with pytest.raises(StoreError, match="is a directory"):
            store_target.push(run.path)
