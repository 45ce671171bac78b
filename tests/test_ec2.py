"""The seed's four clouds through boto3 against a real EC2 HTTP endpoint (moto's server),
with real sshd answering at the instances' addresses."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from precip_repro import (
    CloudError,
    CommandTimeout,
    EC2Experiment,
    EucalyptusExperiment,
    ExperimentClosed,
    InstanceNotReady,
    InstanceUnreachable,
    InvalidOption,
    LocalExperiment,
    NimbusExperiment,
    OpenStackExperiment,
    UnsupportedUser,
    WaitTimeout,
    finish_run,
    verify,
)
from precip_repro.clouds import board
from precip_repro.clouds import ec2 as ec2_module
from precip_repro.clouds.ec2 import access_key_fingerprint, parse_endpoint, parse_region
from precip_repro.experiment import boot
from precip_repro.record import LogReader
from precip_repro.record.store import EVENTS
from precip_repro.report import write_report
from precip_repro.timeline import timeline
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, wait_until
from tests.helpers import assert_nowhere_in, in_threads, original_precip_home, record_script


def of_type(run_path: Path, kind: str) -> list[dict[str, Any]]:
    return [event.data for event in LogReader(run_path / EVENTS) if event.type == kind]


def live(ec2: Any) -> list[str]:
    found = ec2.client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]


def make(kind: str, ec2: Any, store: Any, **options: Any) -> Any:
    options.setdefault("subnet_id", ec2.subnet)
    options.setdefault("ssh_address", "private")
    options.setdefault("records", store.root)
    if kind == "ec2":
        return EC2Experiment("us-east-1", ec2.url, ACCESS_KEY, SECRET_KEY, "ec2-test", **options)
    cls = {
        "openstack": OpenStackExperiment,
        "eucalyptus": EucalyptusExperiment,
        "nimbus": NimbusExperiment,
    }[kind]
    return cls(ec2.url, ACCESS_KEY, SECRET_KEY, f"{kind}-test", **options)


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


def test_cloud_set_up_is_idempotent_and_opens_ports(ec2, store):
    first = make("ec2", ec2, store)
    second = make("openstack", ec2, store)
    pairs = ec2.client.describe_key_pairs()["KeyPairs"]
    assert [pair["KeyName"] for pair in pairs] == [first.keys.key_name]
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["precip"]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    ports = {(p.get("FromPort"), p["IpProtocol"]) for p in groups[0]["IpPermissions"]}
    assert (22, "tcp") in ports and (None, "-1") in ports
    first.open_port(9618, cidr="127.0.0.0/8")
    group = ec2.client.describe_security_groups(GroupIds=[groups[0]["GroupId"]])
    assert 9618 in {p.get("FromPort") for p in group["SecurityGroups"][0]["IpPermissions"]}
    assert of_type(first.run_path, "call.started")[-1]["method"] == "open_port"
    first.close()
    second.close()
    finish_run()


def test_the_original_precips_rsa_key_is_imported_recognised_and_logs_in(
    ec2, store, tmp_path, monkeypatch
):
    home = tmp_path / "old-home"
    original_precip_home(home)
    monkeypatch.setenv("PRECIP_HOME", str(home))
    exp = make("ec2", ec2, store)
    (pair,) = ec2.client.describe_key_pairs()["KeyPairs"]
    assert pair["KeyName"] == "precip_0123456789abcdef0123456789abcdef"
    again = make("ec2", ec2, store)  # the pair exists: recognised as this key, not refused
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    assert exp.run([], "echo in")[1] == ["in\n"]
    exp.close()
    again.close()
    finish_run()


def test_a_security_group_that_does_not_exist_is_named_before_anything_starts(ec2, store):
    with pytest.raises(CloudError, match=r"security group\(s\) 'experiment-sg' not found") as e:
        make("ec2", ec2, store, security_groups=["experiment-sg"])
    assert e.value.code == "InvalidGroup.NotFound"
    assert live(ec2) == []


def test_own_security_groups_that_let_no_ssh_in_are_warned_about(ec2, store, capsys):
    closed = ec2.client.create_security_group(
        GroupName="closed", Description="nothing in", VpcId=ec2.vpc
    )["GroupId"]
    exp = make("ec2", ec2, store, security_groups=["closed"])
    assert "none of the security groups lets ssh (tcp/22) in" in capsys.readouterr().err
    ec2.client.authorize_security_group_ingress(
        GroupId=closed,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 1023,
                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )  # fmt: skip
    again = make("ec2", ec2, store, security_groups=[closed])
    assert "lets ssh" not in capsys.readouterr().err
    exp.provision(ec2.image)  # a warning, not a refusal: the instances use that group
    (instance,) = ec2.client.describe_instances()["Reservations"][0]["Instances"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [closed]
    exp.close()
    again.close()
    finish_run()


def test_a_key_pair_with_another_key_is_a_clear_error(ec2, store):
    from precip_repro.keys import load_keys

    name = load_keys().key_name
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCkh0M1H5yJtG0e2zG0q7yQ2l1h5mJv5m0u6h6y3o7D x"
    ec2.client.import_key_pair(KeyName=name, PublicKeyMaterial=other.encode())
    with pytest.raises(CloudError, match=f"key pair '{name}' on .* holds another key"):
        make("ec2", ec2, store)
    finish_run()


@pytest.mark.parametrize("kind", ["ec2", "openstack"])  # by public key / by fingerprint
def test_a_key_name_given_must_hold_the_key_precip_logs_in_with(kind, ec2, store):
    from precip_repro.keys import load_keys

    keys = load_keys()
    ec2.client.create_key_pair(KeyName="made-by-the-cloud")
    with pytest.raises(CloudError, match=r"'made-by-the-cloud' on .* holds another key") as e:
        make(kind, ec2, store, key_name="made-by-the-cloud")
    assert keys.fingerprint in str(e.value) and e.value.code == "KeyPairMismatch"
    with pytest.raises(CloudError, match="key pair 'missing' not found on") as e:
        make(kind, ec2, store, key_name="missing")
    assert e.value.code == "InvalidKeyPair.NotFound"
    assert live(ec2) == []  # refused before anything started
    ec2.client.import_key_pair(KeyName="mine", PublicKeyMaterial=keys.public_key.encode())
    exp = make(kind, ec2, store, key_name="mine")  # a pair of the user's holding this key
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    exp.close()
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


def test_an_unreachable_endpoint_is_a_cloud_error_saying_so(store):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CloudError) as info:
        EC2Experiment(
            "us-east-1", f"http://127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, records=store.root
        )
    assert info.value.code == "EndpointUnreachable"
    assert f"http://127.0.0.1:{port}" in str(info.value)
    assert "check the endpoint URL" in str(info.value)
    assert SECRET_KEY not in str(info.value)
    finish_run()


class PageInTheCloudsPlace:
    """A real HTTP endpoint on 127.0.0.1 in front of moto: its first ``pages`` answers are
    an error page (``status``, ``page``) — what a proxy or a crashed server sends — and the
    rest are moto's own."""

    def __init__(self, upstream: str, *, pages: int, status: int, page: bytes) -> None:
        self.pages = pages
        self.sent_pages = 0
        self.forwarded = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if outer.sent_pages < outer.pages:
                    outer.sent_pages += 1
                    self._answer(status, {"Content-Type": "text/html"}, page)
                    return
                outer.forwarded += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(upstream, data=body, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._answer(answer.status, dict(answer.headers), answer.read())
                except urllib.error.HTTPError as refused:
                    self._answer(refused.code, dict(refused.headers), refused.read())

            def _answer(self, code: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(code)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_server_error_page_in_the_clouds_place_is_retried_as_the_error_it_is(ec2, store):
    # botocore parses a 5xx page that does not start with "<html>" as XML and gives up.
    page = b"<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Oops</h1>\n"
    proxy = PageInTheCloudsPlace(ec2.url, pages=2, status=500, page=page)
    try:
        exp = EC2Experiment(
            "us-east-1", proxy.url, ACCESS_KEY, SECRET_KEY, "paged", subnet_id=ec2.subnet,
            ssh_address="private", records=store.root,
        )  # fmt: skip
        assert proxy.sent_pages == 2 and proxy.forwarded >= 1
        assert [p["KeyName"] for p in ec2.client.describe_key_pairs()["KeyPairs"]] == [
            exp.keys.key_name
        ]
        exp.close()
    finally:
        proxy.close()
    finish_run()


@pytest.mark.parametrize(
    "status, page, code",
    [
        (403, b"<!doctype html>\n<title>No</title>\n<p>Proxy says no\n", "UnparseableResponse"),
        (407, b"<!DOCTYPE html>\n<html><body>Proxy says no</body></html>\n", "407"),  # XML
    ],
)
def test_a_page_in_the_clouds_place_is_a_cloud_error_saying_so(ec2, store, status, page, code):
    proxy = PageInTheCloudsPlace(ec2.url, pages=10**6, status=status, page=page)
    try:
        with pytest.raises(CloudError) as info:
            EC2Experiment("us-east-1", proxy.url, ACCESS_KEY, SECRET_KEY, records=store.root)
    finally:
        proxy.close()
    assert info.value.code == code
    message = str(info.value)
    assert "DescribeKeyPairs on ec2 at " + proxy.url in message
    if code == "UnparseableResponse":
        assert "not an EC2 API response" in message and "Proxy says no" in message
    else:
        assert f"HTTP {status}, and the answer holds no EC2 error" in message
    assert "any proxy between this machine and the cloud" in message
    assert SECRET_KEY not in message
    finish_run()


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


def test_an_instance_without_a_public_address_gets_a_floating_one(ec2, store):
    exp = make("ec2", ec2, store, ssh_address="public", floating_addresses=[ec2.floating])
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    assert exp.list()[0]["public_address"] == ec2.floating
    assert exp.run([], "echo via the floating address")[0] == [0]
    assert of_type(exp.run_path, "instance.ready")[0]["public_address"] == ec2.floating
    exp.deprovision()
    assert ec2.client.describe_addresses()["Addresses"] == []  # released with the instance
    exp.close()
    finish_run()


def test_a_floating_address_that_cannot_be_associated_is_released_at_once(ec2, store):
    exp = make("ec2", ec2, store, ssh_address="public", floating_addresses=[ec2.floating])

    def refused(**_: Any) -> None:
        error = {"Error": {"Code": "Gateway.NotAttached", "Message": "no internet gateway"}}
        raise botocore.exceptions.ClientError(error, "AssociateAddress")

    exp.cloud.client.meta.events.register("before-call.ec2.AssociateAddress", refused)
    exp.provision(ec2.image)
    with pytest.raises(CloudError) as info:
        exp.wait(timeout=60)
    assert info.value.code == "Gateway.NotAttached"
    assert ec2.client.describe_addresses()["Addresses"] == []
    exp.close()
    assert live(ec2) == []
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


@pytest.mark.parametrize(
    "endpoint, url",
    [
        ("ec2.us-west-2.amazonaws.com", "https://ec2.us-west-2.amazonaws.com"),
        ("http://cloud.example:8773/services/Cloud", "http://cloud.example:8773/services/Cloud"),
        ("http://euca:8773/services/Eucalyptus/", "http://euca:8773/services/Eucalyptus"),
        ("https://nimbus.example:8444", "https://nimbus.example:8444"),
    ],
)
def test_the_seed_endpoint_forms_become_urls(endpoint, url):
    assert parse_endpoint(endpoint) == url


def test_an_availability_zone_stands_for_its_region():
    assert parse_region("us-west-2c") == ("us-west-2", "us-west-2c")
    assert parse_region("us-east-1") == ("us-east-1", None)
    assert parse_region("eu-central-1a") == ("eu-central-1", "eu-central-1a")


def test_a_private_clouds_own_region_name_is_taken_and_a_malformed_one_refused():
    assert parse_region("RegionOne") == ("RegionOne", None)
    for bad in ("", "us west", None, "-east"):
        with pytest.raises(InvalidOption, match="a region such as us-east-1"):
            parse_region(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="endpoint=5"):
        parse_endpoint(5)  # type: ignore[arg-type]


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
