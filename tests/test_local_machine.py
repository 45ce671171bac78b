"""What a local instance's machine needs from this one — OpenSSH's server, namespaces the
kernel allows — each missing piece said in one line."""

from __future__ import annotations

import os
import stat

import pytest

from precip_repro import LocalCloudUnavailable
from precip_repro.clouds import local_machine
from precip_repro.clouds.local import LocalCloud
from precip_repro.keys import load_keys


def test_a_missing_sshd_is_one_line_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(local_machine, "SSHD", tmp_path / "no-sshd")
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
