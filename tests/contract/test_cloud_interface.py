"""The contract of ``precip_repro.clouds.base.Cloud``, the interface every cloud implements."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import attrs
import pytest

from precip_repro import CloudError, UnsupportedUser
from precip_repro.clouds.base import Cloud, LaunchRequest
from precip_repro.keys import load_keys
from tests.contract.conftest import CloudTarget

ENDED_OR_ENDING = frozenset({"terminated", "shutting-down"})


@pytest.fixture
def cloud(cloud_target: CloudTarget) -> Iterator[Cloud]:
    # One per test: closing a local cloud also ends what a test that failed half-way left.
    cloud = cloud_target.cloud()
    yield cloud
    cloud.close()


def request_for(cloud_target: CloudTarget, slot: str) -> LaunchRequest:
    return LaunchRequest(
        run="",  # no run: the cloud's tags then match no recorded run's
        exp="contract",
        slot=slot,
        image_id=cloud_target.image,
        instance_type=cloud_target.instance_type,
        tags=("contract",),
    )


class TestCloudInterface:
    def test_launch_describe_terminate_describe(self, cloud_target, cloud):
        """A launched instance is described as booting or running, and once terminated as
        ended or not at all; the cloud itself agrees at each step."""
        launched = cloud.launch(request_for(cloud_target, "contract.launch.0"))
        try:
            assert launched.instance_id
            assert launched.image_id == cloud_target.image
            assert launched.state in ("pending", "running")
            (described,) = cloud.describe([launched.instance_id])
            assert described.instance_id == launched.instance_id
            assert described.image_id == cloud_target.image
            assert described.instance_type == cloud_target.instance_type
            assert described.state in ("pending", "running")
            assert launched.instance_id in cloud_target.live()
        finally:
            cloud.terminate([launched.instance_id])
        after = cloud.describe([launched.instance_id])
        assert [d.instance_id for d in after if d.state not in ENDED_OR_ENDING] == []
        assert launched.instance_id not in cloud_target.live()

    def test_terminate_again_and_terminate_of_an_unknown_id_are_no_error(self, cloud_target, cloud):
        """Deprovision after a crash, gc after the cloud forgot: ending what has ended, or
        what the cloud never knew, ends nothing else and raises nothing."""
        launched = cloud.launch(request_for(cloud_target, "contract.again.0"))
        cloud.terminate([launched.instance_id])
        cloud.terminate([launched.instance_id])
        cloud.terminate(["i-" + secrets.token_hex(8)])
        cloud.terminate([])
        assert launched.instance_id not in cloud_target.live()

    def test_describe_of_an_unknown_id_is_empty_not_an_error(self, cloud):
        unknown = "i-" + secrets.token_hex(8)
        assert cloud.describe([unknown]) == []

    def test_describe_of_known_and_unknown_ids_answers_for_the_known(self, cloud_target, cloud):
        """One id the cloud does not know must not hide the others (AWS refuses a whole
        DescribeInstances by ids for one unknown id)."""
        launched = cloud.launch(request_for(cloud_target, "contract.mixed.0"))
        try:
            found = cloud.describe(["i-" + secrets.token_hex(8), launched.instance_id])
            assert [d.instance_id for d in found] == [launched.instance_id]
        finally:
            cloud.terminate([launched.instance_id])

    def test_info_names_the_kind_and_holds_no_credential(self, cloud_target, cloud):
        info = cloud.info()
        assert info.kind == cloud_target.kind == cloud.kind
        said = json.dumps(attrs.asdict(info))
        keys = load_keys()
        private = keys.private_key_path.read_text()
        body = "".join(private.strip().splitlines()[1:-1])  # the key without its armour
        for secret in (*cloud_target.credentials, body):
            assert secret not in said

    def test_prepare_again_is_harmless(self, cloud_target, cloud):
        """Every experiment prepares its cloud: the second finds the first's key pair and
        security group and must take them, not fail or make more."""
        cloud.prepare(load_keys())
        launched = cloud.launch(request_for(cloud_target, "contract.prepared.0"))
        cloud.terminate([launched.instance_id])

    def test_ssh_user_logs_in_as_each_user_ssh_users_allows(self, cloud):
        allowed = cloud.ssh_users()
        if allowed is None:  # any user the instance has
            assert cloud.ssh_user("contract") == "contract"
        else:
            for user in allowed:
                assert cloud.ssh_user(user)
            with pytest.raises(UnsupportedUser):
                cloud.ssh_user("no-such-user-" + secrets.token_hex(4))
        assert cloud.ssh_user("root")  # the seed's default user is always allowed

    def test_check_capacity_refuses_at_once_a_count_no_cloud_could_start(self, cloud_target, cloud):
        before = cloud_target.live()
        with pytest.raises(CloudError):
            cloud.check_capacity(10**9)
        assert cloud_target.live() == before  # refused before anything started

    def test_check_capacity_lets_one_more_instance_through(self, cloud):
        cloud.check_capacity(1)  # the provision of every test here would fail otherwise
