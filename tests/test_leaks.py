"""gc, the leak ledger: after the recording process was killed with SIGKILL, the instances
it left are found — locally and on an EC2 endpoint — and ended, in a run of gc's own; and
gc through the Cloud interface alone, against a cloud that is only that."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from precip_repro import CloudError, verify
from precip_repro.cli import main
from precip_repro.clouds.base import (
    Capability,
    CloudInfo,
    CloudInstance,
    FloatingAddress,
    LaunchRequest,
    RunInstance,
)
from precip_repro.clouds.local import live_local_instances
from precip_repro.keys import Keys
from precip_repro.leaks import Collected, Leak, collect, terminate
from precip_repro.record import LogReader, Run, RunStore
from precip_repro.record.payloads import ExperimentCreated, InstanceLaunched
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

NATIVE = """
import sys
from precip_repro import OpenStackExperiment
exp = OpenStackExperiment(cloud=sys.argv[2], name="doomed", records=sys.argv[1])
exp.provision(sys.argv[3], "m1.tiny", count=2)
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
    assert re.search(r"recorded in run (\S+) \(digest [0-9a-f]{64}, signed by SHA256:", out)
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


def test_gc_finds_and_ends_native_openstack_servers_and_floating_ips_of_a_killed_process(
    tmp_path, store, capsys, openstack
):
    run_id = killed(tmp_path, NATIVE, str(store.root), openstack.cloud, openstack.image)
    api = openstack.api
    assert len(api.compute.servers) == 2 and len(api.network.floatingips) == 2

    code, out = gc_cli(capsys, store)
    assert code == 1 and "not checked: pass --cloud" in out  # no cloud given: listed only
    code, out = gc_cli(capsys, store, "--cloud", f"openstack-native={openstack.cloud}")
    assert code == 1 and out.count(run_id) >= 2, out
    code, out = gc_cli(
        capsys, store, "--cloud", f"openstack-native={openstack.cloud}", "--terminate"
    )
    assert code == 0, out
    assert wait_until(lambda: api.compute.servers == {})
    assert api.network.floatingips == {}
    assert wait_until(lambda: openstack.hypervisor.running() == set())
    assert {n["fields"].get("run") for n in gc_run_notes(store)[:-1]} == {run_id}


def test_gc_names_an_unknown_openstack_cloud_in_one_line(store, capsys, openstack):
    code = main(["--records", str(store.root), "gc", "--cloud", "openstack-native=chameleon"])
    err = capsys.readouterr().err
    assert code != 0 and "'chameleon' is not a clouds.yaml entry" in err
    assert "Traceback" not in err


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
            exp="e1",
            name=None,
            cloud=CloudInfo(kind="ec2", endpoint=url, region="us-east-1").as_record(),
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


# --- gc through the Cloud interface ---------------------------------------------------------


class FakeCloud:
    """A cloud gc knows only through the interface: what it lists, describes, ends and
    releases is what it was given, and every call gc makes is noted."""

    kind = "fake"
    launch_workers = 1
    session_user: str | None = None
    denied_hint: str | None = None
    key_name: str | None = None

    def __init__(
        self,
        *,
        endpoint: str | None = "http://fake",
        capabilities: frozenset[Capability] = frozenset({Capability.RUN_LISTING}),
        listed: Sequence[RunInstance] = (),
        addresses: Sequence[FloatingAddress] = (),
        running: Sequence[str] = (),
        refuses: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.capabilities = capabilities
        self.listed = list(listed)
        self.addresses = list(addresses)
        self.running = set(running)
        self.refuses = refuses
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _refuse(self, operation: str) -> None:
        if self.refuses == operation:
            raise CloudError(f"{operation} refused", code="AuthFailure")

    def info(self) -> CloudInfo:
        region = "r1" if self.endpoint else None
        return CloudInfo(kind=self.kind, endpoint=self.endpoint, region=region)

    def holds(self, recorded: CloudInfo) -> bool:
        return (recorded.endpoint, recorded.region) == (self.endpoint, "r1")

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        self.calls.append(("describe", tuple(instance_ids)))
        self._refuse("describe")
        return [instance(i) for i in instance_ids if i in self.running]

    def run_instances(self) -> list[RunInstance]:
        self.calls.append(("run_instances", ()))
        assert Capability.RUN_LISTING in self.capabilities, "asked without RUN_LISTING"
        self._refuse("run_instances")
        return self.listed

    def run_addresses(self) -> list[FloatingAddress]:
        self.calls.append(("run_addresses", ()))
        assert Capability.FLOATING_ADDRESSES in self.capabilities, "asked without the capability"
        return self.addresses

    def terminate(self, instance_ids: Sequence[str]) -> None:
        self.calls.append(("terminate", tuple(instance_ids)))
        if instance_ids and instance_ids[0] == self.refuses:
            raise CloudError(f"{self.refuses} refused", code="AuthFailure")
        self.running -= set(instance_ids)

    def release_address(self, handle: str) -> None:
        self.calls.append(("release_address", (handle,)))

    # What gc never asks of a cloud.
    def prepare(self, keys: Keys) -> None:
        raise AssertionError("gc prepares no cloud")

    def launch(self, request: LaunchRequest) -> CloudInstance:
        raise AssertionError("gc launches nothing")

    def ssh_user(self, user: str) -> str:
        raise AssertionError("gc logs in nowhere")

    def ssh_users(self) -> frozenset[str] | None:
        return None

    def check_capacity(self, count: int) -> None:
        raise AssertionError("gc launches nothing")

    def assign_public_address(
        self, instance_id: str, *, run: str = "", slot: str = ""
    ) -> str | None:
        raise AssertionError("gc allocates nothing")

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        raise AssertionError("gc opens nothing")

    def close(self) -> None:
        pass


def instance(instance_id: str, state: str = "running") -> CloudInstance:
    return CloudInstance(
        instance_id=instance_id, image_id="img", instance_type="t", state=state,
        public_address=f"addr-{instance_id}",
    )  # fmt: skip


def listed(instance_id: str, run: str | None, *, owner_alive: bool | None = None) -> RunInstance:
    started = None if owner_alive is None else time.time_ns() - 5 * 10**9
    return RunInstance(
        instance=instance(instance_id), run=run, slot=f"slot-{instance_id}",
        owner_alive=owner_alive, started_ns=started,
    )  # fmt: skip


@pytest.fixture
def runs(store: RunStore) -> Iterator[tuple[str, str, str]]:
    """A finished run, an abandoned one, and one still open (being written) meanwhile."""
    with Run.open(store, name="finished") as finished:
        pass
    abandoned = Run.open(store, name="abandoned")
    abandoned.close()
    open_run = Run.open(store, name="open")
    yield finished.id, abandoned.id, open_run.id
    open_run.close()


def by_id(collected: Collected) -> dict[str, Leak]:
    return {leak.instance_id: leak for leak in collected.leaks}


def test_gc_lists_only_what_clouds_declaring_run_listing_list(store):
    silent = FakeCloud(capabilities=frozenset(), listed=[listed("i-never", "x")])
    tagging = FakeCloud(endpoint="http://other", listed=[listed("i-tagged", "x")])
    collected = collect(store, clouds=[silent, tagging])
    assert silent.calls == []  # neither run_instances nor run_addresses asked
    assert tagging.calls == [("run_instances", ())]  # no FLOATING_ADDRESSES: no addresses
    assert list(by_id(collected)) == ["i-tagged"]


def test_where_the_cloud_knows_the_launching_process_its_fate_decides(store, runs):
    finished, _, open_run = runs
    cloud = FakeCloud(
        endpoint=None,
        listed=[
            listed("i-orphan", open_run, owner_alive=False),
            listed("i-in-use", open_run, owner_alive=True),
            listed("i-elsewhere", "20200101T000000Z-elsewhere-0000", owner_alive=True),
            listed("i-done", finished, owner_alive=True),
            listed("i-unrecorded", "", owner_alive=False),
        ],
    )
    leaks = by_id(collect(store, clouds=[cloud]))
    assert sorted(leaks) == ["i-done", "i-orphan", "i-unrecorded"]
    assert all(leak.actionable and leak.cloud == "fake" for leak in leaks.values())
    assert leaks["i-orphan"].reason == "its recording process is gone"
    assert leaks["i-orphan"].age_s is not None and leaks["i-orphan"].age_s >= 5
    assert leaks["i-done"].reason == "its run is finished"
    unrecorded = leaks["i-unrecorded"]
    assert (unrecorded.run, unrecorded.run_state) == (None, "unrecorded: record=False")
    assert unrecorded.reason == "its process is gone"


def test_where_the_cloud_knows_only_the_run_the_store_decides(store, runs):
    finished, abandoned, open_run = runs
    address = FloatingAddress(
        handle="eipalloc-1", address="198.51.100.7", instance_id="i-done",
        tags={"precip:run": abandoned, "precip:slot": "s"},
    )  # fmt: skip
    cloud = FakeCloud(
        capabilities=frozenset({Capability.RUN_LISTING, Capability.FLOATING_ADDRESSES}),
        listed=[
            listed("i-done", finished),
            listed("i-open", open_run),
            listed("i-unknown", "20200101T000000Z-elsewhere-0000"),
        ],
        addresses=[address],
    )
    collected = collect(store, clouds=[cloud])
    leaks = by_id(collected)
    assert sorted(leaks) == ["eipalloc-1", "i-done", "i-unknown"]
    assert leaks["i-done"].actionable and leaks["i-done"].cloud == "fake http://fake (r1)"
    assert leaks["i-done"].reason == f"tagged with run {finished}, which is finished"
    assert not leaks["i-unknown"].actionable
    assert leaks["eipalloc-1"].kind == "address" and leaks["eipalloc-1"].actionable
    assert collected.leaks[-1].kind == "address"  # released after the instances end


def recorded_launch(store: RunStore, instance_id: str, endpoint: str) -> str:
    """An abandoned run whose experiment on the fake cloud at ``endpoint`` launched
    ``instance_id`` and never terminated it."""
    run = Run.open(store, name="left")
    run.append(
        ExperimentCreated(
            exp="e1",
            name=None,
            cloud=CloudInfo(kind="fake", endpoint=endpoint, region="r1").as_record(),
        )
    )
    run.append(
        InstanceLaunched(
            call=1, exp="e1", slot="e1.p1.0", instance_id=instance_id, image_id="img",
            instance_type="t", tags=[],
        )
    )  # fmt: skip
    run.close()
    return run.id


def test_the_record_is_checked_at_the_cloud_that_holds_it_and_its_owner_outweighs_it(store):
    left = recorded_launch(store, "i-left", "http://fake")
    recorded_launch(store, "i-gone", "http://fake")
    recorded_launch(store, "i-known", "http://fake")
    recorded_launch(store, "i-far", "http://far")
    cloud = FakeCloud(
        running=["i-left", "i-known"], listed=[listed("i-known", left, owner_alive=False)]
    )
    leaks = by_id(collect(store, clouds=[cloud]))
    assert sorted(leaks) == ["i-far", "i-known", "i-left"]  # i-gone: its cloud lists it not
    assert leaks["i-left"].reason == "launched and never terminated in its run, still running"
    assert leaks["i-left"].actionable and leaks["i-left"].address == "addr-i-left"
    assert leaks["i-known"].reason == "its recording process is gone"
    assert not leaks["i-far"].actionable and "pass --cloud http://far" in leaks["i-far"].reason
    assert leaks["i-far"].cloud == "fake http://far (r1)"


def test_a_cloud_that_cannot_be_asked_is_named_and_hides_no_other(store):
    recorded_launch(store, "i-left", "http://fake")
    refusing = FakeCloud(refuses="describe", listed=[listed("i-tagged", "x")])
    other = FakeCloud(endpoint="http://other", listed=[listed("i-other", "x")])
    collected = collect(store, clouds=[refusing, other])
    assert list(collected.unchecked) == ["fake http://fake (r1)"]
    assert "describe refused" in collected.unchecked["fake http://fake (r1)"]
    assert ("run_instances", ()) not in refusing.calls  # asked once: it failed
    leaks = by_id(collected)
    assert sorted(leaks) == ["i-left", "i-other"]
    assert not leaks["i-left"].actionable and "asking its cloud failed" in leaks["i-left"].reason


def test_terminate_ends_each_leak_at_its_cloud_and_records_what_it_did(store):
    with Run.open(store, name="finished") as done:
        pass
    finished = done.id
    address = FloatingAddress(
        handle="eipalloc-1", address="198.51.100.7", instance_id=None,
        tags={"precip:run": finished},
    )  # fmt: skip
    local = FakeCloud(endpoint=None, listed=[listed("i-local", "", owner_alive=False)])
    tagging = FakeCloud(
        endpoint="http://other",
        capabilities=frozenset({Capability.RUN_LISTING, Capability.FLOATING_ADDRESSES}),
        listed=[listed("i-kept", finished), listed("i-ended", finished)],
        addresses=[address],
        refuses="i-kept",
    )
    clouds = [local, tagging]
    collected = collect(store, clouds=clouds)
    ended = terminate(store, collected.leaks, collected.runs, clouds=clouds)
    assert ended.run is not None and list(ended.failed) == ["i-kept"]
    assert [c for c in local.calls if c[0] == "terminate"] == [("terminate", ("i-local",))]
    acted = [c for c in tagging.calls if c[0] in ("terminate", "release_address")]
    assert sorted(acted) == [
        ("release_address", ("eipalloc-1",)),
        ("terminate", ("i-ended",)),
        ("terminate", ("i-kept",)),
    ]
    notes = gc_run_notes(store)
    assert any("gc could not end i-kept" in n["text"] for n in notes)
    assert {n["fields"].get("cloud") for n in notes[:-1] if "cloud" in n["fields"]} == {
        "fake",
        "fake http://other (r1)",
    }


def test_gc_of_an_s3_store_never_ends_instances_of_runs_it_cannot_see_finished(
    s3, tmp_path, monkeypatch
):
    """A colleague's run still recording, or finished and not pushed, is on their machine
    only: its instances are listed, never touched; a run finished here is gc's to judge."""
    from precip_repro import open_store

    monkeypatch.setenv("PRECIP_CACHE", str(tmp_path / "alice"))
    alices = open_store(s3.url)
    recording = Run.open(alices.local, name="still-recording")
    with Run.open(alices.local, name="not-pushed") as unpushed:
        pass
    monkeypatch.setenv("PRECIP_CACHE", str(tmp_path / "bob"))
    bobs = open_store(s3.url)
    with Run.open(bobs.local, name="bobs") as finished:
        pass
    bobs.push(finished.path)
    cloud = FakeCloud(
        listed=[listed("i-recording", recording.id), listed("i-unpushed", unpushed.id),
                listed("i-bobs", finished.id)],
    )  # fmt: skip
    leaks = by_id(collect(bobs, clouds=[cloud]))
    assert not leaks["i-recording"].actionable and not leaks["i-unpushed"].actionable
    assert "not touched" in leaks["i-recording"].reason
    assert leaks["i-bobs"].actionable
    recording.close()
