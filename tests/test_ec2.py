"""The seed's four clouds through boto3 against a real EC2 HTTP endpoint (moto's server),
with real sshd answering at the instances' addresses."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from typing import Any

import botocore.exceptions
import pytest

from precip_repro import (
    CloudError,
    CommandTimeout,
    EC2Experiment,
    ExperimentClosed,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalExperiment,
    UnsupportedUser,
    WaitTimeout,
    finish_run,
    verify,
)
from precip_repro.clouds import board
from precip_repro.clouds import ec2 as ec2_module
from precip_repro.clouds.base import Capability, CloudInfo, LaunchRequest
from precip_repro.clouds.ec2 import KINDS, EC2Cloud, access_key_fingerprint
from precip_repro.experiment import boot
from precip_repro.keys import load_keys
from precip_repro.record import LogReader
from precip_repro.record.store import EVENTS
from precip_repro.report import write_report
from precip_repro.timeline import timeline
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, live, make, wait_until
from tests.helpers import assert_nowhere_in, in_threads, of_type, record_script


@pytest.mark.parametrize("kind", ["ec2", "openstack", "eucalyptus", "nimbus"])
def test_each_cloud_runs_the_whole_api_and_is_recorded(kind, ec2, store, tmp_path):
    exp = make(kind, ec2, store)
    try:
        exp.provision(ec2.image, instance_type="t2.micro", count=2, tags=["workers"])
        exp.wait(timeout=60)
        listed = exp.list()
        # launched at once: which slot the cloud gives which address is its choice
        assert sorted(item["private_address"] for item in listed) == [ec2.host(4), ec2.host(5)]
        codes, outs, _ = exp.run(["workers"], "echo hello")
        assert (codes, outs) == ([0, 0], ["hello\n", "hello\n"])
        local = tmp_path / "input.txt"
        local.write_text("data\n")
        exp.put(["workers"], local, f"/tmp/precip-{kind}-{listed[0]['id']}.txt")
        exp.get([listed[0]["id"]], f"/tmp/precip-{kind}-{listed[0]['id']}.txt", tmp_path / "o")
        assert (tmp_path / "o").read_text() == "data\n"
        exp.deprovision()
        assert live(ec2) == []
    finally:
        exp.close()
    run_path = exp.run_path
    finish_run()
    assert verify(run_path).state == "intact"
    created = of_type(run_path, "experiment.created")[0]
    assert created["cloud"] == {
        "kind": kind,
        "endpoint": ec2.url,
        "region": "us-east-1",
        "access_key_fingerprint": access_key_fingerprint(ACCESS_KEY),
    }
    tags = ec2.client.describe_tags(Filters=[{"Name": "key", "Values": ["precip:slot"]}])
    assert sorted(tag["Value"] for tag in tags["Tags"]) == ["e1.p1.0", "e1.p1.1"]


@pytest.mark.parametrize("kind", ["openstack", "eucalyptus", "nimbus"])
def test_the_seeds_older_clouds_get_no_parameter_their_apis_lack(kind, ec2, store, requests_sent):
    exp = make(kind, ec2, store)
    again = make(kind, ec2, store)  # the key pair is recognised by its fingerprint alone
    exp.provision(ec2.image, count=2)
    exp.wait(timeout=60)
    exp.deprovision()
    newer = {"TagSpecifications", "IncludePublicKey"}  # AWS's since 2017 and 2021
    assert [(op, newer & set(params)) for op, params in requests_sent if newer & set(params)] == []
    assert "RunInstances" in {op for op, _ in requests_sent}
    tags = ec2.client.describe_tags(Filters=[{"Name": "key", "Values": ["precip:slot"]}])
    assert sorted(tag["Value"] for tag in tags["Tags"]) == ["e1.p1.0", "e1.p1.1"]  # CreateTags
    exp.close()
    again.close()
    finish_run()


@pytest.mark.parametrize("option", ["access_key", "secret_key"])
def test_a_credential_too_short_to_keep_out_of_the_record_is_refused_naming_it(store, option):
    credentials = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, option: "abc"}
    with pytest.raises(InvalidOption) as refused:
        EC2Experiment(
            "us-east-1", "http://127.0.0.1:1", credentials["access_key"],
            credentials["secret_key"], records=store.root,
        )  # fmt: skip
    assert f"{option}='<hidden>' is not valid" in str(refused.value)
    assert "abc" not in str(refused.value)
    assert list(store.run_dirs()) == []  # refused before a run was opened


def test_an_unknown_image_fails_with_the_cloud_code_and_starts_nothing(ec2, store):
    exp = make("ec2", ec2, store)
    with pytest.raises(CloudError) as info:
        exp.provision("ami-00000000", count=2)
    assert info.value.code == "InvalidAMIID.NotFound"
    assert info.value.request_id
    assert "ami-00000000" in str(info.value)
    assert live(ec2) == []
    failed = of_type(exp.run_path, "call.failed")[0]
    assert failed["error"]["type"] == "CloudError"
    exp.close()
    finish_run()


def test_a_failure_in_the_middle_of_provisioning_terminates_what_started(ec2, store):
    exp = make("ec2", ec2, store)
    launched: list[str] = []
    requests = itertools.count()

    def third_asks_for_no_image(params: dict[str, Any], **_: Any) -> None:
        if next(requests) == 2:  # launches overlap: those before and after it may start
            params["ImageId"] = "ami-00000000"

    def after_run_instances(parsed: dict[str, Any], **_: Any) -> None:
        if "Instances" in parsed:
            launched.append(parsed["Instances"][0]["InstanceId"])

    events = exp.cloud.client.meta.events
    events.register("before-parameter-build.ec2.RunInstances", third_asks_for_no_image)
    events.register("after-call.ec2.RunInstances", after_run_instances)
    with pytest.raises(CloudError) as info:
        exp.provision(ec2.image, count=6)
    assert info.value.code == "InvalidAMIID.NotFound"
    assert live(ec2) == []
    assert len(launched) >= 2  # the first two at least were under way
    terminated = [d["instance_id"] for d in of_type(exp.run_path, "instance.terminated")]
    assert sorted(terminated) == sorted(launched)
    exp.close()
    finish_run()


def test_launches_of_one_provision_overlap_and_keep_their_slots_in_order(ec2, store):
    exp = make("ec2", ec2, store)
    in_flight = peak = 0
    lock = threading.Lock()

    def begin(**_: Any) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.2)  # as a real cloud takes its time to answer

    def end(**_: Any) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    events = exp.cloud.client.meta.events
    events.register("before-call.ec2.RunInstances", begin)
    events.register("after-call.ec2.RunInstances", end)
    exp.provision(ec2.image, count=12, tags=["w"])
    assert peak > 1
    result = of_type(exp.run_path, "call.finished")[-1]["result"]
    listed = exp.list()
    assert [i["slot"] for i in listed] == [f"e1.p1.{n}" for n in range(12)]
    launched = {d["slot"]: d["instance_id"] for d in of_type(exp.run_path, "instance.launched")}
    assert [launched[i["slot"]] for i in listed] == [i["id"] for i in listed]
    assert result == [i["id"] for i in listed]
    exp.deprovision()
    assert live(ec2) == []
    exp.close()
    finish_run()


def test_an_instance_started_by_a_launch_whose_answer_was_lost_is_found_and_terminated(
    ec2, store, capfd
):
    exp = make("ec2", ec2, store)
    started: list[str] = []

    def answer_lost(parsed: dict[str, Any], **_: Any) -> None:
        started.append(parsed["Instances"][0]["InstanceId"])
        raise botocore.exceptions.ReadTimeoutError(endpoint_url=ec2.url)

    exp.cloud.client.meta.events.register("after-call.ec2.RunInstances", answer_lost)
    with pytest.raises(CloudError) as info:
        exp.provision(ec2.image)
    assert info.value.code == "EndpointUnreachable"
    assert len(started) == 1  # the cloud did start it
    assert live(ec2) == []
    assert "the launch failed, yet the cloud started the instance" in capfd.readouterr().err
    assert of_type(exp.run_path, "instance.launched") == []
    exp.close()
    finish_run()


def test_an_image_that_refuses_root_is_a_clear_error_at_wait_not_a_riddle_later(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.root_refusing_image)
    started = time.monotonic()
    with pytest.raises(UnsupportedUser) as info:
        exp.wait(timeout=60)
    assert time.monotonic() - started < 30  # at once, not at the timeout
    message = str(info.value)
    assert "lets root log in but runs no command for it" in message
    assert 'says \'Please login as the user "ubuntu" rather than the user "root".\'' in message
    assert "login_user='ubuntu'" in message and "disable_root: false" in message
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_a_stock_image_runs_the_seeds_root_calls_through_its_default_users_sudo(
    ec2, store, tmp_path
):
    exp = make("ec2", ec2, store, login_user="ubuntu")
    exp.provision(ec2.root_refusing_image)
    exp.wait(timeout=60)

    def run(cmd: str, **options: Any) -> str:
        return str(exp.run([], cmd, **options)[1][0])

    said = run("id -un; echo $HOME; pwd; [[ -n $BASH ]] && echo bash")  # root's login shell
    assert said == "root\n/root\n/root\nbash\n"
    assert run("id -un; pwd", user="ubuntu") == "ubuntu\n/home/ubuntu\n"
    secret = tmp_path / "secret.conf"
    secret.write_text("root only\n")
    secret.chmod(0o640)
    exp.put([], secret, "/root/secret.conf")  # as root: /root is not ubuntu's to write
    exp.put([], secret, "~/home.conf")  # ~ is root's home, as for a login as root
    assert run("stat -c '%U %a %n' /root/secret.conf /root/home.conf") == (
        "root 640 /root/secret.conf\nroot 640 /root/home.conf\n"
    )
    exp.get([], "/etc/shadow", tmp_path / "shadow")  # readable by root alone
    assert (tmp_path / "shadow").read_text() == run("cat /etc/shadow")
    run("adduser --disabled-password --gecos '' wf > /dev/null")
    assert run("id -un; pwd", user="wf") == "wf\n/home/wf\n"  # no key of its own needed
    with pytest.raises(CommandTimeout):
        exp.run([], "sleep 300 & sleep 301", timeout=1)
    assert run("pgrep -f 'sleep 30[01]' || echo none") == "none\n"  # ended as root
    (created,) = of_type(exp.run_path, "experiment.created")
    assert created["login_user"] == "ubuntu"
    shown = "\n".join(timeline(LogReader(exp.run_path / EVENTS)))
    assert "e1 created on ec2 (ec2-test), logging in as ubuntu (sudo for others)" in shown
    report = write_report(exp.run_path, tmp_path / "report.md", fmt="md")
    assert "(logging in as ubuntu)" in report.path.read_text()
    users = {e["user"] for e in of_type(exp.run_path, "command.finished")}
    assert users == {"root", "ubuntu", "wf"}
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_a_default_user_without_passwordless_sudo_is_a_clear_error_at_wait(ec2, store, monkeypatch):
    monkeypatch.setattr(boot, "LOGIN_GRACE", 2.0)
    exp = make("ec2", ec2, store, login_user="ubuntu")
    exp.provision(ec2.sudoless_image)
    started = time.monotonic()
    with pytest.raises(UnsupportedUser) as info:
        exp.wait(timeout=60)
    assert 2.0 < time.monotonic() - started < 30  # given time to settle, not the timeout
    message = str(info.value)
    assert "lets ubuntu log in, but ubuntu cannot use sudo without a password" in message
    assert "sudo:" in message  # what sudo said
    assert info.value.instance == exp.list()[0]["id"]
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_an_image_whose_sshd_refuses_the_key_is_a_clear_error_not_three_boot_tries(
    ec2, store, monkeypatch
):
    monkeypatch.setattr(boot, "LOGIN_GRACE", 2.0)
    exp = make("ec2", ec2, store)  # boot_timeout 900 s, boot_max_tries 3
    exp.provision(ec2.keyless_image)
    started = time.monotonic()
    with pytest.raises(UnsupportedUser, match=r"answers ssh but has refused the key for root"):
        exp.wait(timeout=60)
    assert time.monotonic() - started < 15
    assert len(of_type(exp.run_path, "instance.launched")) == 1  # no new one: it would refuse
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_a_login_user_the_image_lacks_is_named_with_the_usual_default_users(
    ec2, store, monkeypatch
):
    monkeypatch.setattr(boot, "LOGIN_GRACE", 2.0)
    exp = make("ec2", ec2, store, login_user="ec2-user")  # the image's user is ubuntu
    exp.provision(ec2.root_refusing_image)
    with pytest.raises(UnsupportedUser) as info:
        exp.wait(timeout=60)
    message = str(info.value)
    assert "has refused the key for ec2-user" in message
    assert "no user 'ec2-user' there, or nothing installs the key pair" in message
    assert "ubuntu, ec2-user, debian" in message and "PermitRootLogin" not in message
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_a_boot_that_never_answers_is_replaced_then_times_out_leaving_nothing(ec2, store):
    exp = make("ec2", ec2, store, boot_timeout=1.0, boot_max_tries=2, connect_timeout=0.5)
    exp.provision(ec2.silent_image)
    with pytest.raises(WaitTimeout) as info:
        exp.wait(timeout=30)
    assert "in 2 tries" in str(info.value)
    assert live(ec2) == []
    launched = of_type(exp.run_path, "instance.launched")
    assert [d["slot"] for d in launched] == ["e1.p1.0", "e1.p1.0"]  # the replacement keeps it
    assert len({d["instance_id"] for d in launched}) == 2
    assert exp.list() == []
    exp.close()
    finish_run()


def test_an_instance_the_cloud_ends_while_it_boots_is_replaced_or_reported_at_once(ec2, store):
    exp = make("ec2", ec2, store, boot_max_tries=2)
    exp.provision(ec2.image, count=2)
    first = exp.list()[0]["id"]
    ec2.client.terminate_instances(InstanceIds=[first])  # ended before it ever answered
    exp.wait(timeout=60)
    assert [i["slot"] for i in exp.list()] == ["e1.p1.0", "e1.p1.1"]
    assert first not in {i["id"] for i in exp.list()}
    assert exp.run(["e1.p1.0"], "echo replaced")[1] == ["replaced\n"]
    exp.close()
    finish_run()

    exp = make("ec2", ec2, store, boot_max_tries=1)  # said at once, with the cloud's reason
    exp.provision(ec2.image)
    (doomed,) = [i["id"] for i in exp.list()]
    ec2.client.terminate_instances(InstanceIds=[doomed])
    started = time.monotonic()
    with pytest.raises(CloudError, match=r"ended while it booted: .*[Uu]ser initiated"):
        exp.wait(timeout=60)
    assert time.monotonic() - started < 10
    assert [d["instance_id"] for d in of_type(exp.run_path, "instance.terminated")] == [doomed]
    assert exp.list() == []
    exp.close()
    finish_run()


def test_an_instance_its_cloud_forgot_keeps_no_other_running_at_deprovision(
    ec2, store, monkeypatch
):
    monkeypatch.setattr(ec2_module, "UNKNOWN_GRACE", 0.5, raising=False)
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image, count=3)
    exp.wait(timeout=60)
    forgotten, *others = [i["id"] for i in exp.list()]
    ec2.forget(forgotten)  # deleted by the cloud: every call naming it says NotFound
    exp.deprovision()  # one unknown id must not make TerminateInstances refuse the others
    assert live(ec2) == []
    terminated = of_type(exp.run_path, "instance.terminated")
    assert sorted(d["instance_id"] for d in terminated) == sorted([forgotten, *others])
    exp.close()
    finish_run()


def test_an_instance_its_cloud_deletes_while_it_boots_is_reported_not_waited_for(
    ec2, store, monkeypatch
):
    monkeypatch.setattr(ec2_module, "UNKNOWN_GRACE", 0.5, raising=False)
    exp = make("ec2", ec2, store, boot_max_tries=1)
    exp.provision(ec2.silent_image)
    (doomed,) = [i["id"] for i in exp.list()]
    threading.Timer(1.0, ec2.forget, [doomed]).start()  # listed first, then deleted
    started = time.monotonic()
    with pytest.raises(CloudError, match=f"{doomed} .*its cloud no longer lists it"):
        exp.wait(timeout=60)
    assert time.monotonic() - started < 10
    assert [d["instance_id"] for d in of_type(exp.run_path, "instance.terminated")] == [doomed]
    exp.close()
    finish_run()


def test_wait_asks_the_cloud_about_all_its_instances_at_once_not_each_alone(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image, count=8)
    asked: list[list[str]] = []
    exp.cloud.client.meta.events.register(
        "before-parameter-build.ec2.DescribeInstances",
        lambda params, **_: asked.append(params["Filters"][0]["Values"]),
    )
    started = time.monotonic()
    exp.wait(timeout=60)
    took = time.monotonic() - started
    assert sorted(asked[0]) == sorted(i["id"] for i in exp.list())
    assert len(asked) <= 2 + took / board.PERIOD  # one call for all, at most every PERIOD s
    exp.close()
    finish_run()


def test_an_instance_stopped_while_it_boots_is_replaced_not_waited_for(ec2, store):
    exp = make("ec2", ec2, store, boot_max_tries=2)
    exp.provision(ec2.image)
    (stopped,) = [i["id"] for i in exp.list()]
    ec2.client.stop_instances(InstanceIds=[stopped])  # its image shut itself down, say
    started = time.monotonic()
    exp.wait(timeout=60)
    assert time.monotonic() - started < 10  # not its boot_timeout (900 s)
    (replacement,) = [i["id"] for i in exp.list()]
    assert replacement != stopped and exp.run([], "echo up")[1] == ["up\n"]
    state = ec2.client.describe_instances(InstanceIds=[stopped])["Reservations"][0]
    assert state["Instances"][0]["State"]["Name"] == "terminated"  # its disk costs nothing
    exp.close()
    finish_run()


def test_a_command_past_its_timeout_is_ended_on_an_ec2_instance(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    with pytest.raises(CommandTimeout, match="was ended, with everything it started"):
        exp.run([], "sleep 3131 & sleep 3132", timeout=0.5)
    assert exp.run([], "pgrep -c -f 'sleep 313[12]'", check_exit_code=False)[1] == ["0\n"]
    exp.close()
    finish_run()


def test_the_two_cloud_example_records_an_ec2_and_a_local_experiment_in_one_run(ec2, store):
    cloud = make("ec2", ec2, store)
    local = LocalExperiment("local-side", records=store.root)
    try:
        cloud.provision(ec2.image, tags=["id=ec2_1"])
        local.provision("default", tags=["id=local_1"])
        cloud.wait([])
        local.wait([])
        assert cloud.run([], "echo 'Hello world EC2'")[1] == ["Hello world EC2\n"]
        assert local.run([], "echo 'Hello world local'")[1] == ["Hello world local\n"]
    finally:
        cloud.deprovision([])
        local.deprovision([])
    assert cloud.run_id == local.run_id
    run_path = cloud.run_path
    finish_run()
    kinds = [d["cloud"]["kind"] for d in of_type(run_path, "experiment.created")]
    assert kinds == ["ec2", "local"]
    assert verify(run_path).state == "intact"


def test_the_secret_key_is_nowhere_in_store_home_or_logs(ec2, store, capfd, precip_home):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    exp.run([], f"echo the key is {SECRET_KEY}")
    with pytest.raises(CloudError) as info:
        exp.provision("ami-00000000")
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in repr(exp)
    assert SECRET_KEY not in repr(exp.cloud) and ACCESS_KEY not in repr(exp.cloud)
    exp.deprovision()
    exp.close()
    run_path = exp.run_path
    finish_run()
    captured = capfd.readouterr()
    assert SECRET_KEY not in captured.out + captured.err
    for root in (run_path, precip_home):
        assert_nowhere_in(root, SECRET_KEY, ACCESS_KEY)


def test_the_hypervisor_runs_an_sshd_exactly_while_the_instance_runs(ec2):
    from precip_repro.keys import load_keys

    keys = load_keys()
    ec2.client.import_key_pair(KeyName="fixture", PublicKeyMaterial=keys.public_key.encode())
    found = ec2.client.run_instances(
        ImageId=ec2.image, MinCount=1, MaxCount=1, SubnetId=ec2.subnet, KeyName="fixture"
    )
    instance_id = found["Instances"][0]["InstanceId"]
    assert wait_until(lambda: ec2.hypervisor.running() == {instance_id})
    ec2.client.terminate_instances(InstanceIds=[instance_id])
    assert wait_until(lambda: ec2.hypervisor.running() == set())


def test_credentials_written_into_the_script_keep_it_by_hash_only(ec2, store, tmp_path):
    # The seed allows credentials in the script itself; the script is recorded — by hash only.
    script = tmp_path / "literal_keys.py"
    script.write_text(
        "from precip_repro import EC2Experiment\n"
        f"exp = EC2Experiment('us-east-1', {ec2.url!r}, {ACCESS_KEY!r}, {SECRET_KEY!r},\n"
        f"                    subnet_id={ec2.subnet!r}, ssh_address='private')\n"
        "print(exp.list())\n"
    )
    done = record_script(store, script)
    assert done.returncode == 0, done.stderr
    assert "it holds a registered secret: kept by hash only" in done.stderr
    assert f"the experiment script {script}" in done.stderr
    (run_dir,) = store.run_dirs()
    assert_nowhere_in(run_dir, SECRET_KEY, ACCESS_KEY)
    started = next(iter(LogReader(run_dir / EVENTS))).data
    assert started["script"]["withheld"].startswith("holds secret AWS_")
    assert started["script"]["sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    assert verify(run_dir).state == "intact"


def test_an_instance_stopped_behind_the_scripts_back_is_said_to_be_stopped_not_gone(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    (stopped,) = exp.list()
    ec2.client.stop_instances(InstanceIds=[stopped["id"]])  # a spot stop, the console
    assert wait_until(lambda: stopped["id"] not in ec2.hypervisor.running())
    for _ in range(2):  # asked again each time: it may be started again
        with pytest.raises(InstanceUnreachable) as info:
            exp.run([], "hostname")
        assert "the cloud says the instance is stopped" in str(info.value)
        assert "start it again at the cloud and call wait(), or provision another" in str(
            info.value
        )
    assert exp.list()[0]["state"] == "stopped"
    exp.close()
    assert live(ec2) == []
    finish_run()


def test_an_instance_started_again_at_the_cloud_is_waited_for_and_used_again(ec2, store):
    exp = make("ec2", ec2, store, boot_timeout=1)
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    (inst,) = exp.list()
    ec2.client.stop_instances(InstanceIds=[inst["id"]])
    assert wait_until(lambda: inst["id"] not in ec2.hypervisor.running())
    with pytest.raises(InstanceUnreachable, match="is stopped"):
        exp.run([], "hostname")
    # Waited for past its boot timeout, never replaced: its disk is the script's.
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="stopped since it was ready: start it again there"):
        exp.wait(timeout=2)
    assert 2 <= time.monotonic() - started < 3  # its last look at the deadline, not before
    assert [i["id"] for i in exp.list()] == [inst["id"]] and live(ec2) == []
    ec2.client.start_instances(InstanceIds=[inst["id"]])
    with pytest.raises(InstanceNotReady, match=r"started again: call wait\(\)"):
        exp.run([], "hostname")
    exp.wait(timeout=60)
    assert exp.list()[0]["state"] == "running"
    assert exp.run([], "echo again")[1] == ["again\n"]
    exp.close()
    assert live(ec2) == []
    run_id = finish_run()
    (run_dir,) = store.run_dirs()
    ready = of_type(run_dir, "instance.ready")
    assert [r["instance_id"] for r in ready] == [inst["id"]] * 2  # the record says so
    assert ready[0]["host_key"] == ready[1]["host_key"]
    assert verify(run_dir).state == "intact" and run_id


def test_an_instance_terminated_while_stopped_is_gone_for_wait(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    (inst,) = exp.list()
    ec2.client.stop_instances(InstanceIds=[inst["id"]])
    assert wait_until(lambda: inst["id"] not in ec2.hypervisor.running())
    with pytest.raises(InstanceUnreachable, match="is stopped"):
        exp.run([], "hostname")
    ec2.client.terminate_instances(InstanceIds=[inst["id"]])
    with pytest.raises(InstanceUnreachable, match="gone with all that ran on it") as info:
        exp.wait(timeout=30)
    assert info.value.instance == inst["id"]
    assert [i["id"] for i in exp.list()] == [inst["id"]] and live(ec2) == []  # not replaced
    exp.close()
    finish_run()


def test_an_instance_its_cloud_ended_behind_the_scripts_back_is_said_to_be_gone(ec2, store):
    exp = make("ec2", ec2, store)
    exp.provision(ec2.image, count=2)
    exp.wait(timeout=60)
    gone, kept = exp.list()
    ec2.client.terminate_instances(InstanceIds=[gone["id"]])  # a spot reclaim, say
    assert wait_until(lambda: gone["id"] not in ec2.hypervisor.running())
    with pytest.raises(InstanceUnreachable) as info:
        exp.run([], "hostname", parallel=True)
    assert info.value.instance == gone["id"] and info.value.slot == gone["slot"]
    assert "the cloud says the instance is terminated" in str(info.value)
    assert "provision another to go on" in str(info.value)
    assert exp.run([kept["slot"]], "echo fine")[1] == ["fine\n"]
    assert [d["state"] for d in exp.list()] == ["terminated", "running"]
    with pytest.raises(InstanceUnreachable, match="1 of 2 instances ended after"):
        exp.wait(timeout=5)
    exp.deprovision()
    assert live(ec2) == []
    exp.close()
    finish_run()


def test_an_instance_deprovisioned_while_another_thread_waits_for_it_is_not_replaced(ec2, store):
    exp = make("ec2", ec2, store, connect_timeout=0.5)
    exp.provision(ec2.silent_image)  # boots, never answers: wait() keeps trying

    def deprovision_soon() -> None:
        time.sleep(1)
        exp.deprovision()

    errors = in_threads(lambda: exp.wait(timeout=30), deprovision_soon)
    assert live(ec2) == []  # nothing launched behind the deprovision's back
    assert len(of_type(exp.run_path, "instance.launched")) == 1
    (error,) = errors
    assert isinstance(error, InstanceUnreachable), error
    assert "this experiment terminated it (deprovision, call #" in str(error)
    exp.close()
    finish_run()


def test_closing_while_a_thread_provisions_waits_for_its_launches_and_ends_them_all(ec2, store):
    exp = make("ec2", ec2, store)
    exp.cloud.client.meta.events.register(
        "before-call.ec2.RunInstances",
        lambda **_: time.sleep(0.3),  # as EC2 takes its time
    )

    def close_once_launching() -> None:
        assert wait_until(lambda: exp.slots, timeout=30)  # a first wave of launches is in
        exp.close()

    (error,) = in_threads(lambda: exp.provision(ec2.image, count=24), close_once_launching)
    assert isinstance(error, ExperimentClosed) and "is closing" in str(error), error
    assert live(ec2) == []  # what the launches under way started was ended with the rest
    launched = {d["instance_id"] for d in of_type(exp.run_path, "instance.launched")}
    ended = [d["instance_id"] for d in of_type(exp.run_path, "instance.terminated")]
    assert 0 < len(launched) < 24 and sorted(ended) == sorted(launched)  # each once
    finish_run()


def test_user_tags_the_cloud_would_refuse_are_left_off_its_tags_only(ec2, store):
    exp = make("ec2", ec2, store)
    sent: list[list[dict[str, str]]] = []
    exp.cloud.client.meta.events.register(
        "provide-client-params.ec2.RunInstances",
        lambda params, **_: sent.append(params["TagSpecifications"][0]["Tags"]),
    )
    given = ["worker", "worker", "Name", "aws:owner", "precip:run", "", "x" * 200, "x" * 300]
    exp.provision(ec2.image, tags=given)
    (tags,) = sent
    keys = [tag["Key"] for tag in tags]
    assert len(keys) == len(set(keys))  # AWS refuses a launch naming a key twice
    assert keys[4:] == ["worker", "x" * 128]  # after Name and the three precip: keys of ours
    assert len(exp.list(["worker", "aws:owner", "Name"])) == 1  # matched as given
    assert exp.list()[0]["tags"][3:] == given
    exp.close()
    finish_run()


def cloud_on(ec2: Any, kind: str = "ec2", **options: Any) -> EC2Cloud:
    return EC2Cloud(
        kind=kind, endpoint=ec2.url, region="us-east-1", access_key=ACCESS_KEY,
        secret_key=SECRET_KEY, subnet_id=ec2.subnet, **options,
    )  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_declares_every_capability(kind, ec2):
    cloud = cloud_on(ec2, kind)
    assert cloud.capabilities == {
        Capability.FLOATING_ADDRESSES,
        Capability.OPEN_PORT,
        Capability.KEY_PAIRS,
        Capability.RUN_LISTING,
        Capability.ANY_LOGIN_USER,
    }
    assert cloud.ssh_users() is None
    cloud.close()


def test_a_cloud_gives_a_floating_address_of_its_own_where_none_is_named_and_lists_its_runs(
    ec2, requests_sent
):
    cloud = cloud_on(ec2)  # no floating_addresses=: FLOATING_ADDRESSES all the same
    keys = load_keys()
    cloud.prepare(keys)
    assert cloud.key_name == keys.key_name  # KEY_PAIRS: the pair its instances start with
    request = LaunchRequest(
        run="20200101T000000Z-r-0000", exp="e1", slot="e1.p1.0", image_id=ec2.image,
        instance_type="m1.small", tags=(),
    )  # fmt: skip
    instance = cloud.launch(request)
    address = cloud.assign_public_address(instance.instance_id, run=request.run, slot="e1.p1.0")
    (allocated,) = ec2.client.describe_addresses()["Addresses"]
    assert (allocated["PublicIp"], allocated["InstanceId"]) == (address, instance.instance_id)
    (floating,) = cloud.run_addresses()
    assert (floating.address, floating.instance_id) == (address, instance.instance_id)
    assert floating.tags == {"precip:run": request.run, "precip:slot": "e1.p1.0"}
    (listed,) = cloud.run_instances()
    assert listed.instance.instance_id == instance.instance_id
    assert (listed.run, listed.slot) == (request.run, "e1.p1.0")
    assert listed.owner_alive is None and listed.started_ns is None  # tags tell neither
    cloud.terminate([instance.instance_id])
    assert ec2.client.describe_addresses()["Addresses"] == []  # released at terminate
    assert cloud.run_instances() == [] and cloud.run_addresses() == []
    assert "ReleaseAddress" in [operation for operation, _ in requests_sent]
    cloud.close()


def test_it_holds_what_was_recorded_at_its_endpoint_and_region_whatever_the_kind(ec2):
    cloud = cloud_on(ec2, "openstack")
    assert cloud.holds(cloud.info())
    assert cloud.holds(CloudInfo(kind="ec2", endpoint=ec2.url + "/", region="us-east-1"))
    assert not cloud.holds(CloudInfo(kind="ec2", endpoint=ec2.url, region="us-west-2"))
    assert not cloud.holds(CloudInfo(kind="ec2", endpoint=None, region="us-east-1"))  # AWS
    assert not cloud.holds(CloudInfo(kind="local", endpoint="127.150.3.0/24"))
    assert not cloud.holds(CloudInfo(kind="ec2", endpoint="ftp://x", region="us-east-1"))
    cloud.close()
