"""verify: intact, corrupt (every kind of tampering), open, abandoned — and recover."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precip_repro.exceptions import RecordCorrupted, RecordIncomplete, RunLocked
from precip_repro.record import LogReader, Run, RunStore, recover, verify
from precip_repro.record.payloads import BlobRef, FilePut, Note
from precip_repro.record.store import CHECKPOINT, EVENTS
from tests.helpers import assert_nowhere_in, record_sample_run


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One finished sample run; tests tamper with copies of it."""
    store = RunStore(tmp_path_factory.mktemp("pristine"))
    return record_sample_run(store).path


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    target = tmp_path / pristine.name
    shutil.copytree(pristine, target)
    for path in target.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    return target


def lines_of(run_dir: Path) -> list[bytes]:
    return (run_dir / EVENTS).read_bytes().splitlines(keepends=True)


def write_lines(run_dir: Path, lines: list[bytes]) -> None:
    (run_dir / EVENTS).write_bytes(b"".join(lines))


def test_a_finished_run_is_intact_with_its_digest(pristine):
    verdict = verify(pristine)
    assert verdict.state == "intact", verdict.reason
    assert verdict.exit_status == 0
    assert verdict.events == len(lines_of(pristine))
    assert verdict.status == "ok"
    assert verdict.blobs_checked == 3  # script object, binary stderr object, inline stdout
    assert verify(pristine, digest=verdict.digest).state == "intact"
    assert (
        verdict.reason == f"{verdict.events} events, 3 blobs, status ok, signed by {verdict.signer}"
    )


def test_one_blob_is_counted_as_one_blob(tmp_path):
    with Run.open(RunStore(tmp_path), name="one") as run:
        content = run.add_blob(b"only one")
        put = FilePut(call=1, slot="e1.p1.0", instance_id="i-1", user="root",
                      local_path="a", remote_path="/a", mode=0o644, content=content)  # fmt: skip
        run.append(put)
    assert " events, 1 blob, status ok, signed by SHA256:" in verify(run.path).reason


def test_a_wrong_digest_is_reported_corrupt(pristine):
    verdict = verify(pristine, digest="ab" * 32)
    assert verdict.state == "corrupt"
    assert "no event of it has the hash " + "ab" * 32 in verdict.reason


def test_an_earlier_events_digest_is_a_prefix_the_run_continues_past(pristine):
    events = list(LogReader(pristine / EVENTS))
    middle = events[len(events) // 2]
    verdict = verify(pristine, digest=middle.hash.upper())
    assert verdict.state == "intact", verdict.reason
    assert verdict.digest_seq == middle.seq and verdict.continues_past_digest
    assert f"names event seq {middle.seq} ({middle.type})" in verdict.reason
    assert "continues past it" in verdict.reason
    whole = verify(pristine, digest=events[-1].hash)
    assert whole.state == "intact" and not whole.continues_past_digest


def test_a_prefix_digest_still_holds_in_a_run_altered_after_it(copy):
    events = list(LogReader(copy / EVENTS))
    lines = (copy / EVENTS).read_bytes().splitlines(keepends=True)
    lines[-2] = lines[-2].replace(b'"seq"', b'"seq" ', 1)
    (copy / EVENTS).write_bytes(b"".join(lines))
    verdict = verify(copy, digest=events[1].hash)
    assert verdict.state == "corrupt"
    assert "the events up to it are intact" in verdict.reason


def test_every_single_byte_flip_is_corrupt_naming_its_line(copy):
    original = (copy / EVENTS).read_bytes()
    starts = [0]
    for line in original.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for offset in range(len(original)):
        mangled = bytearray(original)
        mangled[offset] ^= 0x01
        (copy / EVENTS).write_bytes(bytes(mangled))
        verdict = verify(copy, check_blobs=False)
        line = next(i for i in range(len(starts)) if starts[i + 1] > offset) + 1
        assert verdict.state == "corrupt", (offset, verdict.reason)
        assert verdict.line == line, (offset, verdict.line, line, verdict.reason)
    (copy / EVENTS).write_bytes(original)
    assert verify(copy).state == "intact"


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_replaced_anywhere_is_corrupt(copy, data):
    original = (copy / EVENTS).read_bytes()
    offset = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[offset]))
    mangled = bytearray(original)
    mangled[offset] = byte
    (copy / EVENTS).write_bytes(bytes(mangled))
    try:
        assert verify(copy, check_blobs=False).state == "corrupt"
    finally:
        (copy / EVENTS).write_bytes(original)


@pytest.mark.parametrize("index", range(14))
def test_a_deleted_line_is_corrupt_naming_the_gap(copy, index):
    lines = lines_of(copy)
    assert len(lines) == 14
    del lines[index]
    write_lines(copy, lines)
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    # The first line that no longer checks is where the deleted one was.
    assert verdict.line == index + 1, verdict.reason


@pytest.mark.parametrize("index", range(14))
def test_a_duplicated_line_is_corrupt(copy, index):
    lines = lines_of(copy)
    lines.insert(index, lines[index])
    write_lines(copy, lines)
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.line == index + 2, verdict.reason


@pytest.mark.parametrize("index", range(13))
def test_swapped_lines_are_corrupt(copy, index):
    lines = lines_of(copy)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    write_lines(copy, lines)
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.line == index + 1, verdict.reason


def test_an_inserted_line_from_another_run_is_corrupt(copy, tmp_path):
    other = record_sample_run(RunStore(tmp_path / "other")).path
    lines = lines_of(copy)
    lines.insert(5, lines_of(other)[5])
    write_lines(copy, lines)
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.line == 6
    assert "prev" in verdict.reason


@pytest.mark.parametrize("keep", [1, 5, 13])
def test_truncating_a_finished_run_at_a_line_boundary_is_corrupt_not_abandoned(copy, keep):
    write_lines(copy, lines_of(copy)[:keep])
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert "truncated" in verdict.reason
    assert verdict.line == keep + 1


def test_truncating_a_finished_run_mid_line_is_corrupt(copy):
    data = (copy / EVENTS).read_bytes()
    (copy / EVENTS).write_bytes(data[: len(data) - 40])
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.line == 14


def test_appending_to_a_finished_run_is_corrupt(copy):
    lines = lines_of(copy)
    write_lines(copy, [*lines, lines[1]])
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.line == 15


def test_an_edited_checkpoint_is_corrupt(copy):
    checkpoint = copy / CHECKPOINT
    original = checkpoint.read_bytes()
    for offset in range(len(original)):
        mangled = bytearray(original)
        mangled[offset] ^= 0x01
        checkpoint.write_bytes(bytes(mangled))
        assert verify(copy, check_blobs=False).state == "corrupt", offset


def blob_files(run_dir: Path) -> list[Path]:
    return sorted(
        p for p in (run_dir / "objects").rglob("*") if p.is_file() and p.parent.name != "tmp"
    )


def test_a_corrupted_blob_is_reported_with_its_hash_and_event(copy):
    victim = blob_files(copy)[0]
    sha = victim.parent.name + victim.name
    content = bytearray(victim.read_bytes())
    content[len(content) // 2] ^= 0xFF
    victim.write_bytes(bytes(content))
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.blob == sha
    assert sha in verdict.reason
    assert verdict.seq is not None and verdict.line == verdict.seq + 1
    # What stays intact ends with the event before the one that refers to the blob.
    before = list(LogReader(copy / EVENTS))[verdict.seq - 1]
    assert (verdict.events, verdict.digest) == (verdict.seq, before.hash)


def test_a_missing_blob_is_reported_with_its_hash(copy):
    victim = blob_files(copy)[-1]
    victim.unlink()
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    assert verdict.blob == victim.parent.name + victim.name
    assert "missing" in verdict.reason


def test_an_edited_inline_output_is_corrupt(copy):
    lines = lines_of(copy)
    index = next(i for i, line in enumerate(lines) if b'"text":"hello\\n"' in line)
    # A forger who rehashes the event still cannot make the inline text match its sha256.
    from precip_repro.record.lines import parse_line, seal

    event = parse_line(lines[index][:-1], line=index + 1)
    data = dict(event.data)
    data["stdout"] = dict(data["stdout"], text="HELLO\n")
    _, forged = seal(seq=event.seq, ts=event.ts, type=event.type, data=data, prev=event.prev)
    lines[index] = forged
    write_lines(copy, lines)
    verdict = verify(copy)
    assert verdict.state == "corrupt"
    # the chain breaks at the next line, and the inline blob check names this one
    assert verdict.line == index + 1
    assert verdict.blob is not None


def test_a_run_being_written_is_open(store):
    run = record_sample_run(store, finish=False)
    try:
        verdict = verify(run.path)
        assert verdict.state == "open"
        assert verdict.exit_status == 3
    finally:
        run.finish()


def test_a_torn_tail_is_abandoned_then_recovered_to_intact(store):
    run = record_sample_run(store, finish=False)
    run.close()  # the writer dies …
    log = run.path / EVENTS
    with log.open("ab") as f:  # … in the middle of writing an event
        f.write(b'{"data":{"text":"half an ev')
    verdict = verify(run.path)
    assert verdict.state == "abandoned"
    assert "torn tail at line 14" in verdict.reason
    assert "precip-repro recover" in verdict.reason

    done = recover(run.path)
    assert done.action == "finished"
    assert done.torn_tail is not None and done.torn_tail.size == 27
    after = verify(run.path)
    assert after.state == "intact", after.reason
    assert after.status == "interrupted"
    assert after.digest == done.digest
    assert b'"torn_tail"' in log.read_bytes().splitlines()[-1]
    # The torn bytes are kept, as a blob the verify checked.
    assert run.blobs.read_bytes(done.torn_tail) == b'{"data":{"text":"half an ev'


def test_a_recovered_runs_torn_tail_blob_is_verified(store):
    run = record_sample_run(store, finish=False)
    run.close()
    with (run.path / EVENTS).open("ab") as f:
        f.write(b'{"data":{"text":"half an ev')
    torn = recover(run.path).torn_tail
    assert torn is not None
    blob = run.blobs.path_for(torn.sha256)
    blob.unlink()
    verdict = verify(run.path)
    assert verdict.state == "corrupt", verdict.reason
    assert verdict.blob == torn.sha256 and verdict.seq == verdict.events


def test_a_blob_added_that_no_event_refers_to_is_referenced_and_verified(store):
    with Run.open(store, name="added") as run:
        loose = run.add_blob(b"raw bytes nobody refers to")
        used = run.add_blob(b"bytes a file.put refers to")
        _put(run, used, "used")
    added = [e.data for e in LogReader(run.path / EVENTS) if e.type == "blob.added"]
    assert added == [{"content": {"sha256": loose.sha256, "size": loose.size}}]
    assert verify(run.path).state == "intact"
    run.blobs.path_for(loose.sha256).unlink()
    verdict = verify(run.path)
    assert verdict.state == "corrupt" and verdict.blob == loose.sha256


def test_a_run_without_end_is_abandoned_and_recover_keeps_every_event(store):
    run = record_sample_run(store, finish=False)
    before = (run.path / EVENTS).read_bytes()
    run.close()
    assert verify(run.path).state == "abandoned"
    recover(run.path)
    after = (run.path / EVENTS).read_bytes()
    assert after.startswith(before)  # intact events are never rewritten
    assert verify(run.path).status == "interrupted"


def test_recover_refuses_an_open_run(store):
    run = record_sample_run(store, finish=False)
    try:
        with pytest.raises(RunLocked):
            recover(run.path)
    finally:
        run.finish()


def test_recover_refuses_a_corrupt_run_and_changes_nothing(copy):
    lines = lines_of(copy)
    del lines[3]
    write_lines(copy, lines)
    before = (copy / EVENTS).read_bytes()
    with pytest.raises(RecordCorrupted, match="corrupt, not abandoned"):
        recover(copy)
    assert (copy / EVENTS).read_bytes() == before


def test_recover_of_an_intact_run_does_nothing(copy):
    before = (copy / EVENTS).read_bytes()
    assert recover(copy).action == "nothing"
    assert (copy / EVENTS).read_bytes() == before


def test_a_lost_checkpoint_is_rewritten_without_appending(copy):
    before = (copy / EVENTS).read_bytes()
    (copy / CHECKPOINT).unlink()
    verdict = verify(copy)
    assert verdict.state == "unsealed"
    assert verdict.exit_status == 3
    assert "no checkpoint seals it" in verdict.reason
    assert recover(copy).action == "checkpoint"
    assert (copy / EVENTS).read_bytes() == before
    assert verify(copy).state == "intact"


def test_an_empty_log_is_abandoned_and_recover_says_there_is_nothing(store):
    _, path = store.create_run_dir("empty")
    (path / EVENTS).write_bytes(b"")
    assert verify(path).state == "abandoned"
    with pytest.raises(RecordIncomplete, match="nothing to finish"):
        recover(path)


def test_a_missing_log_is_corrupt(copy):
    (copy / EVENTS).unlink()
    assert verify(copy).state == "corrupt"


def test_a_writer_killed_hard_leaves_a_run_that_recovers(store, tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(
        "import sys, os, signal\n"
        "from precip_repro.record import Run\n"
        "from precip_repro.record.payloads import Note\n"
        "run = Run.open(sys.argv[1], name='killed')\n"
        "for i in range(100):\n"
        "    run.append(Note(text=f'event {i}'))\n"
        "print(run.path, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(store.root)], capture_output=True, text=True, check=False
    )
    assert done.returncode == -signal.SIGKILL
    run_dir = Path(done.stdout.strip())
    verdict = verify(run_dir)
    assert verdict.state == "abandoned"
    assert verdict.events == 101  # run.started + every announced note: nothing lost
    recover(run_dir)
    assert verify(run_dir).state == "intact"


def test_nothing_is_appended_to_a_finished_run(store):
    from precip_repro.exceptions import RunAlreadyFinished

    run = record_sample_run(store)
    with pytest.raises(RunAlreadyFinished):
        run.append(Note(text="late"))
    assert run.finish() == run.digest  # finishing twice changes nothing


def test_the_context_manager_finishes_ok_without_an_exception(store):
    with Run.open(store, name="ok") as run:
        run.append(Note(text="x"))
    assert verify(run.path).status == "ok"


@pytest.mark.parametrize(
    "exc, status", [(RuntimeError, "failed"), (KeyboardInterrupt, "interrupted")]
)
def test_the_context_manager_finishes_with_the_exception_status(store, exc, status):
    with pytest.raises(exc), Run.open(store, name=status) as run:
        run.append(Note(text="x"))
        raise exc
    verdict = verify(run.path)
    assert (verdict.state, verdict.status) == ("intact", status)


def test_a_note_shaped_like_a_blob_reference_is_user_data_not_a_blob(store):
    run = Run.open(store, name="shaped")
    run.append(Note(text="looks like a ref", fields={"ref": {"sha256": "ab" * 32, "size": 3}}))
    run.finish()
    verdict = verify(run.path)
    assert verdict.state == "intact", verdict.reason
    assert verdict.blobs_checked == 0


def _forge(store: RunStore, kind: str, data: dict[str, object]) -> Path:
    """A run whose second event holds ``data`` with a correct hash and chain: what a writer
    that ignores v1's rules would leave."""
    import hashlib
    import json

    run = Run.open(store, name="forged")
    run.close()  # leaves run.started, unfinished
    log = run.path / EVENTS
    prev = json.loads(log.read_bytes().splitlines()[-1])["hash"]
    body = {"v": 2, "seq": 1, "ts": "2026-11-25T00:00:00.000000Z", "type": kind,
            "data": data, "prev": prev}  # fmt: skip

    def dumps(obj: dict[str, object]) -> bytes:
        return rfc8785.dumps(obj)  # type: ignore[arg-type]

    line = dumps({**body, "hash": hashlib.sha256(dumps(body)).hexdigest()}) + b"\n"
    log.chmod(0o644)
    with log.open("ab") as f:
        f.write(line)
    return run.path


@pytest.mark.parametrize(
    "kind, data, where",
    [
        ("call.finished", {"call": 1, "result": None, "duration_ns": 1.5}, "duration_ns"),
        ("note", {"text": "t", "fields": {"x": {"$float": "2.5"}}}, "fields.x"),
        ("note", {"text": "t", "fields": {"x": {"$int": "12"}}}, "fields.x"),
        ("call.finished", {"call": 1, "result": {"$object": 1}, "duration_ns": 1}, "result"),
    ],
)
def test_a_mistyped_number_with_a_correct_hash_is_still_corrupt_naming_the_event(
    store, kind, data, where
):
    # a float in an integer field, and typed values a writer never writes (each value has
    # one encoding)
    verdict = verify(_forge(store, kind, data))
    assert verdict.state == "corrupt"
    assert verdict.seq == 1
    assert where in verdict.reason, verdict.reason


def test_a_v1_line_in_a_v2_run_is_corrupt(store):
    run_dir = _forge(store, "note", {"text": "t", "fields": {}})
    lines = (run_dir / EVENTS).read_bytes().splitlines(keepends=True)
    body = json.loads(lines[1])
    del body["hash"]
    body["v"] = 1
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["hash"] = hashlib.sha256(raw).hexdigest()
    lines[1] = json.dumps(body, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    (run_dir / EVENTS).write_bytes(b"".join(lines))
    verdict = verify(run_dir)
    assert verdict.state == "corrupt" and "format v1 in a v2 run" in verdict.reason


def _put(run: Run, content: BlobRef, name: str) -> None:
    run.append(
        FilePut(
            call=1,
            slot="e1.p1.0",
            instance_id="i-0001",
            user="root",
            local_path=name,
            remote_path=f"/tmp/{name}",
            mode=0o644,
            content=content,
        )
    )


def test_a_blob_withheld_after_a_late_secret_is_gone_and_the_run_stays_intact(store, tmp_path):
    secret = "late-secret-4242"
    script = tmp_path / "experiment.py"
    script.write_text(f"exp.secret('TOKEN', {secret!r})\n")
    run = Run.open(store, name="late", script=script)
    held = run.add_blob(b"x" * 5000 + f"token={secret}\n".encode())
    clean = run.add_blob(b"y" * 5000)
    _put(run, held, "config.ini")
    _put(run, clean, "data.bin")
    removed = run.withhold_secret("TOKEN", secret)
    run.finish()

    script_sha = hashlib.sha256(script.read_bytes()).hexdigest()
    assert sorted(removed) == sorted([script_sha, held.sha256])
    assert_nowhere_in(run.path, secret)
    withheld = [e.data for e in LogReader(run.path / EVENTS) if e.type == "blob.withheld"]
    assert {w["sha256"] for w in withheld} == set(removed)
    assert {w["reason"] for w in withheld} == {"holds secret TOKEN"}
    assert verify(run.path).state == "intact"
    assert run.blobs.has(clean.sha256)


def test_a_blob_deleted_without_a_withheld_event_is_still_corrupt(store):
    run = Run.open(store, name="late")
    held = run.add_blob(b"x" * 5000 + b"token=late-secret-4242\n")
    clean = run.add_blob(b"y" * 5000)
    _put(run, held, "config.ini")
    _put(run, clean, "data.bin")
    run.withhold_secret("TOKEN", "late-secret-4242")
    run.finish()
    run.blobs.path_for(clean.sha256).unlink()
    verdict = verify(run.path)
    assert verdict.state == "corrupt"
    assert verdict.blob == clean.sha256


def test_a_secret_found_nowhere_changes_nothing(store):
    run = Run.open(store, name="late")
    _put(run, run.add_blob(b"y" * 5000), "data.bin")
    before = (run.path / EVENTS).read_bytes()
    assert run.withhold_secret("TOKEN", "appears-nowhere") == []
    assert (run.path / EVENTS).read_bytes() == before
    run.finish()
    assert verify(run.path).state == "intact"


def test_a_secret_already_in_the_log_is_warned_about(store, capsys):
    run = Run.open(store, name="late")
    run.append(Note(text="the token is early-secret-77"))
    run.withhold_secret("TOKEN", "early-secret-77")
    run.finish()
    err = capsys.readouterr().err
    assert "appears in events written before it was registered" in err
    assert "rotate" in err
