"""The precip API on the local cloud: real OpenSSH sshd instances on loopback addresses."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from precip_repro import (
    CloudError,
    CommandFailed,
    CommandTimeout,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalFileMissing,
    RemoteFileMissing,
    TransferFailed,
    WaitTimeout,
    diff_runs,
    finish_run,
    load_run,
    verify,
)
from precip_repro.cli import main as cli_main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import LogReader, payload_of
from precip_repro.record.payloads import Note
from precip_repro.record.store import EVENTS
from precip_repro.report import write_report
from precip_repro.ssh import MAX_COMMAND
from tests.ec2_cloud import wait_until
from tests.helpers import assert_nowhere_in, in_threads, ready, record_script


def events_of(run_path: Path) -> list[Any]:
    return list(LogReader(run_path / EVENTS))


def of_type(run_path: Path, kind: str) -> list[dict[str, Any]]:
    return [event.data for event in events_of(run_path) if event.type == kind]


def test_every_api_method_works_and_is_recorded(local_experiment, tmp_path):
    exp = local_experiment("api")
    exp.provision("default", tags=["group"], count=2)
    exp.provision("default", instance_type="m1.large", tags=["solo"])
    exp.wait()

    listed = exp.list()
    assert [item["slot"] for item in listed] == ["e1.p1.0", "e1.p1.1", "e1.p2.0"]
    assert listed[0]["tags"][:3] == ["precip", listed[0]["id"], "e1.p1.0"]
    assert [item["id"] for item in exp.list(["group"])] == [i["id"] for i in listed[:2]]
    assert exp.list(["group", "solo"]) == []  # tags match with AND
    assert exp.get_public_hostnames(["solo"]) == [listed[2]["public_address"]]
    assert exp.get_private_hostnames() == [item["private_address"] for item in listed]

    codes, outs, errs = exp.run(["group"], "hostname; echo oops >&2")
    assert codes == [0, 0]
    assert outs == [f"{item['id']}\n" for item in listed[:2]]
    assert errs == ["oops\n", "oops\n"]

    local = tmp_path / "data.txt"
    local.write_text("payload\n")
    local.chmod(0o640)
    exp.put(["group"], local, "/srv/data.txt")
    codes, outs, _ = exp.run(["group"], "stat -c %a /srv/data.txt; cat /srv/data.txt")
    assert outs == ["640\npayload\n"] * 2

    exp.get(["group"], "/srv/data.txt", tmp_path / "back.txt")
    for item in listed[:2]:
        back = tmp_path / f"back.txt.{item['id']}"  # several matched: the id is appended
        assert back.read_text() == "payload\n"
        assert back.stat().st_mode & 0o777 == 0o640
    exp.get(["solo"], "/etc/hostname", tmp_path / "solo.txt")  # exactly one: name kept
    assert (tmp_path / "solo.txt").read_text().strip() == listed[2]["id"]

    script = tmp_path / "show-args.sh"
    script.write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    codes, outs, _ = exp.copy_and_run(["solo"], script, ["a b", "$HOME", "it's", ";rm -rf /"])
    assert outs == ["[a b]\n[$HOME]\n[it's]\n[;rm -rf /]\n"]
    _, leftovers, _ = exp.run(["solo"], "ls /tmp")
    assert "precip-exec" not in leftovers[0]  # the script was removed

    exp.note(
        "metrics", mean=4.919, whole=2.0, count=3, big=2**60, worst=float("nan"),
        looks={"$float": "1"}, keys={"\U0001d11e": 1, "\ufb01": 2},
    )  # fmt: skip
    exp.deprovision(["group"])
    assert [item["slot"] for item in exp.list()] == ["e1.p2.0"]
    exp.deprovision()
    assert exp.list() == []

    run_path = exp.run_path
    digest = finish_run()
    verdict = verify(run_path)
    assert verdict.state == "intact" and verdict.digest == digest
    # Another implementation of RFC 8785 re-derives every line, hash and the checkpoint.
    for raw in (run_path / EVENTS).read_bytes().splitlines():
        event = json.loads(raw)
        assert rfc8785.dumps(event) == raw
        claimed = event.pop("hash")
        assert hashlib.sha256(rfc8785.dumps(event)).hexdigest() == claimed
    checkpoint = (run_path / "checkpoint").read_bytes()
    assert rfc8785.dumps(json.loads(checkpoint)) + b"\n" == checkpoint
    (note,) = [
        payload_of(e)
        for e in events_of(run_path)
        if e.type == "note" and e.data["text"] == "metrics"
    ]
    assert isinstance(note, Note)
    fields = note.fields  # numbers come back as numbers, a float a float
    assert fields["mean"] == 4.919 and type(fields["whole"]) is float and fields["whole"] == 2.0
    assert fields["count"] == 3 and fields["big"] == 2**60 and math.isnan(fields["worst"])
    assert fields["looks"] == {"$float": "1"} and fields["keys"] == {"\U0001d11e": 1, "\ufb01": 2}
    methods = [data["method"] for data in of_type(run_path, "call.started")]
    assert methods[:4] == ["provision", "provision", "wait", "list"]
    assert "copy_and_run" in methods
    ready = of_type(run_path, "instance.ready")
    assert len(ready) == 3
    assert all(d["host_key"].startswith("SHA256:") for d in ready)
    assert all(d["facts"]["cpus"] >= 1 and d["facts"]["uname"] for d in ready)
    puts = of_type(run_path, "file.put")
    assert [p["temporary"] for p in puts] == [False, False, True]
    assert of_type(run_path, "file.got")[0]["content"]["size"] == 8
    assert len(of_type(run_path, "instance.terminated")) == 3


def test_the_same_path_on_three_instances_stays_private_to_each(local_experiment):
    exp = local_experiment("isolation")
    exp.provision("default", count=3)
    exp.wait()
    marker = f"/etc/precip-isolation-{os.getpid()}"
    shm = f"/dev/shm/precip-isolation-{os.getpid()}"  # /dev is the host's; its shm is not
    for index, item in enumerate(exp.list()):
        exp.run(
            [item["id"]],
            f"echo {index} > {marker}; echo {index} > /tmp/x; echo {index} > /root/x; "
            f"echo {index} > {shm}",
        )
    _, outs, _ = exp.run([], f"cat {marker} /tmp/x /root/x {shm}")
    assert outs == ["0\n0\n0\n0\n", "1\n1\n1\n1\n", "2\n2\n2\n2\n"]
    assert not Path(marker).exists() and not Path(shm).exists()  # nothing reached the host
    _, ps, _ = exp.run([], "ps -e -o pid= | wc -l; hostname")
    for out, item in zip(ps, exp.list(), strict=True):
        count, hostname = out.split()
        assert int(count) < 10  # only the instance's own processes
        assert hostname == item["id"]


def test_deprovision_ends_every_process_the_instance_started(local_experiment):
    exp = ready(local_experiment, "nohup")
    marker = f"{os.getpid()}.4242"
    exp.run([], f"nohup sleep {marker} >/dev/null 2>&1 &")
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0
    exp.deprovision()
    assert subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 1


def test_an_image_directory_is_layered_and_its_digest_recorded(local_experiment, tmp_path):
    image = tmp_path / "image"
    (image / "opt" / "app").mkdir(parents=True)
    (image / "opt" / "app" / "version").write_text("1.2.3\n")
    (image / "data").mkdir()
    (image / "data" / "input.csv").write_text("a,b\n")
    exp = local_experiment("image")
    exp.provision(str(image))
    exp.wait()
    _, outs, _ = exp.run([], "cat /opt/app/version /data/input.csv; ls /usr/bin/env")
    assert outs == ["1.2.3\na,b\n/usr/bin/env\n"]
    launched = of_type(exp.run_path, "instance.launched")[0]
    from precip_repro.clouds.local import image_digest

    assert launched["image_digest"] == image_digest(image)


def test_a_failing_command_raises_with_instance_exit_code_and_stderr(local_experiment):
    exp = local_experiment("fail")
    exp.provision("default", count=2)
    exp.wait()
    with pytest.raises(CommandFailed) as info:
        exp.run([], "echo broken >&2; exit 3")
    first = exp.list()[0]
    assert info.value.exit_code == 3
    assert info.value.instance == first["id"]
    assert "broken" in info.value.stderr_tail and first["id"] in str(info.value)
    codes, _, errs = exp.run([], "echo broken >&2; exit 3", check_exit_code=False)
    assert codes == [3, 3] and errs == ["broken\n", "broken\n"]
    failed = of_type(exp.run_path, "call.failed")
    assert failed[0]["error"]["type"] == "CommandFailed"
    # Run in turn, the seed stops at the first failure: one command.finished for that call.
    calls = [d["call"] for d in of_type(exp.run_path, "command.finished")]
    assert calls.count(failed[0]["call"]) == 1


def test_a_parallel_failure_names_every_instance_that_failed(local_experiment):
    exp = local_experiment("fails-in-parallel")
    exp.provision("default", count=3)
    exp.wait()
    ok, bad, worse = [i["id"] for i in exp.list()]
    with pytest.raises(CommandFailed) as info:
        exp.run([], f'[ "$(hostname)" = {ok} ] || exit 2', parallel=True)
    assert info.value.instance == bad
    assert info.value.failed == {bad: 2, worse: 2}
    assert f"1 more failed too: {worse} (e1.p1.2) exited 2" in str(info.value)
    with pytest.raises(CommandFailed) as info:
        exp.run([], f'[ "$(hostname)" = {ok} ] || exit 2')  # in turn: it stops at the first
    assert info.value.failed == {bad: 2} and "more failed" not in str(info.value)


def test_missing_files_raise_specific_errors(local_experiment, tmp_path):
    exp = ready(local_experiment, "files")
    with pytest.raises(LocalFileMissing) as local:
        exp.put([], tmp_path / "nope.txt", "/tmp/nope.txt")
    assert isinstance(local.value, FileNotFoundError) and "nope.txt" in str(local.value)
    with pytest.raises(RemoteFileMissing) as remote:
        exp.get([], "/no/such/file", tmp_path / "out")
    assert remote.value.instance == exp.list()[0]["id"] and "/no/such/file" in str(remote.value)
    assert not (tmp_path / "out").exists()
    errors = [d["error"]["type"] for d in of_type(exp.run_path, "call.failed")]
    assert errors == ["LocalFileMissing", "RemoteFileMissing"]


def test_a_directory_where_a_file_is_meant_fails_the_transfer_saying_so(local_experiment, tmp_path):
    exp = ready(local_experiment, "dirs")
    source = tmp_path / "data.txt"
    source.write_text("data\n")
    with pytest.raises(TransferFailed) as put:
        exp.put([], source, "/etc")
    assert "cannot write /etc" in str(put.value) and "it is a directory" in str(put.value)
    assert "/etc/data.txt" in str(put.value)  # what to write instead
    with pytest.raises(TransferFailed, match=r"name the file to write: /etc/data\.txt\)"):
        exp.put([], source, "/etc/")  # not /etc//data.txt
    with pytest.raises(TransferFailed) as got:
        exp.get([], "/etc", tmp_path / "etc")
    assert "cannot get /etc" in str(got.value) and "tar czf" in str(got.value)
    assert got.value.instance == exp.list()[0]["id"]
    assert isinstance(got.value, OSError) and not (tmp_path / "etc").exists()
    assert issubclass(RemoteFileMissing, TransferFailed)
    with pytest.raises(TransferFailed) as into_dir:
        exp.get([], "/etc/hostname", tmp_path)
    assert f"cannot write {tmp_path} on this machine: it is a directory" in str(into_dir.value)
    assert f"{tmp_path}/hostname" in str(into_dir.value)
    with pytest.raises(LocalFileMissing) as local_dir:
        exp.put([], tmp_path, "/tmp/somewhere")
    assert f"local path {tmp_path} is a directory" in str(local_dir.value)
    assert "tar" in str(local_dir.value)
    errors = [d["error"]["type"] for d in of_type(exp.run_path, "call.failed")]
    assert errors == ["TransferFailed"] * 4 + ["LocalFileMissing"]


def test_devices_and_pipes_are_refused_at_either_end_leaving_their_mode_alone(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "devices")
    source = tmp_path / "data.txt"
    source.write_text("data\n")
    source.chmod(0o600)
    # A device node of the instance's own (its /dev is the host's: never touched here).
    exp.run([], "mknod -m 666 /tmp/null c 1 3 && mkfifo /tmp/pipe")
    for remote, kind in (("/tmp/null", "character device"), ("/tmp/pipe", "named pipe")):
        with pytest.raises(TransferFailed) as put:
            exp.put([], source, remote)  # a pipe: it would block until a reader came
        assert f"cannot put data.txt to {remote}" in str(put.value)
        assert f"it is a {kind}, not a file" in str(put.value)
    assert exp.run([], "stat -c %a /tmp/null")[1] == ["666\n"]  # not chmod-ed to 600
    with pytest.raises(TransferFailed, match=r"/dev/zero .*it is a character device"):
        exp.get([], "/dev/zero", tmp_path / "zeros")  # would never end
    assert not (tmp_path / "zeros").exists()
    exp.get([], "/proc/cpuinfo", tmp_path / "cpuinfo")  # sized 0, yet a file: read to its end
    assert "processor" in (tmp_path / "cpuinfo").read_text()
    with pytest.raises(LocalFileMissing, match="/dev/zero is a character device, not a file"):
        exp.put([], "/dev/zero", "/tmp/zeros")


def test_get_into_a_directory_is_refused_before_any_transfer_also_with_several_instances(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "gets", count=2)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TransferFailed) as into_dir:
        exp.get([], "/etc/hostname", out)  # would have been out.<id> files beside it
    assert f"name the file to write: {out}/hostname;" in str(into_dir.value)
    with pytest.raises(LocalFileMissing) as slash:
        exp.get([], "/etc/hostname", f"{out}/new/")  # a directory meant, none there
    assert f"local directory {out}/new does not exist" in str(slash.value)
    assert f"({out}/new/hostname)" in str(slash.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "records"]
    assert list(out.iterdir()) == []


def test_local_paths_starting_with_a_tilde_are_in_the_home_directory(
    local_experiment, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (home / "data.txt").write_text("from home\n")
    (home / "job.sh").write_text("#!/bin/sh\necho job ran\n")
    exp = ready(local_experiment, "tilde", count=2)
    exp.put([], "~/data.txt", "/tmp/data.txt")
    assert exp.run([], "cat /tmp/data.txt")[1] == ["from home\n"] * 2
    assert exp.copy_and_run([], "~/job.sh")[1] == ["job ran\n"] * 2
    exp.get([], "/tmp/data.txt", "~/back")
    backs = sorted(f"back.{d['id']}" for d in exp.list())
    assert sorted(p.name for p in home.iterdir()) == sorted(["data.txt", "job.sh", *backs])
    assert not (Path.cwd() / "~").exists()
    got = sorted(Path(d["local_path"]).name for d in of_type(exp.run_path, "file.got"))
    assert got == backs  # the file events say where the files really are
    assert {str(Path(d["local_path"]).parent) for d in of_type(exp.run_path, "file.got")} == {
        str(home)
    }


def test_a_script_saved_with_windows_line_endings_is_refused_before_it_is_sent(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "crlf")
    script = tmp_path / "setup.sh"
    script.write_bytes(b"#!/bin/bash\r\necho configured\r\n")
    with pytest.raises(InvalidOption) as info:
        exp.copy_and_run([], script)
    assert "ends in CRLF" in str(info.value) and f"dos2unix {script}" in str(info.value)
    assert "'/bin/bash' + '\\r'" in str(info.value)
    assert exp.run([], "ls /tmp")[1] == [""]  # nothing was sent
    assert of_type(exp.run_path, "call.failed")[-1]["error"]["type"] == "InvalidOption"
    script.write_bytes(b"#!/bin/bash\necho configured\n")
    assert exp.copy_and_run([], script)[1] == ["configured\n"]


def test_a_hundred_megabytes_of_output_and_binary_output_are_kept_exactly(local_experiment):
    exp = ready(local_experiment, "big")
    cmd = "head -c 100000000 /dev/zero | tr '\\0' x; head -c 3000000 /dev/zero >&2"
    codes, outs, errs = exp.run([], cmd)
    assert codes == [0] and len(outs[0]) == 100_000_000 and len(errs[0]) == 3_000_000
    exp.run([], "printf '\\377\\000\\001binary'")
    finished = of_type(exp.run_path, "command.finished")
    big = finished[0]["stdout"]
    assert big["size"] == 100_000_000
    assert big["sha256"] == hashlib.sha256(b"x" * 100_000_000).hexdigest()
    binary = finished[1]["stdout"]
    assert "text" not in binary
    blob = exp.run_path / "objects" / binary["sha256"][:2] / binary["sha256"][2:]
    assert blob.read_bytes() == b"\xff\x00\x01binary"


def test_a_command_timeout_stops_it_and_records_no_exit_code(local_experiment):
    exp = ready(local_experiment, "timeout")
    with pytest.raises(CommandTimeout):
        exp.run([], "echo started; sleep 30", timeout=0.5)
    finished = of_type(exp.run_path, "command.finished")[-1]
    assert finished["exit_code"] is None
    assert finished["stdout"]["text"] == "started\n"


def test_using_an_instance_before_wait_is_a_clear_error(local_experiment):
    exp = local_experiment("early")
    exp.provision("default")
    with pytest.raises(InstanceNotReady, match="call wait"):
        exp.run([], "true")


def test_a_local_instance_that_dies_before_wait_is_replaced_or_reported_with_its_last_words(
    local_experiment,
):
    exp = local_experiment("dies", boot_max_tries=2)
    exp.provision("default")
    (first,) = [i["id"] for i in exp.list()]
    (state,) = [s for s in live_local_instances() if s.instance_id == first]
    os.kill(state.launcher_pid, signal.SIGKILL)  # the instance's init: all of it ends
    exp.wait(timeout=30)
    (now,) = exp.list()
    assert now["slot"] == "e1.p1.0" and now["id"] != first
    assert exp.run([], "echo alive")[1] == ["alive\n"]
    exp.deprovision()

    exp.provision("default", tags=["second"])
    (doomed,) = [i["id"] for i in exp.list(["second"])]
    exp.boot_max_tries = 1
    (state,) = [s for s in live_local_instances() if s.instance_id == doomed]
    os.kill(state.launcher_pid, signal.SIGKILL)
    with pytest.raises(
        CloudError, match=f"{doomed} \\(e1.p2.0\\): it ended while it booted: its processes ended"
    ):
        exp.wait(timeout=30)
    assert exp.list() == []
    terminated = [d["instance_id"] for d in of_type(exp.run_path, "instance.terminated")]
    assert terminated[-1] == doomed


def test_threads_waiting_at_once_for_the_same_instances_record_each_ready_once(
    local_experiment,
):
    exp = local_experiment("waits-at-once")
    exp.provision("default", count=2)
    assert in_threads(exp.wait, exp.wait, lambda: exp.wait([exp.list()[1]["id"]])) == []
    ready = [d["slot"] for d in of_type(exp.run_path, "instance.ready")]
    assert sorted(ready) == ["e1.p1.0", "e1.p1.1"]
    assert exp.run([], "true")[0] == [0, 0]


def test_threads_deprovisioning_at_once_end_each_instance_once(local_experiment):
    exp = ready(local_experiment, "ends-at-once", count=2)
    ids = [i["id"] for i in exp.list()]
    assert in_threads(exp.deprovision, exp.deprovision, lambda: exp.deprovision([ids[0]])) == []
    ended = [d["slot"] for d in of_type(exp.run_path, "instance.terminated")]
    assert sorted(ended) == ["e1.p1.0", "e1.p1.1"]
    assert not set(ids) & {s.instance_id for s in live_local_instances()}


def test_wait_times_out_naming_the_late_instance(local_experiment):
    import signal

    from precip_repro.clouds.local import LocalInstanceState
    from precip_repro.keys import precip_home

    exp = local_experiment("late", connect_timeout=0.3)
    exp.provision("default")
    instance_id = exp.list()[0]["id"]
    state = LocalInstanceState.load(precip_home() / "local" / "instances" / instance_id)
    assert state.init_pid is not None
    os.kill(state.init_pid, signal.SIGSTOP)  # the sshd accepts no more logins
    try:
        with pytest.raises(WaitTimeout) as info:
            exp.wait(timeout=1.5)
        assert info.value.late == [instance_id]
        assert instance_id in str(info.value) and "e1.p1.0" in str(info.value)
    finally:
        os.kill(state.init_pid, signal.SIGCONT)
    assert of_type(exp.run_path, "call.failed")[-1]["error"]["type"] == "WaitTimeout"


def test_an_unreachable_instance_raises_and_the_call_fails(local_experiment):
    import signal

    from precip_repro.clouds.local import LocalInstanceState
    from precip_repro.keys import precip_home

    exp = ready(local_experiment, "gone")
    instance_id = exp.list()[0]["id"]
    state = LocalInstanceState.load(precip_home() / "local" / "instances" / instance_id)
    assert state.init_pid is not None
    os.kill(state.init_pid, signal.SIGKILL)  # the instance dies under us
    with pytest.raises(InstanceUnreachable) as info:
        exp.run([], "true")
    assert info.value.instance == instance_id
    assert of_type(exp.run_path, "call.failed")[-1]["error"]["type"] == "InstanceUnreachable"


def test_an_instance_that_ended_after_it_was_ready_is_gone_for_list_run_and_wait(
    local_experiment,
):
    from precip_repro.clouds.local import LocalInstanceState
    from precip_repro.keys import precip_home

    exp = ready(local_experiment, "ended", count=2)
    ended, kept = exp.list()
    state = LocalInstanceState.load(precip_home() / "local" / "instances" / ended["id"])
    assert state.init_pid is not None
    os.kill(state.init_pid, signal.SIGKILL)  # a crash
    assert wait_until(lambda: exp.cloud.describe([ended["id"]])[0].state == "terminated")
    with pytest.raises(InstanceUnreachable) as first:
        exp.run([], "true")
    assert first.value.instance == ended["id"] and "is gone" in str(first.value)
    assert [d["state"] for d in exp.list()] == ["terminated", "running"]
    with pytest.raises(InstanceUnreachable) as again:  # known gone: no connection tried
        exp.put([ended["slot"]], __file__, "/tmp/x.py")
    assert str(again.value).startswith(f"instance {ended['id']} ({ended['slot']}): the cloud")
    with pytest.raises(InstanceUnreachable, match="1 of 2 instances ended after") as waited:
        exp.wait(timeout=5)
    assert waited.value.slot == ended["slot"]
    assert exp.run([kept["slot"]], "echo fine")[1] == ["fine\n"]
    assert exp.wait([kept["slot"]], timeout=5) is None


def test_an_instance_its_cloud_does_not_list_for_a_while_is_not_given_up(
    local_experiment, monkeypatch
):
    exp = ready(local_experiment, "lagging")
    monkeypatch.setattr(exp.cloud, "describe", lambda ids: [])  # a listing that lags
    assert exp.wait(timeout=5) is None  # not listed is no proof that it ended
    assert exp.list()[0]["state"] == "running"
    assert exp.run([], "echo still here")[1] == ["still here\n"]


def test_a_command_whose_instance_the_script_deprovisions_meanwhile_says_so(local_experiment):
    exp = ready(local_experiment, "deprovisioned-under")

    def deprovision_soon() -> None:
        time.sleep(1.0)  # the command below is running by then
        exp.deprovision()

    (error,) = in_threads(lambda: exp.run([], "sleep 30"), deprovision_soon)
    assert isinstance(error, InstanceUnreachable)
    assert "this experiment terminated it (deprovision, call #4)" in str(error)
    assert "unknown to its cloud" not in str(error)


def test_a_changed_host_key_is_refused(local_experiment, tmp_path):
    from precip_repro import HostKeyChanged
    from precip_repro.clouds.local import LocalInstanceState
    from precip_repro.keys import precip_home

    exp = ready(local_experiment, "impostor")
    item = exp.list()[0]
    state = LocalInstanceState.load(precip_home() / "local" / "instances" / item["id"])
    assert state.init_pid is not None
    os.kill(state.init_pid, signal.SIGKILL)
    for _ in range(500):  # gone, listening socket and all, before another takes its place
        if not Path(f"/proc/{state.init_pid}").exists():
            break
        time.sleep(0.01)
    # Something else now answers at the instance's address, with another host key.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    config = tmp_path / "sshd_config"
    config.write_text(
        f"ListenAddress {state.address}:{state.port}\nHostKey {tmp_path / 'k'}\n"
        f"PidFile {tmp_path / 'pid'}\nUsePAM no\nStrictModes no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    impostor = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL
    )
    try:
        # sshd writes its pid file once it listens (a probe could meet the old listener).
        for _ in range(500):
            if (tmp_path / "pid").exists():
                break
            time.sleep(0.01)
        with pytest.raises(HostKeyChanged) as info:
            exp.run([], "true")
        assert item["id"] in str(info.value) and "pinned" in str(info.value)
    finally:
        impostor.kill()
        impostor.wait()


def test_parallel_runs_keep_instance_order(local_experiment):
    exp = local_experiment("fan", parallel=True)
    exp.provision("default", count=4)
    exp.wait()
    _, outs, _ = exp.run([], "sleep 0.$((RANDOM % 3)); hostname")
    assert outs == [f"{item['id']}\n" for item in exp.list()]
    _, serial, _ = exp.run([], "hostname", parallel=False)
    assert serial == outs


def test_secrets_never_reach_the_store(local_experiment, tmp_path, caplog):
    exp = local_experiment("secret")
    secret = "s3cr3t-token-value-123"
    exp.secret("API_TOKEN", secret)
    exp.provision("default")
    exp.wait()
    _, outs, _ = exp.run([], f"echo using {secret}")
    assert outs == [f"using {secret}\n"]  # the caller still gets the real output
    local = tmp_path / "config.ini"
    local.write_text(f"token = {secret}\n")
    exp.put([], local, "/root/config.ini")
    exp.note(f"note mentioning {secret}")
    run_path = exp.run_path
    finish_run()
    assert_nowhere_in(run_path, secret)
    command = of_type(run_path, "command.finished")[0]
    assert command["cmd"] == "echo using ${secret:API_TOKEN}"
    assert command["stdout"]["text"] == "using ${secret:API_TOKEN}\n"
    content = of_type(run_path, "file.put")[0]["content"]
    assert content["withheld"] == "holds secret API_TOKEN"
    assert content["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert verify(run_path).state == "intact"


def test_an_error_message_hides_a_registered_secret_while_its_attributes_keep_it(
    local_experiment,
):
    # Messages reach terminals, CI logs and bug reports; a traceback prints them whole.
    exp = ready(local_experiment, "secret-errors")
    secret = "s3cr3t-token-value-456"
    exp.secret("API_TOKEN", secret)
    with pytest.raises(CommandFailed) as failed:
        exp.run([], f"echo denied for {secret} >&2; exit 7  # {secret}")
    assert secret not in str(failed.value)
    assert "denied for ${secret:API_TOKEN}" in str(failed.value)
    assert "# ${secret:API_TOKEN}' exited 7" in str(failed.value)
    assert secret in failed.value.stderr_tail and secret in failed.value.cmd  # for code
    with pytest.raises(CommandTimeout) as late:
        exp.run([], f"sleep 5 # {secret}", timeout=0.5)
    assert secret not in str(late.value) and "${secret:API_TOKEN}" in str(late.value)


def test_a_long_failing_command_is_shown_by_head_and_tail_with_no_part_of_a_secret(
    local_experiment,
):
    exp = ready(local_experiment, "long-command")
    secret = "s3cr3t-token-value-789"
    exp.secret("API_TOKEN", secret)
    # The secret straddles where the head is cut: shown before redaction, its start would be.
    lines = "\n".join(f"line {i} of a generated config" for i in range(300))
    cmd = f"{'x' * 150}{secret}; cat > /tmp/conf <<'EOF'\n{lines}\nEOF\necho bad >&2; false"
    with pytest.raises(CommandFailed) as info:
        exp.run([], cmd)
    message = str(info.value)
    assert len(message) < 600, message
    assert secret[:6] not in message and "${secret:API_TOKEN}" in message
    assert " characters… '" in message
    assert "config\\nEOF\\necho bad >&2; false' exited 1 on instance" in message
    assert message.endswith("command not found\nbad")
    assert info.value.cmd == cmd  # the attribute keeps it all


def test_private_keys_moved_or_printed_never_reach_the_store(local_experiment, tmp_path, capsys):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    body = key.read_text().splitlines()[1]  # a line of the key itself
    exp = ready(local_experiment, "keys")
    exp.put([], key, "/root/.ssh/id_ed25519")  # for the instance to reach others, say
    exp.get([], "/root/.ssh/id_ed25519", tmp_path / "back")
    _, outs, _ = exp.run([], "cat /root/.ssh/id_ed25519; head -2 /root/.ssh/id_ed25519")
    assert body in outs[0]  # the caller still sees it
    exp.put([], key.with_suffix(".pub"), "/root/.ssh/id_ed25519.pub")  # a public one is no secret
    run_path = exp.run_path
    finish_run()
    assert_nowhere_in(run_path, body)
    moved = [(e["content"].get("withheld"), e["remote_path"]) for e in
             of_type(run_path, "file.put") + of_type(run_path, "file.got")]  # fmt: skip
    assert sorted(moved, key=str) == sorted([
        ("holds a private key", "/root/.ssh/id_ed25519"),
        ("holds a private key", "/root/.ssh/id_ed25519"),
        (None, "/root/.ssh/id_ed25519.pub"),
    ], key=str)  # fmt: skip
    text = of_type(run_path, "command.finished")[0]["stdout"]["text"]
    armour = "-----BEGIN OPENSSH PRIVATE KEY-----\n${private key withheld}\n"
    assert text.count(armour) == 2 and text.count("-----END OPENSSH PRIVATE KEY-----") == 2
    assert verify(run_path).state == "intact"
    assert cli_main(["show", str(run_path)]) == 0
    assert capsys.readouterr().out.count("kept by hash only: holds a private key)") == 2


def test_a_secret_name_registered_again_with_another_value_still_hides_the_first(
    local_experiment,
):
    exp = local_experiment("rotated")  # a rotated token; two clouds' AWS_SECRET_ACCESS_KEY
    exp.secret("TOKEN", "first-token-value")
    exp.secret("TOKEN", "second-token-value")
    exp.provision("default")
    exp.wait()
    exp.run([], "echo first-token-value second-token-value")
    run_path = exp.run_path
    finish_run()
    assert_nowhere_in(run_path, "first-token-value")
    assert_nowhere_in(run_path, "second-token-value")
    (command,) = of_type(run_path, "command.finished")
    assert command["cmd"] == "echo ${secret:TOKEN} ${secret:TOKEN}"


def test_credentials_in_the_environment_are_secrets_without_being_told(
    local_experiment, monkeypatch
):
    credentials = {
        "WANDB_API_KEY": "wandb-0123456789abcdef",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RETRY_TOKEN", "1")  # too short to be a credential: a flag
    exp = ready(local_experiment, "env")
    exp.run([], "echo {WANDB_API_KEY} {AWS_SECRET_ACCESS_KEY} 1".format(**credentials))
    run_path = exp.run_path
    finish_run()
    assert_nowhere_in(run_path, *credentials.values())
    (command,) = of_type(run_path, "command.finished")
    assert command["cmd"] == "echo ${secret:WANDB_API_KEY} ${secret:AWS_SECRET_ACCESS_KEY} 1"


REGISTERED_FIRST = """
import sys
from precip_repro import LocalExperiment, register_secret
register_secret("TOKEN", sys.argv[1])  # before the run starts: its command line too
exp = LocalExperiment()
exp.provision("default")
exp.wait()
exp.run([], "echo " + sys.argv[1])
"""


def test_a_secret_registered_before_the_first_experiment_is_hidden_from_the_command_line(
    store, tmp_path
):
    script = tmp_path / "token.py"
    script.write_text(REGISTERED_FIRST)
    done = record_script(store, script, "argv-token-4f3e2d")
    assert done.returncode == 0, done.stderr
    assert "appears in events written before" not in done.stderr
    (run_path,) = store.run_dirs()
    assert_nowhere_in(run_path, "argv-token-4f3e2d")
    started = of_type(run_path, "run.started")[0]
    assert started["argv"][-1] == "${secret:TOKEN}"


def test_record_false_writes_nothing(store):
    from precip_repro import LocalExperiment

    exp = LocalExperiment("quiet", record=False, records=store.root)
    try:
        exp.provision("default")
        exp.wait()
        assert exp.run([], "echo hi")[1] == ["hi\n"]
        assert exp.run_id is None
    finally:
        exp.deprovision()
    assert not store.root.exists()


def test_two_experiments_in_one_process_share_one_run(local_experiment):
    one = local_experiment("one")
    two = local_experiment("two")
    assert one.run_id == two.run_id
    assert (one.exp, two.exp) == ("e1", "e2")
    one.provision("default")
    two.provision("default")
    slots = [d["slot"] for d in of_type(one.run_path, "instance.launched")]
    assert slots == ["e1.p1.0", "e2.p1.0"]
    assert (
        one.list()[0]["public_address"].rsplit(".", 1)[0]
        != two.list()[0]["public_address"].rsplit(".", 1)[0]
    )


def test_a_secret_registered_late_takes_what_was_stored_before_out_of_the_store(
    local_experiment, tmp_path, store
):
    exp = local_experiment("late")
    secret = "late-token-9f8e7d"
    exp.provision("default")
    exp.wait()
    local = tmp_path / "big.ini"
    local.write_text("x" * 6000 + f"\ntoken = {secret}\n")
    exp.put([], local, "/root/big.ini")
    exp.run([], "cat /root/big.ini")  # > 4 KiB: kept as an object, not inline
    exp.get([], "/root/big.ini", tmp_path / "back.ini")
    exp.secret("API_TOKEN", secret)
    _, outs, _ = exp.run([], "cat /root/big.ini")
    assert outs[0].endswith(f"token = {secret}\n")  # the caller still gets the real output
    run_path = exp.run_path
    finish_run()

    assert_nowhere_in(run_path, secret)
    withheld = of_type(run_path, "blob.withheld")
    # The file put, the file got and the first output are the same bytes: one blob.
    assert [w["sha256"] for w in withheld] == [hashlib.sha256(local.read_bytes()).hexdigest()]
    assert verify(run_path).state == "intact"
    view = load_run(run_path)
    moved = [f for call in view.calls for f in call.files]
    assert [f.content and f.content.withheld for f in moved] == ["holds secret API_TOKEN"] * 2
    first, second = (call.commands[0] for call in view.calls if call.method == "run")
    assert first.stdout is not None and second.stdout is not None
    assert first.stdout.withheld == "holds secret API_TOKEN"
    assert second.stdout.withheld is None  # stored after: redacted, not withheld
    assert diff_runs(view, load_run(run_path)).same
    report = write_report(run_path, tmp_path / "late.html")
    html = report.path.read_text()
    assert "withheld: holds secret API_TOKEN" in html and "INTACT" in html


def test_threads_sharing_an_experiment_move_files_at_once_without_deadlock(
    local_experiment, tmp_path
):
    exp = local_experiment("threads")
    exp.provision("default", count=2)
    exp.wait()

    def work(i: int) -> None:
        local = tmp_path / f"in-{i}.txt"
        local.write_text(f"payload {i}\n" * 1000)
        for j in range(5):
            exp.put([], local, f"/tmp/in-{i}.txt")
            exp.get([], f"/tmp/in-{i}.txt", tmp_path / f"out-{i}-{j}")
            _, outs, _ = exp.run([], f"wc -l < /tmp/in-{i}.txt")
            assert outs == ["1000\n", "1000\n"]

    errors = in_threads(*(functools.partial(work, i) for i in range(6)))
    assert errors == []
    for item in exp.list():
        got = tmp_path / f"out-3-4.{item['id']}"
        assert got.read_text() == "payload 3\n" * 1000
    run_path = exp.run_path
    finish_run()
    assert len(of_type(run_path, "file.got")) == 6 * 5 * 2
    assert verify(run_path).state == "intact"


def test_a_command_no_ssh_server_can_run_is_refused_before_it_is_sent(local_experiment):
    exp = ready(local_experiment, "odd-commands")
    with pytest.raises(InvalidOption, match="without NUL characters"):
        exp.run([], "echo a\0b")
    with pytest.raises(InvalidOption, match=r"at most 131071 bytes .* copy_and_run"):
        exp.run([], "echo " + "x" * 300_000)
    longest = "echo " + "x" * (MAX_COMMAND - len("echo  | wc -c")) + " | wc -c"
    assert exp.run([], longest)[1] == [f"{MAX_COMMAND - len('echo  | wc -c') + 1}\n"]
    errors = [d["error"]["type"] for d in of_type(exp.run_path, "call.failed")]
    assert errors == ["InvalidOption", "InvalidOption"]


def test_a_remote_path_under_tilde_or_relative_is_in_the_users_home_as_scp_has_it(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "home-paths")
    source = tmp_path / "data.txt"
    source.write_text("in the home directory\n")
    exp.put([], source, "~/data.txt")
    exp.put([], source, "relative.txt")
    assert exp.run([], "cat /root/data.txt /root/relative.txt")[1] == [
        "in the home directory\n" * 2
    ]
    exp.get([], "~/data.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "in the home directory\n"
    puts = of_type(exp.run_path, "file.put")
    assert [p["remote_path"] for p in puts] == ["~/data.txt", "relative.txt"]


def test_an_instance_resolves_its_own_hostname_as_a_clouds_dns_would(local_experiment):
    exp = ready(local_experiment, "own-name")
    (address,) = exp.get_private_hostnames()
    (out,) = exp.run([], "hostname -f; getent hosts $(hostname)")[1]
    name, resolved = out.splitlines()
    assert name == exp.list()[0]["id"]
    assert resolved.split() == [address, name]


def test_a_closed_experiment_refuses_to_start_or_use_anything(local_experiment):
    from precip_repro import ExperimentClosed

    exp = local_experiment("closed")
    with exp:
        exp.provision("default")
        exp.wait()
    calls: list[tuple[str, Any]] = [
        ("provision", lambda: exp.provision("default")),
        ("wait", lambda: exp.wait()),
        ("run", lambda: exp.run([], "true")),
        ("put", lambda: exp.put([], "/etc/hostname", "/tmp/x")),
        ("get", lambda: exp.get([], "/etc/hostname", "x")),
        ("copy_and_run", lambda: exp.copy_and_run([], "/bin/true")),
        ("open_port", lambda: exp.open_port(80)),
    ]
    for method, call in calls:
        with pytest.raises(ExperimentClosed, match=rf"e1 .* closed: .* so {method}\(\) would"):
            call()
    exp.deprovision()  # what a seed script's `finally:` does after the with block: harmless
    assert exp.list() == []
    assert [d["method"] for d in of_type(exp.run_path, "call.started")].count("provision") == 1


def test_a_command_killed_without_an_exit_status_says_so(local_experiment):
    exp = ready(local_experiment, "killed")
    assert exp.run([], "kill -9 $$", check_exit_code=False)[0] == [-1]
    with pytest.raises(CommandFailed, match=r"ended without an exit status \(-1: killed by"):
        exp.run([], "kill -9 $$")
    assert exp.run([], "echo still here")[1] == ["still here\n"]


def test_a_file_put_to_several_instances_is_stored_once_and_checked_per_instance(
    local_experiment, tmp_path, monkeypatch
):
    exp = ready(local_experiment, "fan-put", count=3)
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 3_000_000)
    exp.put([], data, "/tmp/data.bin", parallel=True)
    keep_local = exp._transfers._keep_local

    def changed_once_stored(local):  # the file changes after it was stored, before it is sent
        kept = keep_local(local)
        local.write_bytes(b"y" * 3_000_000)
        return kept

    monkeypatch.setattr(exp._transfers, "_keep_local", changed_once_stored)
    exp.put([], data, "/tmp/data2.bin")
    run_path = exp.run_path
    finish_run()
    puts = of_type(run_path, "file.put")
    first, second = puts[:3], puts[3:]
    stored = hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert [p["content"]["sha256"] for p in first] == [stored] * 3
    assert all(not p["content"].get("withheld") for p in first)
    sent = hashlib.sha256(b"y" * 3_000_000).hexdigest()
    assert [(p["content"]["sha256"], p["content"]["withheld"]) for p in second] == [
        (sent, "the file changed while it was sent: these bytes were not kept")
    ] * 3
    verdict = verify(run_path)
    assert verdict.state == "intact" and verdict.blobs_checked == 1  # the file, stored once
