"""The contract of the seed's API (provision, wait, run, put, get, copy_and_run, list, the
hostnames, deprovision, open_port, note) above every cloud, and of its record."""

from __future__ import annotations

import hashlib
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs
import pytest

from precip_repro import (
    CloudError,
    CommandFailed,
    CommandTimeout,
    LogReader,
    NoInstanceMatches,
    finish_run,
    verify,
)
from precip_repro.clouds.base import Capability
from precip_repro.experiment import Experiment
from precip_repro.record.store import EVENTS
from tests.contract.conftest import CloudTarget, requires

LIST_KEYS: Final = frozenset(
    {"id", "public_address", "private_address", "tags", "image_id", "instance_type", "state",
     "slot"}
)  # fmt: skip
"""What ``list()`` documents each instance's dict to hold."""
ID_FILE: Final = "/tmp/precip-contract-id"
INDEX_FILE: Final = "/tmp/precip-contract-index"
NO_SUCH_TAG: Final = "no-such-tag"


@attrs.frozen
class Fleet:
    """Three instances of one experiment, provisioned in two calls: ``red`` (two, first)
    and ``blue`` (one), all tagged ``workers``; each holds its own id and its index in
    provisioning order in :data:`ID_FILE` and :data:`INDEX_FILE`."""

    exp: Experiment
    ids: list[str]
    red: list[str]
    blue: str


@pytest.fixture(scope="class")
def fleet(cloud_target: CloudTarget) -> Iterator[Fleet]:
    """Shared by the tests of a class, which only read the instances or add what no other
    test looks at (files of their own, a user): provisioning once keeps the suite fast."""
    exp = cloud_target.make("contract-fleet")
    try:
        exp.provision(cloud_target.image, cloud_target.instance_type, 2, ["workers", "red"])
        exp.provision(cloud_target.image, cloud_target.instance_type, 1, ["workers", "blue"])
        exp.wait(timeout=120)
        ids = [item["id"] for item in exp.list()]
        for index, instance_id in enumerate(ids):
            exp.run([instance_id], f"echo {instance_id} > {ID_FILE}; echo {index} > {INDEX_FILE}")
        yield Fleet(exp=exp, ids=ids, red=ids[:2], blue=ids[2])
    finally:
        exp.close()
        finish_run()  # the next class records a run of its own


def ssh_address(exp: Experiment, item: dict[str, Any]) -> str:
    address: str = item[f"{exp.ssh_address}_address"]
    return address


def resolve(name: str) -> str:
    """A shell command printing the IPv4 address ``name`` resolves to on the instance, or
    ``unresolved``."""
    return f"{{ getent ahostsv4 {name} || echo unresolved; }} | head -n1 | cut -d' ' -f1"


def answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def answers_with(address: str, port: int, expected: bytes) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as conn:
            return conn.recv(64) == expected
    except OSError:
        return False


def eventually(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def remote_name() -> str:
    # Unique: tests of a class share the instances.
    return f"/tmp/precip-contract-{uuid.uuid4().hex[:12]}"


class TestSeedAPI:
    def test_provision_and_wait_leave_every_instance_running_and_reachable(
        self, cloud_target, fleet
    ):
        assert [item["state"] for item in fleet.exp.list()] == ["running"] * 3
        assert {d.state for d in fleet.exp.cloud.describe(fleet.ids)} == {"running"}
        assert set(fleet.ids) <= cloud_target.live()
        codes, outs, errs = fleet.exp.run([], "echo reachable")
        assert (codes, outs, errs) == ([0] * 3, ["reachable\n"] * 3, [""] * 3)

    def test_list_gives_the_documented_keys_in_provisioning_order(self, cloud_target, fleet):
        listed = fleet.exp.list()
        assert [set(item) for item in listed] == [set(LIST_KEYS)] * 3
        # Slots are the experiment's name, the provision and the index in it.
        assert [item["slot"].split(".", 1)[1] for item in listed] == ["p1.0", "p1.1", "p2.0"]
        assert [item["image_id"] for item in listed] == [cloud_target.image] * 3
        assert [item["instance_type"] for item in listed] == [cloud_target.instance_type] * 3
        for item, colour in zip(listed, ["red", "red", "blue"], strict=True):
            assert item["tags"] == ["precip", item["id"], item["slot"], "workers", colour]
        described = {d.instance_id: d for d in fleet.exp.cloud.describe(fleet.ids)}
        assert [item["private_address"] for item in listed] == [
            described[i].private_address for i in fleet.ids
        ]
        assert listed[0]["private_address"] is not None
        # Each answers at the address list() gives (its own id, written there by the fleet).
        outs = [fleet.exp.run([item["id"]], f"cat {ID_FILE}")[1][0] for item in listed]
        assert outs == [f"{i}\n" for i in fleet.ids]

    def test_hostnames_follow_list_order_as_the_cloud_describes_them(self, fleet):
        described = {d.instance_id: d for d in fleet.exp.cloud.describe(fleet.ids)}
        private = fleet.exp.get_private_hostnames()
        public = fleet.exp.get_public_hostnames()
        assert private == [described[i].private_hostname for i in fleet.ids]
        assert public == [described[i].public_hostname for i in fleet.ids]
        assert all(private)
        assert fleet.exp.get_private_hostnames(["blue"]) == private[2:]
        assert fleet.exp.get_public_hostnames(["red"]) == public[:2]

    def test_every_instance_resolves_each_private_hostname_to_its_address(self, fleet):
        """What a cluster's set-up does: give the workers the master's private hostname."""
        names = fleet.exp.get_private_hostnames()
        _, outs, _ = fleet.exp.run([], "; ".join(resolve(name) for name in names))
        addresses = [item["private_address"] for item in fleet.exp.list()]
        assert outs == ["".join(f"{address}\n" for address in addresses)] * 3

    def test_each_instance_knows_every_other_by_the_name_it_calls_itself(self, fleet):
        """Daemons name themselves by ``hostname`` (Condor, MPI): their peers must resolve
        it to the instance's private address."""
        _, said, _ = fleet.exp.run([], "hostname")
        names = [name.strip() for name in said]
        _, outs, _ = fleet.exp.run([], "; ".join(resolve(name) for name in names))
        addresses = [item["private_address"] for item in fleet.exp.list()]
        assert outs == ["".join(f"{address}\n" for address in addresses)] * 3

    def test_tags_select_the_instances_that_have_all_of_them(self, fleet):
        def ids(tags: list[str]) -> list[str]:
            return [item["id"] for item in fleet.exp.list(tags)]

        assert ids([]) == fleet.ids
        assert ids(["workers"]) == fleet.ids
        assert ids(["red"]) == fleet.red
        assert ids(["workers", "blue"]) == [fleet.blue]
        assert ids(["red", "blue"]) == []  # every tag, not any
        assert ids([fleet.red[1]]) == [fleet.red[1]]  # each instance is tagged with its id
        assert ids([fleet.exp.list()[0]["slot"]]) == [fleet.red[0]]  # and its slot
        assert ids(["precip"]) == fleet.ids
        _, outs, _ = fleet.exp.run(["red", "workers"], f"cat {ID_FILE}")
        assert outs == [f"{i}\n" for i in fleet.red]

    def test_run_returns_codes_stdouts_stderrs_in_instance_order(self, fleet):
        result = fleet.exp.run(["workers"], f"cat {ID_FILE}; cat {INDEX_FILE} >&2")
        assert isinstance(result, tuple)
        codes, outs, errs = result
        assert codes == [0, 0, 0]
        assert outs == [f"{i}\n" for i in fleet.ids]
        assert errs == ["0\n", "1\n", "2\n"]

    def test_run_without_check_exit_code_returns_each_exit_code(self, fleet):
        codes, outs, errs = fleet.exp.run(
            ["workers"], f"echo out; echo err >&2; exit $(cat {INDEX_FILE})", check_exit_code=False
        )
        assert (codes, outs, errs) == ([0, 1, 2], ["out\n"] * 3, ["err\n"] * 3)

    def test_run_raises_command_failed_at_the_first_non_zero_exit(self, fleet):
        with pytest.raises(CommandFailed) as failed:
            fleet.exp.run(["workers"], f"echo oops >&2; exit $(cat {INDEX_FILE})")
        assert failed.value.exit_code == 1
        assert failed.value.instance == fleet.ids[1]
        assert "oops" in failed.value.stderr_tail
        # In turn, the call stops there: the third instance never ran it.
        assert failed.value.failed == {fleet.ids[1]: 1}

    def test_run_in_parallel_keeps_instance_order_and_names_every_failure(self, fleet):
        # The later an instance in the order, the sooner it answers.
        cmd = f"sleep 0.$((3 - $(cat {INDEX_FILE}))); cat {ID_FILE}"
        _, outs, _ = fleet.exp.run(["workers"], cmd, parallel=True)
        assert outs == [f"{i}\n" for i in fleet.ids]
        with pytest.raises(CommandFailed) as failed:
            fleet.exp.run(["workers"], f"exit $(cat {INDEX_FILE})", parallel=True)
        assert failed.value.instance == fleet.ids[1]
        assert failed.value.failed == {fleet.ids[1]: 1, fleet.ids[2]: 2}

    def test_run_past_its_timeout_raises_command_timeout_and_ends_the_command(self, fleet):
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as timed_out:
            fleet.exp.run([fleet.blue], "sleep 30 & sleep 31", timeout=1)
        assert time.monotonic() - started < 10
        assert timed_out.value.instance == fleet.blue
        # Ended with what it started there; the instance goes on answering.
        _, outs, _ = fleet.exp.run([fleet.blue], "pgrep -f 'sleep 3[01]' || echo none")
        assert outs == ["none\n"]

    @pytest.mark.parametrize("mode", [0o600, 0o755, 0o4750])
    def test_put_then_get_round_trips_bytes_and_mode_exactly(self, fleet, tmp_path, mode):
        # Every byte value, NUL, CR LF and invalid UTF-8, past one SFTP chunk.
        data = bytes(range(256)) * 4 + random.Random(mode).randbytes(300_000) + b"\r\n\0\xff"
        local = tmp_path / "data.bin"
        local.write_bytes(data)
        local.chmod(mode)
        remote = remote_name()
        fleet.exp.put(["workers"], local, remote)
        _, outs, _ = fleet.exp.run(
            ["workers"], f"stat -c %a {remote}; sha256sum < {remote} | cut -d' ' -f1"
        )
        expected = f"{mode:o}\n{hashlib.sha256(data).hexdigest()}\n"
        assert outs == [expected] * 3
        back = tmp_path / "back.bin"
        fleet.exp.get([fleet.blue], remote, back)
        assert back.read_bytes() == data
        assert back.stat().st_mode & 0o7777 == mode

    def test_put_and_get_an_empty_file(self, fleet, tmp_path):
        local = tmp_path / "empty"
        local.write_bytes(b"")
        remote = remote_name()
        fleet.exp.put([fleet.blue], local, remote)
        fleet.exp.get([fleet.blue], remote, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == b""

    def test_get_from_several_instances_appends_each_instance_id(self, fleet, tmp_path):
        fleet.exp.get(["workers"], ID_FILE, tmp_path / "id")
        got = sorted(path.name for path in tmp_path.iterdir())
        assert got == sorted(f"id.{i}" for i in fleet.ids)  # and no plain "id"
        for instance_id in fleet.ids:
            assert (tmp_path / f"id.{instance_id}").read_text() == f"{instance_id}\n"

    def test_get_from_one_instance_writes_the_path_as_given(self, fleet, tmp_path):
        fleet.exp.get([fleet.blue], ID_FILE, tmp_path / "id")
        assert [path.name for path in tmp_path.iterdir()] == ["id"]
        assert (tmp_path / "id").read_text() == f"{fleet.blue}\n"

    def test_copy_and_run_passes_each_argument_quoted_and_removes_the_script(self, fleet, tmp_path):
        script = tmp_path / "args.sh"
        script.write_text('#!/bin/sh\nprintf \'[%s]\\n\' "$@"\necho "$0" >&2\n')
        args = ["two words", "it's", "$HOME", "*", "a;b", "", "`id`", "x\ny", 7]
        codes, outs, errs = fleet.exp.copy_and_run(["red"], script, args)
        assert codes == [0, 0]
        assert outs == ["".join(f"[{arg}]\n" for arg in args)] * 2
        for instance_id, err in zip(fleet.red, errs, strict=True):
            where = err.strip()
            assert where.startswith("/")
            _, left, _ = fleet.exp.run([instance_id], f"test -e {where} && echo left || echo gone")
            assert left == ["gone\n"]

    def test_copy_and_run_raises_command_failed_on_a_failing_script(self, fleet, tmp_path):
        script = tmp_path / "fail.sh"
        script.write_text("#!/bin/sh\nexit 4\n")
        with pytest.raises(CommandFailed) as failed:
            fleet.exp.copy_and_run([fleet.blue], script)
        assert failed.value.exit_code == 4
        codes, _, _ = fleet.exp.copy_and_run([fleet.blue], script, check_exit_code=False)
        assert codes == [4]

    @pytest.mark.parametrize("method", ["run", "put", "get", "copy_and_run"])
    @pytest.mark.parametrize("tags", [[NO_SUCH_TAG], ["red", "blue"]])
    def test_a_call_on_instances_matching_no_instance_raises(self, fleet, tmp_path, method, tags):
        """Nothing is done anywhere: a call that silently did nothing let a run end ok."""
        touched = remote_name()  # what each call would create on an instance
        script = tmp_path / "script.sh"
        script.write_text(f"#!/bin/sh\ntouch {touched}\n")
        calls: dict[str, Callable[[], object]] = {
            "run": lambda: fleet.exp.run(tags, f"touch {touched}"),
            "put": lambda: fleet.exp.put(tags, script, touched),
            "get": lambda: fleet.exp.get(tags, ID_FILE, tmp_path / "got"),
            "copy_and_run": lambda: fleet.exp.copy_and_run(tags, script),
        }
        with pytest.raises(NoInstanceMatches) as nothing:
            calls[method]()
        assert nothing.value.tags == tags
        assert "red" in nothing.value.existing and "blue" in nothing.value.existing
        assert not (tmp_path / "got").exists()
        _, outs, _ = fleet.exp.run([], f"test -e {touched} && echo done || echo nothing")
        assert outs == ["nothing\n"] * 3

    def test_list_and_hostnames_matching_no_instance_are_empty(self, fleet):
        assert fleet.exp.list([NO_SUCH_TAG]) == []
        assert fleet.exp.get_public_hostnames([NO_SUCH_TAG]) == []
        assert fleet.exp.get_private_hostnames(["red", "blue"]) == []

    def test_run_as_another_user_logs_in_as_that_user(self, fleet):
        requires(Capability.ANY_LOGIN_USER, fleet.exp)
        # The seed's way: the user exists on the instance and holds the key.
        fleet.exp.run(
            [fleet.blue],
            "id -u contract >/dev/null 2>&1 || useradd -m -s /bin/sh contract; "
            "install -d -m 700 -o contract /home/contract/.ssh; "
            "install -m 600 -o contract /root/.ssh/authorized_keys /home/contract/.ssh/",
        )
        _, outs, _ = fleet.exp.run([fleet.blue], "id -un; pwd", user="contract")
        assert outs == ["contract\n/home/contract\n"]

    def test_open_port_lets_a_server_on_the_instances_be_reached(self, cloud_target, fleet):
        requires(Capability.OPEN_PORT, fleet.exp)
        port = 9618
        if cloud_target.allowed_ports is not None:
            assert port not in cloud_target.allowed_ports()
        fleet.exp.open_port(port, cidr="127.0.0.0/8")
        if cloud_target.allowed_ports is not None:
            assert port in cloud_target.allowed_ports()
        serve = (
            f"import socket; s = socket.create_server(('', {port})); c, _ = s.accept(); "
            "c.sendall(b'contract\\n'); c.close()"
        )
        fleet.exp.run([fleet.blue], f'setsid python3 -c "{serve}" < /dev/null > /dev/null 2>&1 &')
        (item,) = fleet.exp.list([fleet.blue])
        address = ssh_address(fleet.exp, item)
        assert eventually(lambda: answers_with(address, port, b"contract\n"))


class TestDeprovision:
    def test_deprovision_terminates_the_matching_instances_at_the_cloud(self, cloud_target):
        exp = cloud_target.make("contract-deprovision")
        try:
            exp.provision(cloud_target.image, cloud_target.instance_type, 1, ["drop"])
            exp.provision(cloud_target.image, cloud_target.instance_type, 1, ["keep"])
            exp.wait(timeout=120)
            (dropped,), (kept,) = exp.list(["drop"]), exp.list(["keep"])
            ports = {d.instance_id: d.ssh_port for d in exp.cloud.describe([dropped["id"]])}
            assert answers(ssh_address(exp, dropped), ports[dropped["id"]])

            exp.deprovision(["drop"])
            live = cloud_target.live()
            assert dropped["id"] not in live and kept["id"] in live
            ended = exp.cloud.describe([dropped["id"]])
            assert [d.state for d in ended if d.state not in ("terminated", "shutting-down")] == []
            # The machine itself is gone, not only the cloud's word for it.
            address = ssh_address(exp, dropped)
            assert eventually(lambda: not answers(address, ports[dropped["id"]]))
            assert [item["id"] for item in exp.list()] == [kept["id"]]
            with pytest.raises(NoInstanceMatches):
                exp.run(["drop"], "true")
            assert exp.run(["keep"], "echo still")[1] == ["still\n"]

            exp.deprovision()
            assert kept["id"] not in cloud_target.live()
            assert exp.list() == []
        finally:
            exp.close()
            finish_run()


class TestProvisionRefused:
    def test_provision_of_an_image_the_cloud_lacks_raises_cloud_error_leaving_nothing(
        self, cloud_target
    ):
        exp = cloud_target.make("contract-no-image")
        before = cloud_target.live()
        try:
            with pytest.raises(CloudError):
                exp.provision("ami-00000000deadbeef", cloud_target.instance_type, 2)
            assert exp.list() == []
            assert cloud_target.live() == before
        finally:
            exp.close()
            finish_run()


class TestRecordedRun:
    def test_a_run_through_the_api_verifies_intact_with_each_event_type(
        self, cloud_target, tmp_path
    ):
        exp = cloud_target.make("contract-record")
        local = tmp_path / "in.txt"
        local.write_bytes(b"recorded\n")
        try:
            exp.provision(cloud_target.image, cloud_target.instance_type, 1, ["rec"])
            exp.wait(timeout=120)
            exp.run(["rec"], "echo recorded")
            exp.put(["rec"], local, "/tmp/precip-contract-rec")
            exp.get(["rec"], "/tmp/precip-contract-rec", tmp_path / "out.txt")
            with pytest.raises(NoInstanceMatches):
                exp.run([NO_SUCH_TAG], "true")
            exp.note("contract", step=1)
            exp.deprovision()
        finally:
            exp.close()
        run_path = exp.run_path
        assert run_path is not None
        finish_run()
        verdict = verify(run_path)
        assert verdict.state == "intact", verdict.reason
        events = list(LogReader(run_path / EVENTS))
        types = {event.type for event in events}
        assert types >= {
            "run.started", "experiment.created", "call.started", "call.finished",
            "call.failed", "instance.launched", "instance.ready", "command.finished",
            "file.put", "file.got", "note", "instance.terminating", "instance.terminated",
            "run.finished",
        }  # fmt: skip
        (created,) = [e.data for e in events if e.type == "experiment.created"]
        assert created["cloud"]["kind"] == cloud_target.kind
        methods = [
            e.data["method"]
            for e in events
            if e.type == "call.started" and e.data["exp"] == created["exp"]
        ]
        assert methods == ["provision", "wait", "run", "put", "get", "run", "deprovision"]
        said = (run_path / EVENTS).read_text()
        for secret in cloud_target.credentials:
            assert secret not in said
