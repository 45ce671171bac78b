"""Native OpenStack (``OpenStackExperiment(cloud=…)``, kind ``openstack-native``) through the
real openstacksdk over HTTP, against the test API endpoint (tests/openstack_api.py) whose
hypervisor boots each server as a real sshd machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from precip_repro import CloudError, OpenStackExperiment, finish_run, verify
from precip_repro.cli import main
from precip_repro.clouds.openstack import KIND, OpenStackCloud
from precip_repro.record import LogReader, RunStore
from precip_repro.record.store import EVENTS
from tests.openstack_api import APP_CREDENTIAL_SECRET, PASSWORD, OpenStackAPI
from tests.openstack_cloud import OpenStackEndpoint, openrc_environment, write_clouds_yaml


def events(store: RunStore, kind: str) -> list[dict[str, Any]]:
    (run_dir,) = list(store.run_dirs())
    return [e.data for e in LogReader(run_dir / EVENTS) if e.type == kind]


def nowhere_in(root: Path, secret: str) -> bool:
    return subprocess.run(["grep", "-r", "-q", secret, str(root)], check=False).returncode == 1


def created_servers(api: OpenStackAPI) -> list[dict[str, Any]]:
    return [r.body for r in api.log_of("POST", "/compute/v2.1/servers")]


def test_a_clouds_yaml_entry_provisions_runs_and_deprovisions_servers(openstack, store):
    exp = OpenStackExperiment(cloud=openstack.cloud, records=store.root)
    exp.provision(openstack.image, "m1.small", count=2, tags=["worker"])
    exp.wait()
    codes, outs, _ = exp.run(["worker"], "hostname; id -u")
    assert codes == [0, 0] and all(out.endswith("\n0\n") for out in outs)
    public = exp.get_public_hostnames()
    assert all(
        str(address).startswith(openstack.api.network.prefix + ".100.") for address in public
    )
    exp.deprovision()
    finish_run()
    assert openstack.api.compute.servers == {} and openstack.api.network.floatingips == {}
    assert openstack.hypervisor.running() == set()
    (created,) = events(store, "experiment.created")
    assert created["cloud"] == {
        "kind": KIND, "endpoint": openstack.auth_url, "region": "RegionOne",
        "project": "precip-project",
        "access_key_fingerprint": created["cloud"]["access_key_fingerprint"],
    }  # fmt: skip
    assert created["cloud"]["access_key_fingerprint"].startswith("sha256:")
    assert nowhere_in(store.root, PASSWORD)
    (run_dir,) = list(store.run_dirs())
    assert verify(run_dir).status == "ok"


def test_a_server_is_created_with_metadata_key_pair_group_and_the_projects_network(
    openstack, store
):
    exp = OpenStackExperiment(cloud=openstack.cloud, records=store.root, ssh_address="private")
    exp.provision(openstack.image, "m1.tiny", tags=["master", "bad/tag"])
    exp.wait()
    (body,) = created_servers(openstack.api)
    server = body["server"]
    (private,) = [n["id"] for n in openstack.api.network.tenant_networks()]
    assert server["networks"] == [{"uuid": private}]
    assert server["key_name"] == exp.cloud.key_name and server["security_groups"] == [
        {"name": "precip"}
    ]
    assert server["metadata"] == {
        "precip:run": exp.run_id, "precip:exp": "e1", "precip:slot": "e1.p1.0", "master": "1",
    }  # fmt: skip
    assert server["imageRef"] == openstack.image_id and server["flavorRef"] == "1"
    # openstacksdk negotiated a microversion with the endpoint and said so on every call
    (logged,) = openstack.api.log_of("POST", "/compute/v2.1/servers")
    assert logged.headers["Openstack-Api-Version"].startswith("compute 2.")
    assert openstack.api.log_of("POST", "/network/v2.0/floatingips") == []  # private: none
    exp.deprovision()
    finish_run()


def test_the_set_up_is_idempotent_and_open_port_adds_a_rule(openstack, store):
    first = OpenStackExperiment(cloud=openstack.cloud, records=store.root)
    second = OpenStackExperiment(cloud=openstack.cloud, records=store.root)
    api = openstack.api
    assert len(api.log_of("POST", "/compute/v2.1/os-keypairs")) <= 1
    assert len(api.log_of("POST", "/network/v2.0/security-groups")) <= 1
    assert len([g for g in api.network.groups.values() if g["name"] == "precip"]) == 1
    (group,) = [g for g in api.network.groups.values() if g["name"] == "precip"]
    rules = {(r["protocol"], r["port_range_min"], r["remote_group_id"] is not None)
             for r in group["security_group_rules"] if r["direction"] == "ingress"}  # fmt: skip
    # ssh from anywhere, everything within the group (other tests of the session may have
    # opened more ports in the project's shared group)
    assert {("tcp", 22, False), (None, None, True)} <= rules
    first.open_port(8080)
    second.open_port(8080)  # already there: Neutron's SecurityGroupRuleExists is no error
    ports = [r["port_range_min"] for r in group["security_group_rules"]]
    assert ports.count(8080) == 1
    finish_run()


def test_an_application_credential_works_and_its_secret_is_redacted(openstack, store):
    exp = OpenStackExperiment(cloud=openstack.app_cloud, records=store.root, ssh_address="private")
    exp.provision(openstack.image, "m1.tiny")
    exp.wait()
    exp.run([], f"echo {APP_CREDENTIAL_SECRET}")
    exp.deprovision()
    finish_run()
    (echoed,) = events(store, "command.finished")
    assert echoed["stdout"]["text"] == "${secret:OS_APPLICATION_CREDENTIAL_SECRET}\n"
    (token,) = openstack.api.log_of("POST", "/identity/v3/auth/tokens")
    assert token.body["auth"]["identity"]["methods"] == ["application_credential"]
    assert nowhere_in(store.root, APP_CREDENTIAL_SECRET)
    (created,) = events(store, "experiment.created")
    assert created["cloud"]["project"] is not None  # from the token: the credential's project


def test_with_no_arguments_the_openrc_environment_is_used(openstack, store, monkeypatch):
    for name, value in openrc_environment(openstack.endpoint).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(Path(openstack.clouds_yaml).parent / "none"))
    exp = OpenStackExperiment(records=store.root)
    assert exp.cloud.info().endpoint == openstack.auth_url
    assert "the OS_* environment" in repr(exp.cloud)
    finish_run()


def test_the_seeds_positional_form_still_means_the_ec2_api(moto_endpoint, store):
    from precip_repro.clouds.ec2 import EC2Cloud
    from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY

    exp = OpenStackExperiment(moto_endpoint.url, ACCESS_KEY, SECRET_KEY, records=store.root)
    assert isinstance(exp.cloud, EC2Cloud) and exp.cloud.kind == "openstack"
    finish_run()
    with pytest.raises(TypeError, match="not both"):
        OpenStackExperiment(moto_endpoint.url, ACCESS_KEY, SECRET_KEY, cloud="x")


def test_a_server_nova_puts_in_error_is_replaced_then_reported_with_its_fault(openstack, store):
    exp = OpenStackExperiment(cloud=openstack.cloud, records=store.root, boot_max_tries=2)
    exp.provision(openstack.broken_image, "m1.tiny")
    with pytest.raises(CloudError) as raised:
        exp.wait(timeout=60)
    message = str(raised.value)
    assert "Nova put the server in ERROR: No valid host was found" in message
    assert "(2 tries)" in message
    assert len(created_servers(openstack.api)) == 2
    assert openstack.api.compute.servers == {}  # the last one deleted too
    finish_run()


def test_a_reservation_is_sent_as_nova_scheduler_hint(openstack, store):
    exp = OpenStackExperiment(
        cloud=openstack.cloud, records=store.root, reservation=openstack.reservation,
        ssh_address="private",
    )  # fmt: skip
    exp.provision(openstack.image, "baremetal")
    exp.wait()
    (body,) = created_servers(openstack.api)
    assert body["OS-SCH-HNT:scheduler_hints"] == {"reservation": openstack.reservation}
    exp.deprovision()
    other = OpenStackExperiment(
        cloud=openstack.cloud, records=store.root, reservation="0" * 8, boot_max_tries=1
    )
    other.provision(openstack.image, "baremetal")
    with pytest.raises(CloudError, match="No valid host was found"):
        other.wait(timeout=60)
    finish_run()


def test_launches_of_one_provision_overlap(openstack, store):
    api = openstack.api
    api.latency[("POST", "/compute/v2.1/servers")] = 0.3
    try:
        exp = OpenStackExperiment(cloud=openstack.cloud, records=store.root)
        import time

        started = time.monotonic()
        exp.provision(openstack.silent_image, "m1.tiny", count=8)
        took = time.monotonic() - started
        exp.deprovision()
    finally:
        del api.latency[("POST", "/compute/v2.1/servers")]
    finish_run()
    assert took < 8 * 0.3 / 2  # in turn they would take 2.4 s


# -- bad input: one clear error, before anything is left running -------------------------


@pytest.fixture
def bare_api(ec2_network, tmp_path, monkeypatch):
    """A second, small endpoint (no hypervisor) whose project a test shapes."""

    made: list[OpenStackEndpoint] = []

    def make(**options: Any) -> tuple[OpenStackAPI, str]:
        api = OpenStackAPI(network_prefix=ec2_network, **options)
        api.image.add("ubuntu-22.04")
        endpoint = OpenStackEndpoint(api)
        made.append(endpoint)
        path = write_clouds_yaml(tmp_path / f"clouds-{len(made)}.yaml", endpoint)
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        return api, "precip-test"

    yield make
    for endpoint in made:
        endpoint.stop()


def test_an_unknown_cloud_name_lists_the_entries_there_are(openstack, store):
    with pytest.raises(
        CloudError, match=r"'chameleon' is not a clouds.yaml entry: .*'precip-test'"
    ):
        OpenStackExperiment(cloud="chameleon", records=store.root)
    finish_run()


def test_a_missing_clouds_yaml_is_named_with_where_it_was_looked_for(store, tmp_path, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(CloudError, match=r"no clouds.yaml found .*nowhere.yaml"):
        OpenStackExperiment(cloud="chameleon", records=store.root)
    finish_run()


def test_no_cloud_and_no_environment_says_what_to_give(store, monkeypatch):
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CloudError, match="no OpenStack cloud given"):
        OpenStackExperiment(records=store.root)
    finish_run()


def test_wrong_credentials_are_refused_before_anything_starts(bare_api, store):
    api, cloud = bare_api()
    api.password = "another-password-entirely"
    with pytest.raises(CloudError, match="the credentials were refused") as raised:
        OpenStackExperiment(cloud=cloud, records=store.root)
    assert raised.value.code == "Unauthorized" and PASSWORD not in str(raised.value)
    assert api.log_of("POST", "/compute/v2.1/servers") == []
    finish_run()


@pytest.mark.parametrize(
    "image, flavor, wanted",
    [
        ("centos-5", "m1.tiny", r"image 'centos-5' not found .* it has 'ubuntu-22.04'"),
        ("ubuntu-22.04", "m9.huge", r"flavor 'm9.huge' \(the instance type\) not found .*"
         r"'baremetal', 'm1.large'"),
    ],
)  # fmt: skip
def test_an_unknown_image_or_flavor_is_named_and_nothing_starts(
    bare_api, store, image, flavor, wanted
):
    api, cloud = bare_api()
    exp = OpenStackExperiment(cloud=cloud, records=store.root)
    with pytest.raises(CloudError, match=wanted):
        exp.provision(image, flavor, count=3)
    assert api.compute.servers == {}
    finish_run()


@pytest.mark.parametrize(
    "networks, option, wanted",
    [
        ((), None, "the project has none"),
        (("alpha", "beta"), None, r"several networks \('alpha', 'beta'\): choose one"),
        (("alpha",), "gamma", r"network 'gamma' not found .* it has 'alpha'"),
    ],
)
def test_no_network_or_an_ambiguous_or_unknown_one_is_refused(
    bare_api, store, networks, option, wanted
):
    api, cloud = bare_api(networks=networks)
    with pytest.raises(CloudError, match=wanted):
        OpenStackExperiment(cloud=cloud, records=store.root, network=option)
    assert api.compute.servers == {}
    finish_run()


def test_a_quota_nova_would_exceed_is_refused_before_any_server_starts(bare_api, store):
    api, cloud = bare_api(max_instances=2)
    exp = OpenStackExperiment(cloud=cloud, records=store.root)
    with pytest.raises(CloudError, match=r"quota exceeded .* may run 2 servers and runs 0") as e:
        exp.provision("ubuntu-22.04", "m1.tiny", count=3)
    assert e.value.code == "QuotaExceeded" and api.compute.servers == {}
    finish_run()


def test_a_quota_nova_refuses_at_creation_is_named_and_what_started_is_ended(bare_api, store):
    api, cloud = bare_api(max_instances=2)
    api.compute.limits_shown = False
    exp = OpenStackExperiment(cloud=cloud, records=store.root)
    with pytest.raises(CloudError, match="Quota exceeded for instances") as raised:
        exp.provision("ubuntu-22.04", "m1.tiny", count=4)
    assert raised.value.code == "QuotaExceeded"
    from tests.ec2_cloud import wait_until

    assert wait_until(lambda: api.compute.servers == {})  # the two that started, ended
    finish_run()


def test_no_free_floating_ip_is_named_and_the_servers_are_deleted(bare_api, store):
    api, cloud = bare_api(floating_pool=0)
    exp = OpenStackExperiment(cloud=cloud, records=store.root)
    exp.provision("ubuntu-22.04", "m1.tiny")
    with pytest.raises(CloudError, match="no free floating IP") as raised:
        exp.wait(timeout=30)
    assert raised.value.code == "NoFreeFloatingIP"
    exp.close()
    finish_run()
    from tests.ec2_cloud import wait_until

    assert wait_until(lambda: api.compute.servers == {})


def test_an_unknown_floating_network_is_refused_at_once(bare_api, store):
    bare_api()
    with pytest.raises(CloudError, match=r"floating network 'internet' is not found .*'public'"):
        OpenStackExperiment(cloud="precip-test", records=store.root, floating_network="internet")
    finish_run()


def test_a_bare_cloud_lists_the_servers_of_runs_and_holds_what_it_recorded(openstack, store):
    exp = OpenStackExperiment(cloud=openstack.cloud, records=store.root, ssh_address="private")
    exp.provision(openstack.silent_image, "m1.tiny", count=2)
    cloud = OpenStackCloud(cloud=openstack.cloud)
    try:
        listed = {(i.run, i.slot) for i in cloud.run_instances()}
        assert listed == {(exp.run_id, "e1.p1.0"), (exp.run_id, "e1.p1.1")}
        assert cloud.holds(exp.cloud.info())
        assert not cloud.holds(exp.cloud.info().__class__(kind="openstack", endpoint=None))
    finally:
        cloud.close()
    exp.deprovision()
    finish_run()


PLAYED = """\
from precip_repro import OpenStackExperiment
exp = OpenStackExperiment(cloud="precip-test", ssh_address="private")
exp.provision("ubuntu-22.04", "m1.tiny")
exp.wait()
print(exp.run([], "echo played")[1])
exp.deprovision()
"""


def test_a_native_run_plays_back_with_no_cloud_and_no_clouds_yaml(
    openstack, store, tmp_path, capsys, monkeypatch
):
    script = tmp_path / "native.py"
    script.write_text(PLAYED)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PRECIP_RECORDS": str(store.root)},
        capture_output=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = store.run_dirs()
    openstack.api.requests.clear()
    # Played back where no clouds.yaml is found at all.
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "nowhere.yaml"))

    monkeypatch.chdir(tmp_path)
    code = main(["--records", str(store.root), "run", "--playback", run_dir.name, str(script)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "['played\\n']" in out
    assert openstack.api.requests == []  # the cloud was not asked anything


def test_a_server_created_by_a_request_whose_answer_was_lost_is_found_and_deleted(
    bare_api, store, monkeypatch, capfd
):
    # Nova made the server, and the answer never came back (a gateway timing out): the
    # launch fails, and the server it started anyway, named by no id, is found by its run
    # and slot metadata and deleted.
    import openstack.exceptions
    from openstack.compute.v2._proxy import Proxy

    api, cloud = bare_api()
    create = Proxy.create_server

    def answer_lost(self: Any, **attrs: Any) -> Any:
        create(self, **attrs)
        raise openstack.exceptions.HttpException(message="Gateway Timeout", http_status=504)

    monkeypatch.setattr(Proxy, "create_server", answer_lost)
    exp = OpenStackExperiment(cloud=cloud, records=store.root)
    with pytest.raises(CloudError):
        exp.provision("ubuntu-22.04", "m1.tiny")
    assert "the launch failed, yet the cloud started the server" in capfd.readouterr().err
    from tests.ec2_cloud import wait_until

    assert wait_until(lambda: api.compute.servers == {})
    finish_run()
