"""The local clouds' address blocks: valid ones only, each held by one cloud at a time, and
a full one saying how to get a larger one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from precip_repro import CloudError, InvalidOption
from precip_repro.clouds import local_blocks
from precip_repro.clouds.local import LocalCloud


@pytest.mark.parametrize(
    "block", ["10.0.0.0/24", "127.1.2.0/30", "127.16.0.0/12", "not-an-address"]
)
def test_a_bad_address_block_lists_what_is_valid(block, tmp_path):
    with pytest.raises(InvalidOption) as info:
        LocalCloud(address_block=block, home=tmp_path)
    assert "127." in str(info.value)


def test_an_address_block_is_held_by_one_cloud_at_a_time(tmp_path):
    first = LocalCloud(address_block="127.20.7.0/24", home=tmp_path)
    try:
        with pytest.raises(CloudError, match=r"in use .* by another local cloud"):
            LocalCloud(address_block="127.20.7.0/24", home=tmp_path)
    finally:
        first.close()
    LocalCloud(address_block="127.20.7.0/24", home=tmp_path).close()


# Blocks given in these tests lie outside the pool free blocks are drawn from (127.128.0.0/9),
# so that no other cloud of the session can hold them by chance.


@pytest.mark.parametrize(
    ("held", "wanted"),
    [("127.21.7.0/24", "127.21.7.16/28"), ("127.21.7.32/28", "127.21.0.0/20")],
)
def test_a_block_overlapping_one_in_use_is_refused(held, wanted, tmp_path):
    first = LocalCloud(address_block=held, home=tmp_path)
    try:
        with pytest.raises(CloudError, match=r"in use .* by another local cloud"):
            LocalCloud(address_block=wanted, home=tmp_path)
    finally:
        first.close()
    LocalCloud(address_block=wanted, home=tmp_path).close()


def test_starting_a_cloud_leaves_a_seeded_random_sequence_alone(tmp_path):
    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    LocalCloud(home=tmp_path).close()
    assert [random.random() for _ in range(3)] == expected


def test_two_clouds_get_different_free_blocks(tmp_path):
    clouds = [LocalCloud(home=tmp_path) for _ in range(5)]
    try:
        blocks = {cloud.block for cloud in clouds}
        assert len(blocks) == 5
        assert all(str(block).startswith("127.") and block.prefixlen == 24 for block in blocks)
    finally:
        for cloud in clouds:
            cloud.close()


def test_a_full_address_block_says_why_and_how_to_get_a_larger_one(local_experiment):
    exp = local_experiment("sweep", address_block="127.51.9.0/28")
    for _ in range(13):  # .2 to .14: an address per instance for the whole run
        exp.provision("default")
        exp.deprovision()
    with pytest.raises(CloudError, match=r"full: .* all its 13 addresses") as info:
        exp.provision("default")
    assert info.value.code == "AddressBlockFull"
    assert "address_block='127.51.0.0/20'" in str(info.value)
    assert exp.list() == []


def test_a_lock_that_fails_midway_leaves_no_descriptor_open(tmp_path, monkeypatch):
    real = local_blocks._lock_block
    calls = []

    def third_fails(blocks, network):
        calls.append(network)
        if len(calls) == 3:
            raise OSError(24, "Too many open files")
        return real(blocks, network)

    monkeypatch.setattr(local_blocks, "_lock_block", third_fails)
    before = len(list(Path("/proc/self/fd").iterdir()))
    with pytest.raises(OSError, match="Too many open files"):
        LocalCloud(address_block="127.22.0.0/20", home=tmp_path)
    assert len(list(Path("/proc/self/fd").iterdir())) == before
    monkeypatch.undo()
    LocalCloud(address_block="127.22.0.0/20", home=tmp_path).close()  # nothing left held
