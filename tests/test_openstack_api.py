"""The test OpenStack endpoint is as strict as a real one: openstacksdk and keystoneauth,
unpatched, raise their own exceptions for its answers (status codes and error bodies of
the api-ref), and its request log shows what they sent."""

from __future__ import annotations

from typing import Any

import keystoneauth1.exceptions as ksa
import openstack
import openstack.config
import openstack.exceptions as sdk
import pytest
import requests

from tests.openstack_api import OpenStackAPI
from tests.openstack_cloud import OpenStackEndpoint, write_clouds_yaml


def connection(path: Any, name: str = "precip-test") -> Any:
    """openstacksdk's connection to ``name`` of the clouds.yaml at ``path`` alone (not the
    session's, which $OS_CLIENT_CONFIG_FILE names and the SDK would read first)."""
    config = openstack.config.OpenStackConfig(config_files=[str(path)], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=name))


@pytest.fixture
def api_conn(ec2_network, tmp_path) -> Any:
    api = OpenStackAPI(network_prefix=ec2_network)
    api.image.add("ubuntu-22.04")
    endpoint = OpenStackEndpoint(api)
    path = write_clouds_yaml(tmp_path / "clouds.yaml", endpoint)

    def connect(name: str = "precip-test") -> Any:
        return connection(path, name)

    yield api, connect, endpoint
    endpoint.stop()


def test_keystone_refuses_a_wrong_password_with_401(api_conn):
    api, connect, _ = api_conn
    api.password = "not-the-one"
    with pytest.raises(sdk.SDKException) as raised:
        connect().authorize()
    assert isinstance(raised.value.__context__, ksa.Unauthorized)
    (token,) = api.log_of("POST", "/identity/v3/auth/tokens")
    assert token.status == 401
    assert token.body["auth"]["identity"]["password"]["user"]["name"] == "precip-user"


def test_a_request_without_a_token_is_refused_with_keystones_error_body(api_conn):
    _, _, endpoint = api_conn
    answer = requests.get(f"{endpoint.url}/compute/v2.1/servers/detail", timeout=10)
    assert answer.status_code == 401
    assert answer.json() == {"error": {"code": 401, "title": "Unauthorized",
                                       "message": "The request you have made requires "
                                       "authentication."}}  # fmt: skip


def test_nova_answers_an_unknown_server_with_item_not_found(api_conn):
    _, connect, _ = api_conn
    with pytest.raises(sdk.NotFoundException, match="Instance nope could not be found"):
        connect().compute.get_server("nope")


def test_nova_requires_networks_from_microversion_2_37(api_conn):
    api, connect, _ = api_conn
    conn = connect()
    image = conn.image.find_image("ubuntu-22.04", ignore_missing=False)
    with pytest.raises(sdk.BadRequestException, match="'networks' is a required property"):
        conn.compute.create_server(name="x", image_id=image.id, flavor_id="1")
    (logged,) = api.log_of("POST", "/compute/v2.1/servers")
    assert logged.status == 400 and logged.headers["Openstack-Api-Version"] == "compute 2.96"


def test_nova_refuses_a_microversion_beyond_its_maximum_with_406(api_conn):
    _, connect, _ = api_conn
    conn = connect()
    answer = conn.compute.get("/servers/detail", microversion="2.200")
    assert answer.status_code == 406
    assert answer.json()["computeFault"]["message"] == (
        "Version 2.200 is not supported by the API. Minimum is 2.1 and maximum is 2.96."
    )


def test_nova_refuses_metadata_keys_its_schema_does_not_take(api_conn):
    api, connect, _ = api_conn
    conn = connect()
    image = conn.image.find_image("ubuntu-22.04", ignore_missing=False)
    network = next(iter(api.network.tenant_networks()))["id"]
    with pytest.raises(sdk.BadRequestException, match="metadata"):
        conn.compute.create_server(name="x", image_id=image.id, flavor_id="1",
                                   networks=[{"uuid": network}], metadata={"a/b": "1"})  # fmt: skip


def test_nova_says_quota_exceeded_with_403(ec2_network, tmp_path):
    api = OpenStackAPI(network_prefix=ec2_network, max_instances=0)
    image = api.image.add("ubuntu-22.04")
    endpoint = OpenStackEndpoint(api)
    try:
        path = write_clouds_yaml(tmp_path / "clouds.yaml", endpoint)
        conn = connection(path)
        network = next(iter(api.network.tenant_networks()))["id"]
        with pytest.raises(sdk.ForbiddenException, match="Quota exceeded for instances"):
            conn.compute.create_server(name="x", image_id=image, flavor_id="1",
                                       networks=[{"uuid": network}])  # fmt: skip
    finally:
        endpoint.stop()


def test_glance_answers_an_unknown_image_with_404(api_conn):
    _, connect, _ = api_conn
    with pytest.raises(sdk.NotFoundException):
        connect().image.get_image("0d3f0e59-0000-4000-8000-000000000000")


def test_neutron_refuses_an_unknown_filter_and_a_duplicate_rule(api_conn):
    _, connect, _ = api_conn
    conn = connect()
    answer = conn.network.get("/networks?colour=blue")  # the SDK's lists drop unknown ones
    assert answer.status_code == 400
    assert answer.json()["NeutronError"]["message"] == (
        "['colour'] is invalid attribute for filtering"
    )
    group = conn.network.create_security_group(name="g")
    rule = {"security_group_id": group.id, "direction": "ingress", "protocol": "tcp",
            "port_range_min": 22, "port_range_max": 22, "ethertype": "IPv4"}  # fmt: skip
    conn.network.create_security_group_rule(**rule)
    with pytest.raises(sdk.ConflictException, match="Security group rule already exists"):
        conn.network.create_security_group_rule(**rule)


def test_neutron_has_no_floating_ip_left_with_409(ec2_network, tmp_path):
    api = OpenStackAPI(network_prefix=ec2_network, floating_pool=1)
    endpoint = OpenStackEndpoint(api)
    try:
        path = write_clouds_yaml(tmp_path / "clouds.yaml", endpoint)
        conn = connection(path)
        conn.network.create_ip(floating_network_id=api.network.external_id)
        with pytest.raises(sdk.ConflictException, match="No more IP addresses available"):
            conn.network.create_ip(floating_network_id=api.network.external_id)
        answer = api.log_of("POST", "/network/v2.0/floatingips")
        assert [a.status for a in answer] == [201, 409]
    finally:
        endpoint.stop()


def test_an_application_credential_gets_a_token_with_the_catalog(api_conn):
    api, connect, endpoint = api_conn
    conn = connect("precip-test-app")
    assert conn.compute.get_endpoint() == f"{endpoint.url}/compute/v2.1"
    (token,) = api.log_of("POST", "/identity/v3/auth/tokens")
    assert token.body["auth"]["identity"]["application_credential"]["id"]
    assert "scope" not in token.body["auth"]  # a credential is scoped to its project
