from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from precip_repro.record import RunStore


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_reaches_the_processes_tests_start() -> Iterator[None]:
    """A test run a script started in the background (``make test &``) inherits SIGINT
    ignored, as a non-interactive shell leaves it for background jobs — and so would every
    process the tests start, whose Ctrl-C tests would then send it in vain. Python's own
    handler here: a process started from this one gets SIGINT's default back at exec."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(autouse=True, scope="session")
def precip_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test uses a temporary ~/.precip: never the developer's keys."""
    home = tmp_path_factory.mktemp("precip-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PRECIP_HOME", str(home))
    # Nor the developer's AWS profiles, nor the instance metadata service (169.254.169.254,
    # off this machine) that boto3's chain asks last when it finds no credentials.
    patch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        patch.delenv(variable, raising=False)
    yield home
    patch.undo()


@pytest.fixture(autouse=True)
def nothing_left_in_the_working_directory() -> Iterator[None]:
    """A test writes under its tmp_path: a file left in the directory pytest runs in (the
    checkout) would end up committed — a test's key file once was."""
    before = {path.name for path in Path.cwd().iterdir()}
    yield
    now = {path.name for path in Path.cwd().iterdir()}
    left = {name for name in now - before if not name.startswith(".")}  # tools' caches
    assert not left, f"the test left {sorted(left)} in {Path.cwd()}"


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "records")


@pytest.fixture
def local_experiment(store: RunStore) -> Iterator[Callable[..., Any]]:
    """Make LocalExperiments recording into ``store``; deprovision and finish at the end."""
    from precip_repro import LocalExperiment, finish_run

    made: list[Any] = []

    def make(name: str = "test", **options: Any) -> Any:
        options.setdefault("records", store.root)
        exp = LocalExperiment(name, **options)
        made.append(exp)
        return exp

    yield make
    finish_run()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[Any]:
    """moto's EC2 server on 127.0.0.1 (real HTTP), for the whole session."""
    from tests.ec2_cloud import MotoEndpoint

    endpoint = MotoEndpoint()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def ec2_network() -> Iterator[str]:
    """``127.N``: a /16 of loopback addresses of this test session's own for the instances
    moto starts (moto numbers them from .4 in every VPC alike: two test sessions side by
    side on one machine would otherwise boot each other's instances on the same address).
    Claimed with a lock file; N < 128, clear of the local cloud's 127.128.0.0/9."""
    for n in random.sample(range(2, 128), 126):
        path = Path(tempfile.gettempdir()) / f"precip-tests-ec2-127.{n}.lock"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        except PermissionError:
            continue  # another user's claim
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            yield f"127.{n}"
        finally:
            os.close(fd)
        return
    raise RuntimeError("every 127.N.0.0/16 (N in 2..127) is claimed by another test session")


@pytest.fixture
def ec2(moto_endpoint: Any, ec2_network: str, tmp_path: Path) -> Iterator[Any]:
    """A fresh EC2 cloud: a VPC and subnet on this session's 127.N.0.0/16, two images (one
    never answers ssh), and the hypervisor making running instances reachable."""
    from types import SimpleNamespace

    from tests.ec2_cloud import Hypervisor

    moto_endpoint.reset()
    client = moto_endpoint.client()
    vpc = client.create_vpc(CidrBlock=f"{ec2_network}.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock=f"{ec2_network}.0.0/24")["Subnet"][
        "SubnetId"
    ]
    images = [
        image["ImageId"]
        for image in client.describe_images(Owners=["amazon"])["Images"]
        if image.get("Platform") != "windows"
    ]
    hypervisor = Hypervisor(
        client,
        tmp_path / "hypervisor",
        silent_images={images[1]},
        root_refusing_images=frozenset({images[3]}),
        keyless_images=frozenset({images[4]}),
        sudoless_images=frozenset({images[5]}),
    )
    yield SimpleNamespace(
        url=moto_endpoint.url,
        client=client,
        host=lambda n: f"{ec2_network}.0.{n}",  # moto gives instances .4, .5, … in turn
        floating=f"{ec2_network}.200.77",
        vpc=vpc,
        subnet=subnet,
        image=images[0],
        other_image=images[2],
        silent_image=images[1],
        root_refusing_image=images[3],
        keyless_image=images[4],
        sudoless_image=images[5],
        hypervisor=hypervisor,
        forget=moto_endpoint.forget,
    )
    hypervisor.stop()


@pytest.fixture
def requests_sent() -> Any:
    """Every EC2 request the clients made from now on, as (operation, parameters)."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    from precip_repro.clouds.aws_credentials import AWSCredentials

    # Every client of ours is made by AWSCredentials.client, each from its own session.
    made = AWSCredentials.client

    def client(self: AWSCredentials, service: str, **options: Any) -> Any:
        made_client = made(self, service, **options)
        made_client.meta.events.register("provide-client-params.ec2", note)
        return made_client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AWSCredentials, "client", client)
        yield sent


@pytest.fixture(scope="session")
def openstack_endpoint(ec2_network: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The test OpenStack API (Keystone, Nova, Glance, Neutron) on 127.0.0.1, for the whole
    session, with the hypervisor booting its servers on this session's 127.N.1.0/24 (fixed)
    and 127.N.100.0/24 (floating); ``clouds.yaml`` written and named by
    ``OS_CLIENT_CONFIG_FILE`` (openstacksdk's own variable) for the session and the
    processes it starts. See tests/openstack_cloud.py."""
    from types import SimpleNamespace

    from tests.openstack_api import OpenStackAPI
    from tests.openstack_cloud import (
        APP_CLOUD,
        CLOUD,
        Hypervisor,
        OpenStackEndpoint,
        write_clouds_yaml,
    )

    api = OpenStackAPI(network_prefix=ec2_network)
    image = api.image.add("ubuntu-22.04")
    silent = api.image.add("silent-image", silent=True)
    broken = api.image.add("broken-image", fault="No valid host was found. There are not "
                           "enough hosts available.")  # fmt: skip
    reservation = "2c1e5a70-7b5e-4d0b-9f43-6f0e3c1d9a10"
    api.reservations.add(reservation)
    hypervisor = Hypervisor(tmp_path_factory.mktemp("openstack-hypervisor"))
    api.hypervisor = hypervisor
    endpoint = OpenStackEndpoint(api)
    clouds_yaml = write_clouds_yaml(
        tmp_path_factory.mktemp("openstack-config") / "clouds.yaml", endpoint
    )
    patch = pytest.MonkeyPatch()
    patch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))
    yield SimpleNamespace(
        api=api, endpoint=endpoint, url=endpoint.url, auth_url=endpoint.auth_url,
        cloud=CLOUD, app_cloud=APP_CLOUD, clouds_yaml=clouds_yaml, image="ubuntu-22.04",
        image_id=image, silent_image="silent-image", silent_image_id=silent,
        broken_image="broken-image", broken_image_id=broken, reservation=reservation,
        hypervisor=hypervisor,
    )  # fmt: skip
    patch.undo()
    endpoint.stop()
    hypervisor.stop()


@pytest.fixture
def openstack(openstack_endpoint: Any) -> Iterator[Any]:
    """The session's OpenStack endpoint, for one test: the request log starts empty, and
    what the test left (servers, floating IPs) is removed after it."""
    from tests.ec2_cloud import wait_until

    api = openstack_endpoint.api
    with api.lock:
        api.requests.clear()
    yield openstack_endpoint
    with api.lock:
        left = list(api.compute.servers.values())
    for server in left:
        with api.lock:
            api.compute.delete_server(server)
    assert wait_until(lambda: not api.compute.servers, timeout=30)
    with api.lock:
        for fip in list(api.network.floatingips.values()):
            api.network.delete_floating(fip)


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent of this test's own, on a socket in its tmp_path."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.01)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_requests() -> Iterator[Any]:
    """Every request the session's moto server serves, as its log says it."""
    import logging

    from tests.s3_bucket import RequestLog

    logger = logging.getLogger("werkzeug")
    handler = RequestLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def s3(moto_endpoint: Any, s3_requests: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh bucket on moto's server, and this process set up to use it as a user
    would: AWS_ENDPOINT_URL, keys in the environment, a cache of its own."""
    from tests.s3_bucket import S3Bucket

    bucket = S3Bucket(moto_endpoint, tmp_path, s3_requests)
    patch = pytest.MonkeyPatch()
    for name, value in bucket.env("here").items():
        if name.startswith(("AWS_", "PRECIP_CACHE")):
            patch.setenv(name, value)
    yield bucket
    patch.undo()
