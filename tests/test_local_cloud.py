"""The local cloud behind the Cloud interface: the capabilities it declares, what the
operations of those it lacks do, and its run listing — every instance under its home,
whoever launched it, described and ended by any local cloud there (gc's)."""

from __future__ import annotations

import os
import shutil
from ipaddress import ip_address

import pytest

from precip_repro import CloudError
from precip_repro.clouds.base import Capability, CloudInfo
from precip_repro.clouds.local import LocalCloud
from precip_repro.clouds.local_state import LocalInstanceState, instances_dir
from precip_repro.keys import precip_home


def test_as_root_it_lists_runs_and_lets_any_user_log_in_and_declares_nothing_else(tmp_path):
    assert os.geteuid() == 0  # the ordinary user's cloud: tests/test_local_unprivileged.py
    cloud = LocalCloud(home=tmp_path)
    try:
        assert cloud.capabilities == {Capability.RUN_LISTING, Capability.ANY_LOGIN_USER}
        assert cloud.ssh_users() is None
    finally:
        cloud.close()


def test_the_operations_of_what_it_lacks_change_nothing_or_refuse(tmp_path):
    cloud = LocalCloud(home=tmp_path)
    try:
        assert Capability.OPEN_PORT not in cloud.capabilities
        assert cloud.open_port(9618, "tcp", "10.0.0.0/8") == []
        assert Capability.FLOATING_ADDRESSES not in cloud.capabilities
        assert cloud.assign_public_address("i-0123456789abcdef", run="r", slot="s") is None
        assert cloud.run_addresses() == []
        with pytest.raises(CloudError, match="no floating addresses"):
            cloud.release_address("eipalloc-12345678")
        assert Capability.KEY_PAIRS not in cloud.capabilities
        assert cloud.key_name is None
    finally:
        cloud.close()


def test_open_port_on_a_local_experiment_is_recorded_and_changes_nothing(local_experiment):
    exp = local_experiment("ports")
    exp.provision("default")
    exp.wait()
    exp.open_port(9618, cidr="127.0.0.0/8")
    assert exp.run([], "echo still here")[1] == ["still here\n"]


def test_it_holds_every_local_instance_recorded_and_none_of_another_kind(tmp_path):
    cloud = LocalCloud(home=tmp_path, lists_only=True)
    assert cloud.holds(CloudInfo(kind="local", endpoint="127.150.3.0/24"))
    assert not cloud.holds(CloudInfo(kind="ec2", endpoint=None, region="us-east-1"))


def test_a_listing_cloud_claims_no_block_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    cloud = LocalCloud(home=home, lists_only=True)
    assert not home.exists()  # nothing created, no block kept from the clouds that start
    assert cloud.info() == CloudInfo(kind="local", endpoint=None, region=None)
    assert Capability.RUN_LISTING in cloud.capabilities
    assert cloud.run_instances() == []
    with pytest.raises(CloudError, match="lists_only"):
        cloud.check_capacity(1)
    with pytest.raises(CloudError, match="lists_only"):
        _ = cloud.block
    cloud.close()


def test_another_local_cloud_lists_describes_and_ends_an_experiments_instances(
    local_experiment,
):
    exp = local_experiment("listed")
    exp.provision("default", count=2)
    exp.wait()
    ids = sorted(item["id"] for item in exp.list())
    survey = LocalCloud(lists_only=True)
    listed = {e.instance.instance_id: e for e in survey.run_instances() if e.run == exp.run_id}
    assert sorted(listed) == ids
    for entry in listed.values():
        assert entry.owner_alive is True  # launched by this very process
        assert entry.slot is not None and entry.slot.startswith(exp.exp)
        assert entry.started_ns is not None and entry.instance.state == "running"
        assert ip_address(entry.instance.public_address or "") in exp.cloud.block
    assert [i.state for i in survey.describe(ids)] == ["running", "running"]

    survey.terminate([ids[0]])
    assert not (instances_dir(precip_home()) / ids[0]).exists()
    assert [e.instance.instance_id for e in survey.run_instances() if e.run == exp.run_id] == [
        ids[1]
    ]
    (ended,) = exp.cloud.describe([ids[0]])
    assert ended.state == "terminated"  # as the experiment's own cloud sees it
    assert survey.describe([ids[0]]) == []  # its state is gone: no cloud knows it now
    exp.deprovision()
    assert all(e.run != exp.run_id for e in survey.run_instances())


def test_the_experiments_own_cloud_describes_only_its_own_instances(local_experiment):
    first, second = local_experiment("first"), local_experiment("second")
    first.provision("default")
    second.provision("default")
    (mine,) = [item["id"] for item in first.list()]
    (theirs,) = [item["id"] for item in second.list()]
    assert [i.instance_id for i in first.cloud.describe([theirs])] == [theirs]
    directory = instances_dir(precip_home()) / mine
    state = LocalInstanceState.load(directory)
    first.deprovision()
    # Its state file as it is while its processes die: an instance this cloud terminated is
    # not described from it again (a wait must not see it back), though another cloud's is.
    directory.mkdir(parents=True)
    state.save(precip_home())
    try:
        assert first.cloud.describe([mine]) == []
        assert [i.state for i in second.cloud.describe([mine])] == ["terminated"]
    finally:
        shutil.rmtree(directory)
