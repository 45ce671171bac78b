"""Runs shared through an S3 store, against moto's real HTTP endpoint through boto3: each
"machine" is a process with its own precip home, home and cache."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from precip_repro import BlobCorrupted, StoreError, open_store
from precip_repro.record import BlobStore, Run, RunStore
from precip_repro.stores.s3_index import RunIndex
from tests.helpers import record_sample_run
from tests.s3_bucket import require_auth

EXAMPLES = Path(__file__).parent.parent / "examples"


def ids_listed(s3, machine: str) -> list[str]:
    done = s3.cli(machine, "ls", "--json")
    assert done.returncode == 0, done.stderr
    return [row["run"] for row in json.loads(done.stdout)["runs"]]


def record_example(s3, machine: str, name: str = "hello_world.py") -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=s3.env(machine),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "not pushed" not in done.stderr, done.stderr


def test_a_run_recorded_on_one_machine_is_listed_verified_diffed_and_replayed_on_another(s3):
    record_example(s3, "alice")
    record_example(s3, "alice")
    first, second = ids_listed(s3, "bob")[::-1]
    verified = s3.cli("bob", "verify", first)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{first}: intact" in verified.stdout
    diffed = s3.cli("bob", "diff", first, second)
    assert diffed.returncode in (0, 1), diffed.stderr
    assert f"a: {first}" in diffed.stdout
    report = s3.cli("bob", "report", first, "-o", str(s3._tmp / "report.html"))
    assert report.returncode == 0, report.stderr
    replayed = s3.cli(
        "bob", first, "--to", "local", "--max-gap", "1", "--out", str(s3._tmp / "out"),
        tool="precip-replay",
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "REPRODUCED" in replayed.stdout
    # The replay was recorded on bob's machine and pushed: alice sees it.
    listed = ids_listed(s3, "alice")
    assert len(listed) == 3 and {first, second} < set(listed)


def test_a_blob_two_runs_share_is_stored_once(s3):
    store = open_store(s3.url)
    shared = b"the same large input\n" * 50_000
    for name in ("one", "two"):
        run = Run.open(store.local, name=name)
        run.add_blob(shared)
        run.add_blob(name.encode() * 1000)
        run.finish("ok")
        store.push(run.path)
    sha = hashlib.sha256(shared).hexdigest()
    keys = s3.blob_keys()
    assert keys.count(f"lab/objects/{sha[:2]}/{sha[2:]}") == 1
    assert len(keys) == 3  # the shared blob and one of each run's own
    assert ids_listed(s3, "bob") == sorted(ids_listed(s3, "bob"), reverse=True)


def test_a_blob_a_run_withheld_stays_withheld_though_another_run_stored_it(
    s3, tmp_path, monkeypatch
):
    """A run that kept a blob by hash only never gets its bytes from the store, even when
    another run stored the same bytes."""
    store = open_store(s3.url)
    secret_file = b"password=hunter2-for-the-test\n"
    keeps = Run.open(store.local, name="keeps")
    keeps.add_blob(secret_file)
    keeps.finish("ok")
    store.push(keeps.path)
    withholds = Run.open(store.local, name="withholds")
    withheld = withholds.add_blob(secret_file)
    assert withholds.withhold_secret("PASSWORD", "hunter2-for-the-test") == [withheld.sha256]
    withholds.finish("ok")
    store.push(withholds.path)
    monkeypatch.setenv("PRECIP_CACHE", str(tmp_path / "elsewhere"))
    fetched = open_store(s3.url).resolve(withholds.id)
    assert not (fetched / "objects" / withheld.sha256[:2] / withheld.sha256[2:]).exists()
    assert (
        open_store(s3.url)
        .resolve(keeps.id)
        .joinpath("objects", withheld.sha256[:2], withheld.sha256[2:])
        .read_bytes()
        == secret_file
    )


KILLED_PUSH = textwrap.dedent(
    """
    import os, signal, sys, time
    from precip_repro.stores import s3_bucket
    from precip_repro import open_store

    after, point = int(sys.argv[2]), sys.argv[3]
    sent = []
    upload, put = s3_bucket.Bucket.upload, s3_bucket.Bucket.put

    started = []

    def dying_upload(self, path, key):
        started.append(key)
        if point == "blobs" and len(started) > after:
            while len(sent) < after:  # the first ones sent whole, then the power cut
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        upload(self, path, key)
        sent.append(key)

    def dying_put(self, key, body, **conditions):
        if point == "entry" and "/index/" in key:
            os.kill(os.getpid(), signal.SIGKILL)
        put(self, key, body, **conditions)

    s3_bucket.Bucket.upload, s3_bucket.Bucket.put = dying_upload, dying_put
    store = open_store(os.environ["PRECIP_RECORDS"])
    store.push(store.local.root / sys.argv[1])
    """
)


@pytest.mark.parametrize("point", ["blobs", "entry"])
def test_a_push_killed_half_way_lists_nothing_and_pushed_again_ends_whole(s3, point):
    store = open_store(s3.url)
    run = Run.open(store.local, name="big")
    for n in range(6):
        run.add_blob(bytes([n]) * 300_000)
    run.finish("ok")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PUSH, run.id, "2", point],
        env=s3.env("here"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert s3.blob_keys(), "the push was killed before it sent anything"
    assert ids_listed(s3, "bob") == []
    assert s3.cli("bob", "show", run.id).returncode == 2  # no such run, for anyone else
    again = s3.cli("here", "push", run.id)
    assert again.returncode == 0, again.stderr
    assert ids_listed(s3, "bob") == [run.id]
    verified = s3.cli("bob", "verify", run.id)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout


def test_an_object_corrupted_in_the_bucket_is_reported_corrupt_naming_it(s3):
    store = open_store(s3.url)
    run = record_sample_run(store.local)
    store.push(run.path)
    key = next(k for k in s3.blob_keys())
    s3.put(key, b"not the bytes it is named for")
    done = s3.cli("bob", "verify", run.id)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "corrupt" in out and f"s3://{s3.name}/{key}" in out, out
    assert len(done.stderr.strip().splitlines()) <= 1 and "Traceback" not in out


def test_ls_and_show_fetch_no_blob(s3):
    store = open_store(s3.url)
    runs = [record_sample_run(store.local, name=f"r{n}") for n in range(5)]
    for run in runs:
        store.push(run.path)
    with s3.requests.watching() as during_ls:
        listed = s3.cli("bob", "ls")
    assert listed.returncode == 0 and all(run.id in listed.stdout for run in runs)
    with s3.requests.watching() as during_show:
        shown = s3.cli("bob", "show", runs[0].id)
    assert shown.returncode == 0, shown.stderr
    assert during_ls and during_show  # the log was watched
    for method, path in during_ls + during_show:
        assert "/lab/objects/" not in path, (method, path)
    assert len(during_ls) <= 3, during_ls  # a listing and the index, whatever the count


def test_ls_lists_a_run_whose_index_update_was_lost(s3):
    """Where conditional writes are not honoured, two pushes at once may each replace the
    index cache with one entry: the per-run entries still list both."""
    store = open_store(s3.url)
    one = record_sample_run(store.local, name="one")
    two = record_sample_run(store.local, name="two")
    store.push(one.path)
    cache = s3.get("lab/index.json")
    store.push(two.path)
    s3.put("lab/index.json", cache)  # the second push's update, lost
    assert [row.run for row in store.summaries()] == [one.id, two.id]
    index = RunIndex(store.bucket)  # type: ignore[attr-defined]
    assert two.id.encode() in s3.get("lab/index.json")  # repaired by the reader
    assert index.ids() == [one.id, two.id]


def test_two_pushes_at_once_both_end_listed(s3):
    from tests.helpers import in_threads

    store = open_store(s3.url)
    runs = [record_sample_run(store.local, name=f"at-once-{n}") for n in range(4)]
    stores = [open_store(s3.url) for _ in runs]
    pushes = [lambda s=s, r=r: s.push(r.path) for s, r in zip(stores, runs, strict=True)]
    errors = in_threads(*pushes)
    assert not errors
    assert sorted(ids_listed(s3, "bob")) == sorted(run.id for run in runs)
    assert all(run.id.encode() in s3.get("lab/index.json") for run in runs)


def test_a_missing_bucket_is_one_clear_line(s3):
    done = s3.cli("bob", "ls", "--records", "s3://no-such-bucket-here/lab")
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "precip-repro ls: error: the store s3://no-such-bucket-here/lab: there is no bucket "
        f"'no-such-bucket-here' at {s3.endpoint} (create it, or check the name and "
        "AWS_ENDPOINT_URL)"
    )


def test_wrong_credentials_are_one_clear_line(s3, moto_endpoint):
    require_auth(moto_endpoint.url, "0")
    try:
        done = s3.cli("bob", "ls", env={"AWS_ACCESS_KEY_ID": "AKIDNOBODY0000000000"})
    finally:
        require_auth(moto_endpoint.url, "inf")
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "refused the credentials (InvalidAccessKeyId" in line, line


def test_a_url_store_never_becomes_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="not a directory"):
        RunStore("s3://bucket/prefix")
    monkeypatch.setenv("PRECIP_RECORDS", "gs://bucket/prefix")
    with pytest.raises(StoreError, match=r"gs:// is not one"):
        open_store()
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "gs:").exists()


OFFLINE_SCRIPT = textwrap.dedent(
    """
    from precip_repro import open_store, session


    class NothingToDeprovision:
        def close(self):
            pass


    session.register(NothingToDeprovision())  # the run finishes at exit, as a script's does
    run = session.open_run(open_store(), "offline")
    run.add_blob(b"recorded while the store was away\\n" * 1000)
    """
)


def test_a_run_finished_while_the_store_is_unreachable_is_kept_shown_unpushed_and_pushed_later(
    s3, tmp_path
):
    from moto.server import ThreadedMotoServer

    from tests.ec2_cloud import free_port

    port = free_port()
    endpoint = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    recorded = subprocess.run(
        [sys.executable, str(script)],
        env=s3.env("alice", **endpoint),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert recorded.returncode == 0, recorded.stderr
    assert "not pushed" in recorded.stderr and "precip-repro push" in recorded.stderr
    listed = s3.cli("alice", "ls", env=endpoint)
    assert listed.returncode == 0, listed.stderr
    assert "ok, unpushed" in listed.stdout and "cannot be reached" in listed.stderr
    (run,) = [line.split()[0] for line in listed.stdout.splitlines()[1:2]]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()  # the store is back (moto's buckets live in this process: s3's is there)
    try:
        pushed = s3.cli("alice", "push", run, env=endpoint)
        assert pushed.returncode == 0, pushed.stderr
        assert "unpushed" not in s3.cli("alice", "ls", env=endpoint).stdout
    finally:
        server.stop()
    assert ids_listed(s3, "bob") == [run]
    assert s3.cli("bob", "verify", run).returncode == 0


def test_a_blob_damaged_here_is_not_pushed_under_the_name_every_run_shares(s3):
    store = open_store(s3.url)
    run = Run.open(store.local, name="damaged")
    ref = run.add_blob(b"what the run moved\n" * 10_000)
    run.finish("ok")
    path = run.path / "objects" / ref.sha256[:2] / ref.sha256[2:]
    path.chmod(0o644)
    path.write_bytes(b"what the disk gave back\n"[:19] * 10_000)  # the same size
    with pytest.raises(BlobCorrupted, match="damaged here, not pushed"):
        store.push(run.path)
    assert s3.blob_keys() == [] and ids_listed(s3, "bob") == []


def test_a_run_missing_a_blob_it_refers_to_is_not_pushed(s3):
    store = open_store(s3.url)
    run = Run.open(store.local, name="missing")
    ref = run.add_blob(b"a blob the disk lost\n" * 10_000)
    run.finish("ok")
    (run.path / "objects" / ref.sha256[:2] / ref.sha256[2:]).unlink()
    with pytest.raises(BlobCorrupted, match=f"refers to blob {ref.sha256}"):
        store.push(run.path)
    assert ids_listed(s3, "bob") == []


def test_a_run_recorded_in_a_directory_is_pushed_and_pulled_into_another(s3, tmp_path):
    here = tmp_path / "records"
    run = record_sample_run(RunStore(here))
    pushed = s3.cli("alice", "--records", str(here), "push", run.id, "--to", s3.url)
    assert pushed.returncode == 0, pushed.stderr
    assert "blobs sent" in pushed.stdout
    again = s3.cli("alice", "--records", str(here), "push", run.id, "--to", s3.url)
    assert again.returncode == 0 and "already" in again.stdout, again.stdout
    there = tmp_path / "bobs-records"
    pulled = s3.cli("bob", "--records", str(there), "pull", run.id, "--from", s3.url)
    assert pulled.returncode == 0, pulled.stderr
    verified = s3.cli("bob", "--records", str(there), "verify", run.id)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout
    assert (there / run.id / "events.jsonl").read_bytes() == (
        run.path / "events.jsonl"
    ).read_bytes()


def test_prune_removes_what_a_push_never_completed_left_and_nothing_a_run_needs(s3):
    store = open_store(s3.url)
    whole = record_sample_run(store.local, name="whole")
    store.push(whole.path)
    needed = set(s3.blob_keys())
    cut = Run.open(store.local, name="cut")
    cut.add_blob(b"sent before the push was cut off\n" * 1000)
    cut.finish("ok")
    for sha, path in BlobStore(cut.path / "objects").objects():  # a push's first step, alone
        s3.put(f"lab/objects/{sha[:2]}/{sha[2:]}", path.read_bytes())
    assert s3.cli("bob", "prune").stdout.startswith("pruned")  # within the grace: kept
    assert len(s3.blob_keys()) == len(needed) + 1
    pruned = s3.cli("bob", "prune", "--grace", "0s")
    assert pruned.returncode == 0, pruned.stderr
    assert "1 blobs no run references" in pruned.stdout
    assert set(s3.blob_keys()) == needed
    assert s3.cli("bob", "verify", whole.id).returncode == 0


def test_a_run_removed_by_another_is_no_longer_listed_where_it_was_read(s3):
    store = open_store(s3.url)
    run = record_sample_run(store.local)
    store.push(run.path)
    assert s3.cli("bob", "verify", run.id).returncode == 0  # bob has it in his cache now
    removed = s3.cli("alice", "rm", run.id)
    assert removed.returncode == 0, removed.stderr
    assert ids_listed(s3, "bob") == [] and s3.blob_keys() == []
    assert [row.run for row in store.summaries()] == [run.id]  # recorded here: not in it
    assert store.summaries()[0].pushed is False


def test_a_run_is_exported_from_the_store_into_a_fresh_cache_and_imported_elsewhere(s3):
    # Alice exports a run of hers on a machine whose cache never held it: the run and its
    # blobs come from the bucket, checked; Bob imports the package into a directory of his.
    record_example(s3, "alice")
    (run,) = ids_listed(s3, "alice")
    fresh = {"PRECIP_CACHE": str(s3._tmp / "fresh-cache")}
    package = s3._tmp / "package.zip"
    exported = s3.cli("alice", "export", run, "-o", str(package), "--license", "CC-BY-4.0",
                      "--author", "Alice <alice@example.org>", env=fresh)  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert f"exported {run} to {package} (zip" in exported.stdout
    theirs = s3._tmp / "bob-records"
    imported = s3.cli("bob", "--records", str(theirs), "import", str(package))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert (theirs / run / "checkpoint.sig").is_file()
