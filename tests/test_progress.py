"""Progress events: what long work says as it goes, to whoever listens."""

from __future__ import annotations

import os
import threading

from precip_repro import finish_run, progress
from replay.cli import main as replay


def test_listeners_hear_events_only_while_listening_and_a_failing_one_harms_nothing():
    heard: list[progress.ProgressEvent] = []

    def broken(event: progress.ProgressEvent) -> None:
        raise RuntimeError("a listener's own bug")

    event = progress.VerifyProgress(run="r", events=1, done=1, total=2)
    assert not progress.active()
    with progress.listening(broken), progress.listening(heard.append):
        assert progress.active()
        progress.emit(event)
    progress.emit(event)
    assert heard == [event]
    assert not progress.active()


def test_a_transfer_meter_says_every_tenth_of_a_second_and_always_at_the_end(monkeypatch):
    heard: list[progress.ProgressEvent] = []
    clock = iter([0.0, 0.01, 0.5, 0.51, 0.6])
    monkeypatch.setattr("precip_repro.progress.time.monotonic", lambda: next(clock))
    passed: list[bytes] = []
    with progress.listening(heard.append):
        meter = progress.TransferMeter(slot="e1.p1.0", instance_id="i-1", direction="put",
                                       path="/data", total=30)  # fmt: skip
        sink = meter.wrap(passed.append)
        for _ in range(3):
            sink(b"0123456789")
        meter.finish()
    assert passed == [b"0123456789"] * 3  # every chunk handed on
    assert [(e.done, e.finished) for e in heard] == [(20, False), (30, True)]  # type: ignore[union-attr]


def test_wait_says_what_each_instance_waits_for_and_transfers_say_their_bytes(
    local_experiment, tmp_path
):
    heard: list[progress.ProgressEvent] = []
    lock = threading.Lock()

    def listen(event: progress.ProgressEvent) -> None:
        with lock:  # boot waits and transfers run on threads of their own
            heard.append(event)

    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3 << 20))
    exp = local_experiment("progress")
    with progress.listening(listen):
        exp.provision("default", count=2)
        exp.wait()
        exp.put([], data, "/tmp/data.bin")
        exp.get([], "/tmp/data.bin", tmp_path / "back")
    booting = [e for e in heard if isinstance(e, progress.InstanceProgress)]
    slots = {e.slot for e in booting}
    assert slots == {"e1.p1.0", "e1.p1.1"}
    for slot in slots:
        states = [e.state for e in booting if e.slot == slot]
        assert states[0] == "waiting" and states[-1] == "ready", states
    moved = [e for e in heard if isinstance(e, progress.TransferProgress)]
    for direction in ("put", "get"):
        ends = [e for e in moved if e.direction == direction and e.finished]
        assert sorted(e.slot for e in ends) == ["e1.p1.0", "e1.p1.1"]
        assert all(e.done == 3 << 20 for e in ends)
    assert all(e.total == 3 << 20 for e in moved if e.direction == "put")


def test_a_replay_says_each_step_n_of_n_with_the_verdicts_so_far(local_experiment, store, capsys):
    exp = local_experiment("steps")
    exp.provision("default")
    exp.wait()
    exp.run([], "echo one")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    heard: list[progress.ProgressEvent] = []
    with progress.listening(heard.append):
        code = replay([source, "--records", str(store.root), "--to", "local", "--max-gap", "0"])
    assert code == 0, capsys.readouterr().out
    steps = [e for e in heard if isinstance(e, progress.StepProgress)]
    assert [(e.step, e.of) for e in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert steps[-1].verdicts == {"identical": 4}


def test_listeners_never_see_a_registered_secret(monkeypatch):
    heard: list[progress.ProgressEvent] = []
    monkeypatch.setattr(progress, "_redact", lambda text: text.replace("hunter2", "${secret:PW}"))
    with progress.listening(heard.append):
        progress.emit(progress.TransferProgress(slot="e1.p1.0", instance_id="i-1",
                                                direction="get", path="/tmp/hunter2.txt",
                                                done=1, total=None, elapsed_s=0.1))  # fmt: skip
    assert [e.path for e in heard] == ["/tmp/${secret:PW}.txt"]  # type: ignore[union-attr]


def test_verifying_a_large_run_says_how_far_it_got(store, monkeypatch):
    import importlib

    verify_module = importlib.import_module("precip_repro.record.verify")
    from tests.helpers import record_sample_run

    run = record_sample_run(store, name="large")
    monkeypatch.setattr(verify_module, "PROGRESS_EVERY", 5)  # the sample's 14 events: large
    heard: list[progress.ProgressEvent] = []
    with progress.listening(heard.append):
        assert verify_module.verify(run.path).intact
    said = [e for e in heard if isinstance(e, progress.VerifyProgress)]
    assert [(e.events, e.finished) for e in said] == [(5, False), (10, False), (14, True)]
    size = (run.path / "events.jsonl").stat().st_size
    assert said[-1].done == said[-1].total == size and said[0].done < size
    heard.clear()
    monkeypatch.setattr(verify_module, "PROGRESS_EVERY", 10_000)
    with progress.listening(heard.append):
        verify_module.verify(run.path)
    assert heard == []  # a small run says nothing
