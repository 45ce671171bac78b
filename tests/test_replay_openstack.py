"""Replays onto native OpenStack (``--to e1=openstack-native``, the mapping's ``[cloud]``
naming the clouds.yaml entry) and from it: the seed's three examples, and a run carried
from the local cloud to OpenStack to EC2."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from replay.cli import main as replay
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY
from tests.test_replay import events, record_example, replay_runs, write


def mapping_to_openstack(tmp_path: Path, openstack: Any, *, exp: str = "") -> Path:
    prefix = f"{exp}." if exp else ""
    return write(
        tmp_path / "openstack.toml",
        f'[{prefix}images]\n"default" = "{openstack.image}"\n'
        f'[{prefix}cloud]\ncloud = "{openstack.cloud}"\n',
    )


@pytest.mark.parametrize(
    "example, steps",
    [("hello_world.py", 5), ("condor_pool.py", 8), ("multicloud.py", 8)],
)
def test_the_seeds_examples_replay_on_native_openstack(
    example, steps, store, tmp_path, capsys, openstack
):
    source = record_example(example, store)
    mapping = mapping_to_openstack(tmp_path, openstack)
    code = replay([source, "--records", str(store.root), "--to", "openstack-native",
                   "--map", str(mapping), "--max-gap", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"REPRODUCED: all {steps} steps" in out
    (replayed,) = replay_runs(store, source)
    created = events(store, replayed, "experiment.created")
    assert {c["cloud"]["kind"] for c in created} == {"openstack-native"}
    assert {c["cloud"]["endpoint"] for c in created} == {openstack.auth_url}
    assert openstack.api.compute.servers == {} and openstack.api.network.floatingips == {}


def test_a_run_goes_from_the_local_cloud_to_openstack_to_ec2(
    store, tmp_path, capsys, openstack, ec2
):
    source = record_example("hello_world.py", store)
    to_openstack = mapping_to_openstack(tmp_path, openstack)
    code = replay([source, "--records", str(store.root), "--to", "e1=openstack-native",
                   "--map", str(to_openstack), "--max-gap", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    (on_openstack,) = replay_runs(store, source)
    to_ec2 = write(
        tmp_path / "ec2.toml",
        f'[images]\n"{openstack.image}" = "{ec2.image}"\n'
        f'[instance_types]\n"m1.small" = "t3.nano"\n'
        f'[cloud]\nendpoint = "{ec2.url}"\nsubnet_id = "{ec2.subnet}"\nssh_address = "private"\n',
    )
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code = replay([on_openstack, "--records", str(store.root), "--to", "e1=ec2",
                       "--map", str(to_ec2), "--max-gap", "1"])  # fmt: skip
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    out = capsys.readouterr().out
    assert code == 0, out
    assert "REPRODUCED" in out
    (on_ec2,) = [r for r in replay_runs(store, source) if r != on_openstack]
    kinds = [
        events(store, run, "experiment.created")[0]["cloud"]["kind"]
        for run in (source, on_openstack, on_ec2)
    ]
    assert kinds == ["local", "openstack-native", "ec2"]


def test_an_unknown_clouds_yaml_entry_is_refused_before_anything_is_provisioned(
    store, tmp_path, capsys, openstack
):
    source = record_example("hello_world.py", store)
    mapping = write(
        tmp_path / "map.toml", '[images]\n"default" = "x"\n[cloud]\ncloud = "chameleon"\n'
    )
    code = replay([source, "--records", str(store.root), "--to", "openstack-native",
                   "--map", str(mapping), "--max-gap", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "e1 replays on openstack-native: OpenStack cloud 'chameleon' is not a clouds.yaml" in err
    assert openstack.api.log_of("POST", "/compute/v2.1/servers") == []
