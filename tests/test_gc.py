"""gc, the leak ledger: after the recording process was killed with SIGKILL, the instances
it left are found — locally and on an EC2 endpoint — and ended, in a run of gc's own."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from precip_repro import verify
from precip_repro.cli import main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import LogReader, Run, RunStore
from precip_repro.record.payloads import CloudInfo, ExperimentCreated, InstanceLaunched
from precip_repro.record.store import EVENTS
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, wait_until

LOCAL = """
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("doomed", records=sys.argv[1])
exp.provision("default", count=2)
exp.wait()
print(exp.run_id, flush=True)
import time; time.sleep(60)
"""

EC2 = """
import sys
from precip_repro import EC2Experiment
exp = EC2Experiment("us-east-1", sys.argv[2], sys.argv[3], sys.argv[4], "doomed",
                    records=sys.argv[1], subnet_id=sys.argv[5], ssh_address="private")
exp.provision(sys.argv[6], count=2)
exp.wait(timeout=60)
print(exp.run_id, flush=True)
import time; time.sleep(60)
"""


def killed(tmp_path: Path, code: str, *args: str) -> str:
    script = tmp_path / "doomed.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, "the experiment did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return run_id


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gc_cli(capsys: Any, store: RunStore, *args: str) -> tuple[int, str]:
    code = main(["--records", str(store.root), "gc", *args])
    return code, capsys.readouterr().out


def gc_run_notes(store: RunStore) -> list[dict[str, Any]]:
    runs = [p for p in store.run_dirs() if "-gc-" in p.name]
    assert len(runs) == 1
    assert verify(runs[0]).state == "intact"
    return [e.data for e in LogReader(runs[0] / EVENTS) if e.type == "note"]


def test_gc_finds_and_ends_local_instances_of_a_killed_process(tmp_path, store, capsys):
    run_id = killed(tmp_path, LOCAL, str(store.root))
    leaked = [s for s in live_local_instances() if s.run == run_id]
    assert len(leaked) == 2
    code, out = gc_cli(capsys, store)
    assert code == 1
    assert out.count(run_id) == 2 and "recording process is gone" in out
    assert all(state.slot in out and state.address in out for state in leaked)

    before = (store.root / run_id / EVENTS).read_bytes()
    code, out = gc_cli(capsys, store, "--terminate")
    assert code == 0 and "terminated 2 instance(s)" in out
    assert [s for s in live_local_instances() if s.run == run_id] == []
    for state in leaked:
        assert state.init_pid is not None
        assert not running(state.init_pid)
    assert (store.root / run_id / EVENTS).read_bytes() == before  # never appended to
    notes = gc_run_notes(store)
    digest = verify(store.root / run_id).digest
    assert {n["fields"].get("run") for n in notes[:-1]} == {run_id}
    assert notes[-1]["fields"]["runs"] == [{"run": run_id, "digest": digest}]
    assert gc_cli(capsys, store)[0] == 0


def stale_state(instance_id: str, pids: list[int], *, starts: bool) -> None:
    """A local instance's state left behind by a reboot: its pids name other processes now."""
    from precip_repro.clouds.local import start_time
    from precip_repro.keys import precip_home

    state = {
        "instance_id": instance_id, "cloud_id": "c0ffee00", "run": "", "exp": "e1",
        "slot": "e1.p1.0", "address": "127.200.0.2", "port": 22, "image_id": "default",
        "instance_type": "m1.small", "image_digest": None, "mode": "user",
        "launcher_pid": pids[0], "init_pid": pids[1], "sshd_pid": pids[2],
        "started_ns": 1, "owner_pid": 0,
    }  # fmt: skip
    if starts:  # as recorded before the reboot: not when these processes started
        for name, pid in zip(("launcher", "init", "sshd"), pids, strict=True):
            state[f"{name}_start"] = (start_time(pid) or 0) - 1
    directory = precip_home() / "local" / "instances" / instance_id
    directory.mkdir(parents=True)
    (directory / "state.json").write_text(json.dumps(state))


def test_gc_never_takes_a_reused_pid_for_an_instance_nor_kills_it(store, capsys):
    others = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]  # the user's own
    try:
        stale_state("i-0000000000000001", [p.pid for p in others], starts=True)
        stale_state("i-0000000000000002", [p.pid for p in others], starts=False)  # older
        assert list(live_local_instances()) == []
        assert gc_cli(capsys, store)[0] == 0  # no leak
        gc_cli(capsys, store, "--terminate")
        assert all(running(p.pid) for p in others)
    finally:
        for proc in others:
            proc.kill()
            proc.wait()


def test_gc_ends_unrecorded_local_instances_of_a_killed_process_saying_they_were(
    tmp_path, store, capsys
):
    killed(tmp_path, LOCAL.replace("records=sys.argv[1]", "record=False").replace(
        "print(exp.run_id", "print(exp.list()[0]['id']"))  # fmt: skip
    code, out = gc_cli(capsys, store)
    assert code == 1
    assert "its process is gone (run unrecorded: record=False)" in out
    assert "terminated 2 instance(s)" in gc_cli(capsys, store, "--terminate")[1]
    assert gc_cli(capsys, store)[0] == 0


def test_gc_finds_and_ends_ec2_instances_of_a_killed_process(tmp_path, store, capsys, ec2):
    args = [str(store.root), ec2.url, ACCESS_KEY, SECRET_KEY, ec2.subnet, ec2.image]
    run_id = killed(tmp_path, EC2, *args)

    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code, out = gc_cli(capsys, store)
        assert code == 1 and "not checked: pass --cloud" in out  # no cloud given: listed only
        code, out = gc_cli(capsys, store, "--cloud", ec2.url)
        assert code == 1 and out.count(run_id) == 2 and ec2.host("") in out
        code, out = gc_cli(capsys, store, "--cloud", f"ec2={ec2.url}", "--terminate")
        assert code == 0, out
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    states = ec2.client.describe_instances()["Reservations"]
    assert {i["State"]["Name"] for r in states for i in r["Instances"]} == {"terminated"}
    assert wait_until(lambda: ec2.hypervisor.running() == set())
    assert {n["fields"].get("run") for n in gc_run_notes(store)[:-1]} == {run_id}


def test_an_instance_its_cloud_forgot_is_no_leak_and_hides_none(tmp_path, store, capsys, ec2):
    args = [str(store.root), ec2.url, ACCESS_KEY, SECRET_KEY, ec2.subnet, ec2.image]
    run_id = killed(tmp_path, EC2, *args)
    gone, left = [d["instance_id"] for d in instances_launched(store, run_id)]
    ec2.forget(gone)  # ended by hand and purged, as AWS does an hour after termination

    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code, out = gc_cli(capsys, store, "--cloud", ec2.url)
        assert code == 1, out  # the other still leaks; the cloud was checked
        assert left in out and gone not in out and "not checked" not in out
        code, out = gc_cli(capsys, store, "--cloud", ec2.url, "--terminate")
        assert code == 0, out
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert live_on(ec2) == []


def test_gc_asks_an_older_cloud_for_no_tagged_addresses_it_cannot_have(
    store, capsys, ec2, requests_sent
):
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code, out = gc_cli(capsys, store, "--cloud", f"openstack={ec2.url}")
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert code == 0, out
    assert [op for op, _ in requests_sent] == ["DescribeInstances"]


def instances_launched(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    events = LogReader(store.root / run_id / EVENTS)
    return [e.data for e in events if e.type == "instance.launched"]


def live_on(ec2: Any) -> list[str]:
    found = ec2.client.describe_instances()["Reservations"]
    return [
        i["InstanceId"] for r in found for i in r["Instances"] if i["State"]["Name"] != "terminated"
    ]


EC2_FLOATING = """
import sys
from precip_repro import EC2Experiment
exp = EC2Experiment("us-east-1", sys.argv[2], sys.argv[3], sys.argv[4], "doomed",
                    records=sys.argv[1], subnet_id=sys.argv[5], floating_addresses=[sys.argv[7]])
exp.provision(sys.argv[6])
exp.wait(timeout=60)
print(exp.run_id, flush=True)
import time; time.sleep(60)
"""


def test_gc_releases_the_floating_address_of_a_killed_process_after_its_instance(
    tmp_path, store, capsys, ec2
):
    args = [str(store.root), ec2.url, ACCESS_KEY, SECRET_KEY, ec2.subnet, ec2.image, ec2.floating]
    run_id = killed(tmp_path, EC2_FLOATING, *args)
    (allocated,) = ec2.client.describe_addresses()["Addresses"]
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code, out = gc_cli(capsys, store, "--cloud", ec2.url)
        assert code == 1
        assert allocated["AllocationId"] in out and ec2.floating in out
        assert f"floating address tagged with run {run_id}, which is abandoned, still " in out
        assert "1 instance(s) and 1 floating address(es) leak" in out
        code, out = gc_cli(capsys, store, "--cloud", ec2.url, "--terminate")
        assert code == 0, out
        assert "terminated 1 instance(s) and released 1 floating address(es)" in out
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert ec2.client.describe_addresses()["Addresses"] == []
    released = [n["fields"] for n in gc_run_notes(store) if "allocation" in n["fields"]]
    assert [(n["run"], n["address"]) for n in released] == [(run_id, ec2.floating)]


def test_gc_ends_tagged_instances_of_finished_runs_and_leaves_unknown_ones(store, capsys, ec2):
    from precip_repro.record import Run

    with Run.open(store, name="finished") as finished:
        pass
    for run_id in (finished.id, "20200101T000000Z-elsewhere-0000"):
        ec2.client.run_instances(
            ImageId=ec2.image,
            MinCount=1,
            MaxCount=1,
            SubnetId=ec2.subnet,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "precip:run", "Value": run_id}]}
            ],
        )
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code, out = gc_cli(capsys, store, "--cloud", ec2.url, "--terminate")
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert code == 1  # the unknown run's instance is left alone
    assert "unknown to this store: not touched" in out and "terminated 1 instance(s)" in out
    found = ec2.client.describe_instances()["Reservations"]
    states = {
        tag["Value"]: i["State"]["Name"]
        for r in found
        for i in r["Instances"]
        for tag in i.get("Tags", [])
        if tag["Key"] == "precip:run"
    }
    assert states == {finished.id: "terminated", "20200101T000000Z-elsewhere-0000": "running"}


def test_gc_without_credentials_for_a_cloud_is_a_usage_error(store, capsys):
    os.environ.pop("AWS_ACCESS_KEY_ID", None)
    os.environ.pop("EC2_ACCESS_KEY", None)
    code = main(["--records", str(store.root), "gc", "--cloud", "http://127.0.0.1:1"])
    assert code == 2
    assert "AWS_ACCESS_KEY_ID" in capsys.readouterr().err


class _RefusesCredentials(http.server.BaseHTTPRequestHandler):
    """An EC2 endpoint that refuses every request, as one given the wrong keys does; given
    an ``upstream``, it forwards every request but those holding all of ``refused``."""

    upstream: str | None = None
    refused: tuple[bytes, ...] = ()

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.upstream is not None and not all(part in request for part in self.refused):
            forwarded = urllib.request.Request(
                self.upstream + self.path, data=request, headers=dict(self.headers)
            )
            with urllib.request.urlopen(forwarded) as answer:
                status, body = answer.status, answer.read()
        else:
            status, body = (
                401,
                (
                    b"<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able "
                    b"to validate the provided access credentials</Message></Error></Errors>"
                    b"<RequestID>req-gc-1</RequestID></Response>"
                ),
            )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_cloud_that_cannot_be_checked_hides_no_other_leak_and_is_named(tmp_path, store, capsys):
    server = serve(_RefusesCredentials)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    abandoned = Run.open(store, name="left-on-ec2")
    abandoned.append(
        ExperimentCreated(
            exp="e1", name=None, cloud=CloudInfo(kind="ec2", endpoint=url, region="us-east-1")
        )
    )
    abandoned.append(
        InstanceLaunched(
            call=1, exp="e1", slot="e1.p1.0", instance_id="i-0123456789abcdef0",
            image_id="ami-12345678", instance_type="m1.small", tags=["precip"],
        )
    )  # fmt: skip
    abandoned.close()
    local_run = killed(tmp_path, LOCAL, str(store.root))
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code = main(["--records", str(store.root), "gc", "--cloud", url, "--terminate"])
        out, err = capsys.readouterr()
        assert code == 1, out + err
        assert f"could not check ec2 {url} (us-east-1)" in err and "AuthFailure" in err
        assert "i-0123456789abcdef0" in out and "asking its cloud failed" in out
        assert "terminated 2 instance(s)" in out  # the local leaks were still found and ended
        assert [s for s in live_local_instances() if s.run == local_run] == []
        empty = RunStore(tmp_path / "empty")
        code = main(["--records", str(empty.root), "gc", "--cloud", url])
        out, err = capsys.readouterr()
        assert code == 3 and "not every cloud could be checked" in out
        assert "nothing leaks" not in out
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        server.shutdown()


def test_an_instance_its_cloud_refuses_to_end_is_reported_and_the_others_still_end(
    store, capsys, ec2
):
    with Run.open(store, name="finished") as finished:
        pass
    launched = ec2.client.run_instances(
        ImageId=ec2.image, MinCount=2, MaxCount=2, SubnetId=ec2.subnet,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "precip:run", "Value": finished.id}]}
        ],
    )  # fmt: skip
    kept, ended = sorted(i["InstanceId"] for i in launched["Instances"])

    class RefusesOne(_RefusesCredentials):
        upstream = ec2.url
        refused = (b"Action=TerminateInstances", kept.encode())

    server = serve(RefusesOne)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code = main(["--records", str(store.root), "gc", "--cloud", url, "--terminate"])
        out, err = capsys.readouterr()
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        server.shutdown()
    assert code == 1, out + err
    assert f"could not end {kept}" in err and "AuthFailure" in err
    assert "terminated 1 instance(s)" in out and "1 instance(s) could not be ended" in out
    found = ec2.client.describe_instances(InstanceIds=[kept, ended])["Reservations"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in found for i in r["Instances"]}
    assert states == {kept: "running", ended: "terminated"}
    assert any(f"gc could not end {kept}" in n["text"] for n in gc_run_notes(store))
