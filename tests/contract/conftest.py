"""The clouds the contract suite runs on, each behind one :class:`CloudTarget`.

Every test of ``tests/contract`` takes the ``cloud_target`` fixture and runs once per cloud
named in :data:`CLOUDS`; a test never names a cloud. A test that needs a capability some
clouds lack calls ``requires(Capability.X, exp)`` first: on a cloud whose ``capabilities`` leave it
out, the test is skipped — the only way a contract test is skipped.

Where a cloud breaks the contract, the test still runs on it, as a strict xfail listed in
:data:`DIVERGENCES` with the reason: each entry is a finding to fix in that cloud, and the
test fails the day the cloud behaves (delete the entry then).

The stores of runs have a contract of their own (``test_store_interface``): each test takes
``store_target`` and runs once per store of :data:`STORES`.

A cloud joins with ONE entry: a package-scoped fixture named ``<kind>_target`` (``-`` as ``_``) that
yields a :class:`CloudTarget` for it (how to make an experiment and a bare cloud, an image,
and how to ask the cloud itself what runs), and its kind added to :data:`CLOUDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from precip_repro import finish_run
from precip_repro.clouds.base import Capability, Cloud
from precip_repro.experiment import Experiment
from precip_repro.keys import load_keys
from precip_repro.record import RunStore
from precip_repro.stores import Store, open_store

CLOUDS: Final = ("local", "ec2", "openstack-native")
"""The clouds every contract test runs on: each has a ``<kind>_target`` fixture below."""

DIVERGENCES: Final[dict[tuple[str, str], str]] = {
    ("test_check_capacity_refuses_at_once_a_count_no_cloud_could_start", "ec2"): (
        "EC2Cloud.check_capacity refuses no count at all (EC2's quotas are known to Service "
        "Quotas alone), where the local cloud refuses what its address block cannot hold: "
        "a count no account could start is found out only by RunInstances, one launch at a time"
    ),
    ("test_each_instance_knows_every_other_by_the_name_it_calls_itself", "local"): (
        "a local instance's hostname is its instance id, in its own /etc/hosts only: the "
        "others cannot resolve it (EC2's VPC DNS resolves every instance's name everywhere), "
        "and get_private_hostnames() gives addresses, not that name"
    ),
}
"""(test name, cloud) → why that cloud fails that test today."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("cloud_target") if callspec is not None else None
        reason = DIVERGENCES.get((getattr(item, "originalname", item.name), str(kind)))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{kind}: {reason}"))


def requires(capability: Capability, exp: Experiment) -> None:
    """Skip the calling test on a cloud that declares it lacks ``capability``: the one
    place a contract test may be skipped. ``exp`` is the experiment the test uses: what its
    cloud declares is what counts (a cloud's capabilities may depend on how it was made)."""
    if capability not in exp.cloud.capabilities:
        pytest.skip(f"{exp.cloud.kind} lacks {capability.name}")


class CloudTarget:
    """One cloud as the contract suite uses it.

    ``make(name)`` gives an experiment recording into this target's temporary store (one
    run per process: every experiment made until the run finishes records into it);
    ``cloud()`` a bare cloud, prepared with the session's keys, for the interface itself
    (the caller closes it). ``capabilities`` are what the cloud declares.
    ``live()`` asks the cloud itself, not an experiment, which instances it runs.
    """

    def __init__(
        self,
        *,
        kind: str,
        image: str,
        store: RunStore,
        experiment: Callable[[str, Path], Experiment],
        bare_cloud: Callable[[], Cloud],
        live: Callable[[], set[str]],
        instance_type: str = "m1.small",
        credentials: tuple[str, ...] = (),
        allowed_ports: Callable[[], set[int]] | None = None,
    ) -> None:
        self.kind = kind
        self.image = image
        self.instance_type = instance_type
        self.store = store
        self.live = live
        self.credentials = credentials
        """What must never reach the record or ``info()``: the cloud's secrets."""
        self.allowed_ports = allowed_ports
        """The ports the cloud's firewall lets in, asked of the cloud; None where it has
        none (everything reaches the instances)."""
        self._experiment = experiment
        self._bare_cloud = bare_cloud
        self._made: list[Experiment] = []
        probe = bare_cloud()
        try:
            self.capabilities: frozenset[Capability] = probe.capabilities
        finally:
            probe.close()

    def make(self, name: str) -> Experiment:
        exp = self._experiment(name, self.store.root)
        self._made.append(exp)
        return exp

    def cloud(self) -> Cloud:
        cloud = self._bare_cloud()
        cloud.prepare(load_keys())
        return cloud

    def close(self) -> None:
        """Deprovision what the experiments left and finish the run they recorded into."""
        for exp in self._made:
            exp.close()
        finish_run()

    def __repr__(self) -> str:
        return f"<CloudTarget {self.kind}>"


@pytest.fixture(scope="package", params=CLOUDS)
def cloud_target(request: pytest.FixtureRequest) -> CloudTarget:
    """Each cloud of :data:`CLOUDS` in turn, for the whole package: pytest groups the tests
    by cloud, so a cloud's set-up (moto, its network) is made once."""
    fixture = f"{str(request.param).replace('-', '_')}_target"
    target: CloudTarget = request.getfixturevalue(fixture)
    return target


@pytest.fixture(scope="package")
def local_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudTarget]:
    """The local cloud: sshd instances in namespaces on 127.128.0.0/9."""
    from precip_repro import LocalExperiment
    from precip_repro.clouds.local import LocalCloud, live_local_instances
    from precip_repro.keys import precip_home

    def experiment(name: str, records: Path) -> Experiment:
        return LocalExperiment(name, records=records)

    target = CloudTarget(
        kind="local",
        image="default",
        store=RunStore(tmp_path_factory.mktemp("contract-local") / "records"),
        experiment=experiment,
        bare_cloud=LocalCloud,
        live=lambda: {state.instance_id for state in live_local_instances(precip_home())},
    )
    yield target
    target.close()


@pytest.fixture(scope="package")
def ec2_target(
    moto_endpoint: Any, ec2_network: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudTarget]:
    """EC2 through boto3 against moto's server, with the test hypervisor booting a real
    sshd at each running instance's private address (see tests/ec2_cloud.py)."""
    from precip_repro import EC2Experiment
    from precip_repro.clouds.ec2 import EC2Cloud
    from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, Hypervisor

    moto_endpoint.reset()
    client = moto_endpoint.client()
    vpc = client.create_vpc(CidrBlock=f"{ec2_network}.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock=f"{ec2_network}.0.0/24")["Subnet"][
        "SubnetId"
    ]
    image = next(
        image["ImageId"]
        for image in client.describe_images(Owners=["amazon"])["Images"]
        if image.get("Platform") != "windows"
    )
    hypervisor = Hypervisor(
        client, tmp_path_factory.mktemp("contract-hypervisor"), silent_images=set()
    )

    def experiment(name: str, records: Path) -> Experiment:
        # moto gives no public addresses in a subnet: the hypervisor's machines listen on
        # the private ones.
        return EC2Experiment(
            "us-east-1",
            moto_endpoint.url,
            ACCESS_KEY,
            SECRET_KEY,
            name,
            subnet_id=subnet,
            ssh_address="private",
            records=records,
        )

    def bare_cloud() -> Cloud:
        return EC2Cloud(
            kind="ec2",
            endpoint=moto_endpoint.url,
            region="us-east-1",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            subnet_id=subnet,
        )

    def live() -> set[str]:
        found = client.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )
        return {i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]}

    def allowed_ports() -> set[int]:
        groups = client.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["precip"]}]
        )["SecurityGroups"]
        return {
            int(rule["FromPort"])
            for group in groups
            for rule in group["IpPermissions"]
            if rule.get("FromPort") is not None
        }

    target = CloudTarget(
        kind="ec2",
        image=image,
        instance_type="t2.micro",
        store=RunStore(tmp_path_factory.mktemp("contract-ec2") / "records"),
        experiment=experiment,
        bare_cloud=bare_cloud,
        live=live,
        credentials=(ACCESS_KEY, SECRET_KEY),
        allowed_ports=allowed_ports,
    )
    try:
        yield target
        target.close()
    finally:
        hypervisor.stop()


@pytest.fixture(scope="package")
def openstack_native_target(
    openstack_endpoint: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudTarget]:
    """Native OpenStack through openstacksdk against the test API endpoint on 127.0.0.1
    (Keystone, Nova, Glance, Neutron), its hypervisor booting a real sshd at each server's
    fixed and floating addresses (see tests/openstack_cloud.py)."""
    from precip_repro import OpenStackExperiment
    from precip_repro.clouds.openstack import KIND, OpenStackCloud
    from tests.openstack_api import APP_CREDENTIAL_SECRET, PASSWORD

    api = openstack_endpoint.api

    def experiment(name: str, records: Path) -> Experiment:
        # Public addresses: each server gets a floating IP, as on Chameleon or Jetstream2.
        return OpenStackExperiment(name=name, cloud=openstack_endpoint.cloud, records=records)

    def bare_cloud() -> Cloud:
        return OpenStackCloud(cloud=openstack_endpoint.cloud)

    def live() -> set[str]:
        with api.lock:
            return {
                server_id
                for server_id, server in api.compute.servers.items()
                if server["OS-EXT-STS:task_state"] != "deleting"
            }

    def allowed_ports() -> set[int]:
        with api.lock:
            return {
                int(rule["port_range_min"])
                for group in api.network.groups.values()
                if group["name"] == "precip"
                for rule in group["security_group_rules"]
                if rule["direction"] == "ingress" and rule["port_range_min"] is not None
            }

    target = CloudTarget(
        kind=KIND,
        image=openstack_endpoint.image,
        instance_type="m1.small",
        store=RunStore(tmp_path_factory.mktemp("contract-openstack") / "records"),
        experiment=experiment,
        bare_cloud=bare_cloud,
        live=live,
        credentials=(PASSWORD, APP_CREDENTIAL_SECRET),
        allowed_ports=allowed_ports,
    )
    yield target
    target.close()


STORES: Final = ("local", "s3")
"""The stores every test of ``test_store_interface`` runs on."""


@pytest.fixture(params=STORES)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each store of :data:`STORES`, empty: a directory, or a fresh bucket of moto's
    server through boto3 (its cache this test's own)."""
    if request.param == "local":
        return open_store(str(tmp_path / "records"))
    bucket = request.getfixturevalue("s3")
    return open_store(bucket.url)
