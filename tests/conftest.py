from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from precip_repro.record import RunStore


@pytest.fixture(autouse=True, scope="session")
def precip_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test uses a temporary ~/.precip: never the developer's keys."""
    home = tmp_path_factory.mktemp("precip-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PRECIP_HOME", str(home))
    yield home
    patch.undo()


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


@pytest.fixture
def ec2(moto_endpoint: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh EC2 cloud: a VPC and subnet on 127.0.0.0/16, two images (one never answers
    ssh), and the hypervisor making running instances reachable."""
    from types import SimpleNamespace

    from tests.ec2_cloud import Hypervisor

    moto_endpoint.reset()
    client = moto_endpoint.client()
    vpc = client.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="127.0.0.0/24")["Subnet"]["SubnetId"]
    images = [
        image["ImageId"]
        for image in client.describe_images(Owners=["amazon"])["Images"]
        if image.get("Platform") != "windows"
    ]
    hypervisor = Hypervisor(client, tmp_path / "hypervisor", silent_images={images[1]})
    yield SimpleNamespace(
        url=moto_endpoint.url,
        client=client,
        vpc=vpc,
        subnet=subnet,
        image=images[0],
        other_image=images[2],
        silent_image=images[1],
        hypervisor=hypervisor,
    )
    hypervisor.stop()
