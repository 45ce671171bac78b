"""A recording process that is interrupted, killed or fails leaves no instance behind and a
run that verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from precip_repro import verify
from precip_repro.clouds.local import LocalCloud, live_local_instances
from precip_repro.record import LogReader, RunStore
from precip_repro.record.store import EVENTS
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, wait_until

SCRIPT = """
import sys, time
from precip_repro import LocalExperiment
exp = LocalExperiment("victim", records=sys.argv[1])
exp.provision("default", count=2)
exp.wait()
exp.run([], "nohup sleep {marker} >/dev/null 2>&1 &")
print("READY", flush=True)
{tail}
"""


def start(tmp_path: Path, store: RunStore, marker: str, tail: str) -> subprocess.Popen[str]:
    script = tmp_path / "victim.py"
    script.write_text(SCRIPT.format(marker=marker, tail=tail))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
    return proc


def run_script(
    tmp_path: Path, store: RunStore, code: str, name: str = "script.py", timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run the script ``code`` (saved as ``name``) recording into ``store``, to its end."""
    script = tmp_path / name
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script), str(store.root)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_to_end(tmp_path: Path, store: RunStore, code: str) -> subprocess.CompletedProcess[str]:
    """Run the script ``code`` recording into ``store``; it must exit 0."""
    done = run_script(tmp_path, store, code)
    assert done.returncode == 0, done.stderr
    return done


def sleeping(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True).returncode == 0


def only_run(store: RunStore) -> Path:
    (run_dir,) = list(store.run_dirs())
    return run_dir


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_mid_run_deprovisions_and_finishes_interrupted(tmp_path, store, signum):
    marker = f"{os.getpid()}.15{signum}"
    proc = start(tmp_path, store, marker, "time.sleep(60)")
    assert sleeping(marker)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 128 + signum
    assert not sleeping(marker)
    verdict = verify(only_run(store))
    assert verdict.state == "intact", verdict.reason
    assert verdict.status == "interrupted"
    events = list(LogReader(only_run(store) / EVENTS))
    assert [e.type for e in events].count("instance.terminated") == 2
    name = signal.Signals(signum).name
    assert [e.data for e in events if e.type == "note"] == [
        {"text": f"interrupted by {name}", "fields": {"ended": "interrupted", "signal": name}}
    ]


def test_sigint_mid_run_is_interrupted_too(tmp_path, store):
    marker = f"{os.getpid()}.1616"
    proc = start(tmp_path, store, marker, "time.sleep(60)")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert not sleeping(marker)
    assert verify(only_run(store)).status == "interrupted"


def test_an_uncaught_exception_deprovisions_and_finishes_failed(tmp_path, store):
    marker = f"{os.getpid()}.1717"
    proc = start(tmp_path, store, marker, "raise RuntimeError('experiment bug')")
    assert proc.wait(timeout=30) == 1
    assert not sleeping(marker)
    verdict = verify(only_run(store))
    assert (verdict.state, verdict.status) == ("intact", "failed")
    notes = [e.data for e in LogReader(only_run(store) / EVENTS) if e.type == "note"]
    assert notes == [
        {
            "text": "the script ended with an uncaught RuntimeError (at victim.py:9): "
            "experiment bug",
            "fields": {
                "ended": "failed",
                "error": {"type": "RuntimeError", "message": "experiment bug"},
                "at": "victim.py:9",
            },
        }
    ]


def test_sigkill_leaves_instances_gc_can_find_and_a_run_to_recover(tmp_path, store):
    from precip_repro.clouds.local import terminate_local
    from precip_repro.keys import precip_home
    from precip_repro.record import recover

    marker = f"{os.getpid()}.1818"
    proc = start(tmp_path, store, marker, "time.sleep(60)")
    proc.kill()
    proc.wait()
    time.sleep(0.1)
    run_dir = only_run(store)
    leaked = [s for s in live_local_instances() if s.run == run_dir.name]
    assert len(leaked) == 2 and sleeping(marker)  # still running: nothing cleaned them up
    for state in leaked:
        terminate_local(state, precip_home())
    assert not sleeping(marker)
    assert verify(run_dir).state == "abandoned"
    recover(run_dir)
    assert verify(run_dir).status == "interrupted"


def run_ec2_script(
    tmp_path: Path, code: str, store: RunStore, ec2: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh process with argv: store, endpoint, access key, secret key,
    subnet, image."""
    script = tmp_path / "script.py"
    script.write_text(code)
    args = [str(store.root), ec2.url, ACCESS_KEY, SECRET_KEY, ec2.subnet, ec2.image]
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


FULL_DISK = """
import resource, signal, sys
from precip_repro import EC2Experiment
exp = EC2Experiment("us-east-1", sys.argv[2], sys.argv[3], sys.argv[4], "full",
                    records=sys.argv[1], subnet_id=sys.argv[5], ssh_address="private")
exp.provision(sys.argv[6], count=2)
exp.wait(timeout=60)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = exp.run_path / "events.jsonl"
# The disk fills: the log cannot grow by another event (a kernel limit, as ENOSPC would).
resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size + 50, resource.RLIM_INFINITY))
try:
    exp.run([], "true")
except Exception as exc:
    print(type(exc).__name__, exc, file=sys.stderr, flush=True)
    raise
"""


def test_a_full_disk_still_terminates_everything_and_leaves_a_recoverable_record(
    tmp_path, store, ec2
):
    from precip_repro.record import recover

    done = run_ec2_script(tmp_path, FULL_DISK, store, ec2)
    assert done.returncode == 1, done.stderr
    assert "RecordWriteFailed could not write event seq" in done.stderr
    # deprovision could not record its intent: the instances are terminated all the same
    assert "deprovisioning failed; terminating what is left" in done.stderr
    assert "instances terminated; the record could not say so" in done.stderr
    found = ec2.client.describe_instances()["Reservations"]
    assert {i["State"]["Name"] for r in found for i in r["Instances"]} == {"terminated"}
    assert wait_until(lambda: ec2.hypervisor.running() == set())
    run_dir = only_run(store)
    verdict = verify(run_dir)
    assert verdict.state == "abandoned", verdict.reason  # every event written is intact
    assert recover(run_dir).action == "finished"
    assert verify(run_dir).state == "intact"


FULL_AT_LAUNCH = """
import resource, signal, sys
from precip_repro import EC2Experiment
from precip_repro.clouds.ec2 import EC2Cloud
exp = EC2Experiment("us-east-1", sys.argv[2], sys.argv[3], sys.argv[4], "full",
                    records=sys.argv[1], subnet_id=sys.argv[5], ssh_address="private")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
real_launch = EC2Cloud.launch

def launch(self, request):
    described = real_launch(self, request)  # the cloud started it: now the disk fills
    size = (exp.run_path / "events.jsonl").stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, resource.RLIM_INFINITY))
    return described

EC2Cloud.launch = launch
exp.provision(sys.argv[6], count=2)
"""


def test_an_instance_the_record_cannot_announce_is_terminated_all_the_same(tmp_path, store, ec2):
    done = run_ec2_script(tmp_path, FULL_AT_LAUNCH, store, ec2)
    assert done.returncode == 1, done.stderr
    assert "RecordWriteFailed" in done.stderr and "instance.launched" in done.stderr
    assert "instances terminated; the record could not say so" in done.stderr
    found = ec2.client.describe_instances()["Reservations"]
    states = [i["State"]["Name"] for r in found for i in r["Instances"]]
    # the one launched, and the other when its launch was under way at once: no more
    assert states and set(states) == {"terminated"} and len(states) <= 2
    assert wait_until(lambda: ec2.hypervisor.running() == set())
    assert verify(only_run(store)).state == "abandoned"


DROPPED = """
import sys
from precip_repro import LocalExperiment

def start():
    exp = LocalExperiment("dropped", records=sys.argv[1])
    exp.provision("default", count=2)
    exp.wait()
    exp.run([], "nohup sleep {marker} >/dev/null 2>&1 &")

start()  # the script keeps no reference to its experiment, and never deprovisions
import gc; gc.collect()
"""


def test_an_experiment_the_script_dropped_is_still_deprovisioned_at_exit(tmp_path, store):
    marker = f"{os.getpid()}.1919"
    run_to_end(tmp_path, store, DROPPED.format(marker=marker))
    assert not sleeping(marker)
    run_dir = only_run(store)
    assert [s for s in live_local_instances() if s.run == run_dir.name] == []
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "ok")
    types = [event.type for event in LogReader(run_dir / EVENTS)]
    assert types.count("instance.terminated") == 2


WANDERS = """
import os
from precip_repro import LocalExperiment
with LocalExperiment("wanders") as exp:  # records in ./records, relative to where it started
    exp.provision("default")
    exp.wait()
    os.chdir(os.environ["ELSEWHERE"])
    exp.run([], "head -c 10000 /dev/zero | tr '\\\\0' y")  # big enough to be a blob
    with open("data.txt", "w") as f:
        f.write("data\\n" * 2000)
    exp.put([], "data.txt", "/tmp/data.txt")
"""


def test_a_script_that_changes_directory_keeps_its_whole_record(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "wanders.py").write_text(WANDERS)
    env = {k: v for k, v in os.environ.items() if k != "PRECIP_RECORDS"}
    env["ELSEWHERE"] = str(elsewhere)
    done = subprocess.run(
        [sys.executable, "wanders.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not (elsewhere / "records").exists()
    run_dir = only_run(RunStore(tmp_path / "records"))
    verdict = verify(run_dir)
    assert verdict.state == "intact", verdict.reason
    started = next(iter(LogReader(run_dir / EVENTS))).data
    assert started["script"] is not None and started["script_path"].endswith("wanders.py")
    types = [event.type for event in LogReader(run_dir / EVENTS)]
    assert "file.put" in types


IMPATIENT = """
import os, signal, sys, time
from precip_repro import LocalExperiment
exp = LocalExperiment("impatient", records=sys.argv[1])
exp.provision("default", count=2)
exp.wait()
terminate = exp.cloud.terminate

def pressed_while_terminating(ids):
    for _ in range({presses}):  # Ctrl-C, again and again, while instances are terminated
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    terminate(ids)

exp.cloud.terminate = pressed_while_terminating
try:
    exp.deprovision()
finally:
    exp.cloud.terminate = terminate
print("NOT INTERRUPTED", flush=True)
"""


@pytest.mark.parametrize("presses", [2, 5])
def test_ctrl_c_while_deprovisioning_waits_until_instances_are_terminated(tmp_path, store, presses):
    done = run_script(tmp_path, store, IMPATIENT.format(presses=presses), timeout=60)
    assert "NOT INTERRUPTED" not in done.stdout  # the interruption took effect, once done
    assert "KeyboardInterrupt" in done.stderr
    assert "still deprovisioning: instances cost money" in done.stderr
    if presses >= 3:
        assert "gave up waiting for deprovisioning" in done.stderr
    run_dir = only_run(store)
    assert [s for s in live_local_instances() if s.run == run_dir.name] == []
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "interrupted")
    types = [event.type for event in LogReader(run_dir / EVENTS)]
    assert types.count("instance.terminated") == 2


PRESSED_WHILE_LAUNCHING = """
import os, signal, sys
from precip_repro import LocalExperiment

exp = LocalExperiment("launching", records=sys.argv[1])
launch = exp.cloud.launch

pressed = []

def pressed_while_launching(request):  # Ctrl-C before the answer says which instance started
    started = launch(request)
    if not pressed:  # once: launches overlap, and a third Ctrl-C would give up waiting
        pressed.append(request.slot)
        os.kill(os.getpid(), signal.SIGINT)
    return started

exp.cloud.launch = pressed_while_launching
exp.provision("default", count=8)
print("NOT INTERRUPTED", flush=True)
"""


def test_ctrl_c_while_an_instance_is_launched_waits_for_it_then_terminates_it(tmp_path, store):
    done = run_script(tmp_path, store, PRESSED_WHILE_LAUNCHING, timeout=60)
    assert "NOT INTERRUPTED" not in done.stdout
    assert "still launching an instance: instances cost money" in done.stderr
    run_dir = only_run(store)
    assert [s for s in live_local_instances() if s.run == run_dir.name] == []
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "interrupted")
    events = list(LogReader(run_dir / EVENTS))
    launched = [e.data["instance_id"] for e in events if e.type == "instance.launched"]
    terminated = [e.data["instance_id"] for e in events if e.type == "instance.terminated"]
    # The interruption took effect once the launches under way were known: the rest never
    # started. (A worker may begin one more before the main thread has run the handler, on
    # a loaded machine: the signal is held once that handler runs, not when it is sent.)
    assert 1 <= len(launched) < 8 and LocalCloud.launch_workers < 8
    assert sorted(terminated) == sorted(launched)


CTRL_C_WHILE_EC2_LAUNCHES = """
import os, signal, sys, threading, time
from precip_repro import EC2Experiment
exp = EC2Experiment("us-east-1", sys.argv[2], sys.argv[3], sys.argv[4], "hurried",
                    records=sys.argv[1], subnet_id=sys.argv[5], ssh_address="private")

def slow(**_):
    time.sleep(0.5)  # as EC2 takes its time to answer

exp.cloud.client.meta.events.register("before-call.ec2.RunInstances", slow)
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C mid-launch
exp.provision(sys.argv[6], count=20)
print("NOT INTERRUPTED", flush=True)
"""


def test_ctrl_c_while_ec2_launches_overlap_ends_every_instance_they_started(tmp_path, store, ec2):
    done = run_ec2_script(tmp_path, CTRL_C_WHILE_EC2_LAUNCHES, store, ec2)
    assert "NOT INTERRUPTED" not in done.stdout
    assert "still launching" in done.stderr
    found = ec2.client.describe_instances()["Reservations"]
    states = [i["State"]["Name"] for r in found for i in r["Instances"]]
    assert 0 < len(states) <= 8  # those under way, and no launch begun after the Ctrl-C
    assert set(states) == {"terminated"}
    run_dir = only_run(store)
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "interrupted")
    events = list(LogReader(run_dir / EVENTS))
    launched = sorted(e.data["instance_id"] for e in events if e.type == "instance.launched")
    terminated = sorted(e.data["instance_id"] for e in events if e.type == "instance.terminated")
    assert launched == terminated and len(launched) == len(states)


CTRL_C_MID_LINE = """
import os, signal, sys
from precip_repro import LocalExperiment
from precip_repro.record import journal
exp = LocalExperiment("torn", records=sys.argv[1])
exp.provision("default")
exp.wait()
write_all = journal._write_all

def half_then_ctrl_c(fd, data):
    if b'"command.finished"' not in data:
        return write_all(fd, data)
    write_all(fd, data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C with half the event's line written
    write_all(fd, data[len(data) // 2 :])

journal._write_all = half_then_ctrl_c
exp.run([], "echo hi")
print("NOT INTERRUPTED", flush=True)
"""


def test_ctrl_c_in_the_middle_of_an_events_line_takes_effect_once_it_is_whole(tmp_path, store):
    done = run_script(tmp_path, store, CTRL_C_MID_LINE, timeout=60)
    assert "NOT INTERRUPTED" not in done.stdout and "KeyboardInterrupt" in done.stderr
    run_dir = only_run(store)
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "interrupted"), verdict.reason
    types = [event.type for event in LogReader(run_dir / EVENTS)]
    assert "command.finished" in types and types.count("instance.terminated") == 1


CTRL_C_MID_LOG_LINE = """
import os, signal, sys
from precip_repro import LocalExperiment, session
from precip_repro.logs import get_logger

class Stderr:  # Ctrl-C while a log line is being written, once
    def __init__(self, real):
        self.real, self.pressed = real, False
    def write(self, text):
        if not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)
        return self.real.write(text)
    def flush(self):
        self.real.flush()

exp = LocalExperiment("logging", records=sys.argv[1])
exp.provision("default")
sys.stderr = Stderr(sys.stderr)
with session.shielded("saying something"):  # the handler then says why it waits
    get_logger("script").warning("a line being written")
print("NOT INTERRUPTED", flush=True)
"""


def test_ctrl_c_in_the_middle_of_a_log_line_neither_hangs_nor_loses_its_warning(tmp_path, store):
    done = run_script(tmp_path, store, CTRL_C_MID_LOG_LINE, timeout=30)  # hung, it times out
    assert "NOT INTERRUPTED" not in done.stdout and "KeyboardInterrupt" in done.stderr
    assert "still saying something: instances cost money" in done.stderr
    assert verify(only_run(store)).status == "interrupted"


FORKS = """
import multiprocessing, os, signal, sys, time
from precip_repro import ExperimentClosed, LocalExperiment, RunLocked

def square(x):
    return x * x

with LocalExperiment("forks", records=sys.argv[1]) as exp:
    exp.provision("default", count=2)
    exp.wait()
    exp.run([], "nohup sleep {marker} >/dev/null 2>&1 &")
    with multiprocessing.get_context("fork").Pool(2) as pool:  # its exit SIGTERMs workers
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
    child = os.fork()
    if child == 0:
        refused = []
        try:
            exp.run([], "echo from the child")
        except ExperimentClosed as exc:
            refused.append(str(exc))
        try:
            exp.note("from the child")
        except RunLocked as exc:
            refused.append(str(exc))
        print("REFUSED", *refused, sep="\\n", flush=True)
        sys.exit(0)  # through the with block and atexit, as a naive child would
    os.waitpid(child, 0)
    code, out, err = exp.run([], "pgrep -c -f 'sleep {marker}'")
    print("SLEEPERS", code, out, flush=True)
"""


def test_a_forked_child_neither_deprovisions_nor_writes_into_the_parents_run(tmp_path, store):
    marker = f"{os.getpid()}.2020"
    done = run_to_end(tmp_path, store, FORKS.format(marker=marker))
    refused = done.stdout.split("REFUSED\n")[1].split("SLEEPERS")[0]
    assert "is a fork of it" in refused and "run() is refused here" in refused
    assert "cannot append to its log" in refused
    assert "SLEEPERS [0, 0] ['1\\n', '1\\n']" in done.stdout  # both instances outlived the fork
    assert not sleeping(marker)
    run_dir = only_run(store)
    verdict = verify(run_dir)
    assert (verdict.state, verdict.status) == ("intact", "ok"), verdict.reason
    events = list(LogReader(run_dir / EVENTS))
    assert [e.type for e in events].count("instance.terminated") == 2
    assert not [e for e in events if e.type == "note"]


AT_A_PROMPT = """
import os, signal, sys, time
from precip_repro import LocalExperiment
exp = LocalExperiment("at-a-prompt", records=sys.argv[1])
exp.provision("default")
exp.wait()
try:
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C on a line that takes long
    time.sleep(5)
except KeyboardInterrupt:
    print("LINE STOPPED", flush=True)
exp.run([], "echo the session goes on")
"""


def test_ctrl_c_at_an_interactive_prompt_stops_the_line_not_the_run(tmp_path, store):
    script = tmp_path / "prompt.py"
    script.write_text(AT_A_PROMPT)
    done = subprocess.run(  # -i: the prompt after the script; its stdin ends at once
        [sys.executable, "-i", str(script), str(store.root)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LINE STOPPED" in done.stdout
    verdict = verify(only_run(store))
    assert (verdict.state, verdict.status) == ("intact", "ok"), verdict.reason
    types = [e.type for e in LogReader(only_run(store) / EVENTS)]
    assert types.count("command.finished") == 1 and types.count("instance.terminated") == 1
