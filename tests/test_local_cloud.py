"""The local cloud's own checks: what it needs from the machine, and its address blocks."""

from __future__ import annotations

import os
import stat

import pytest

from precip_repro import CloudError, InvalidOption, LocalCloudUnavailable
from precip_repro.clouds import local
from precip_repro.clouds.local import LocalCloud, image_digest
from precip_repro.keys import load_keys


def test_a_missing_sshd_is_one_line_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "SSHD", tmp_path / "no-sshd")
    cloud = LocalCloud(home=tmp_path)
    with pytest.raises(LocalCloudUnavailable) as info:
        cloud.prepare(load_keys(tmp_path / "keys"))
    assert "openssh-server" in str(info.value) and "\n" not in str(info.value)
    cloud.close()


def test_refused_namespaces_say_what_is_missing(monkeypatch, tmp_path):
    # A stand-in unshare that fails the way a kernel without namespaces makes it fail.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "unshare"
    fake.write_text(
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cloud = LocalCloud(home=tmp_path)
    with pytest.raises(LocalCloudUnavailable) as info:
        cloud.prepare(load_keys(tmp_path / "keys"))
    assert "the kernel refuses" in str(info.value)
    assert "Operation not permitted" in str(info.value)
    cloud.close()


@pytest.mark.parametrize("block", ["10.0.0.0/24", "127.1.2.0/30", "not-an-address"])
def test_a_bad_address_block_lists_what_is_valid(block, tmp_path):
    with pytest.raises(InvalidOption) as info:
        LocalCloud(address_block=block, home=tmp_path)
    assert "127." in str(info.value)


def test_an_address_block_is_held_by_one_cloud_at_a_time(tmp_path):
    first = LocalCloud(address_block="127.200.7.0/24", home=tmp_path)
    try:
        with pytest.raises(CloudError, match="in use by another local cloud"):
            LocalCloud(address_block="127.200.7.0/24", home=tmp_path)
    finally:
        first.close()
    LocalCloud(address_block="127.200.7.0/24", home=tmp_path).close()


def test_two_clouds_get_different_free_blocks(tmp_path):
    clouds = [LocalCloud(home=tmp_path) for _ in range(5)]
    try:
        blocks = {cloud.block for cloud in clouds}
        assert len(blocks) == 5
        assert all(str(block).startswith("127.") and block.prefixlen == 24 for block in blocks)
    finally:
        for cloud in clouds:
            cloud.close()


def test_an_image_digest_changes_with_content_and_mode(tmp_path):
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "app.conf"
    config.write_text("a=1\n")
    first = image_digest(tmp_path)
    config.write_text("a=2\n")
    second = image_digest(tmp_path)
    config.chmod(0o600)
    third = image_digest(tmp_path)
    assert len({first, second, third}) == 3
    assert image_digest(tmp_path) == third


def test_an_unknown_image_is_a_clear_error(local_experiment):
    exp = local_experiment("unknown-image")
    with pytest.raises(CloudError, match="neither 'default' nor a directory"):
        exp.provision("/no/such/image")
    assert exp.list() == []


def test_a_full_address_block_says_why_and_how_to_get_a_larger_one(local_experiment):
    exp = local_experiment("sweep", address_block="127.151.9.0/28")
    for _ in range(13):  # .2 to .14: an address per instance for the whole run
        exp.provision("default")
        exp.deprovision()
    with pytest.raises(CloudError, match=r"full: .* all its 13 addresses") as info:
        exp.provision("default")
    assert info.value.code == "AddressBlockFull"
    assert "address_block='127.151.0.0/20'" in str(info.value)
    assert exp.list() == []
