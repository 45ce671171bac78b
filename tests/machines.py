"""The machines the tests' cloud "hypervisors" boot (tests/ec2_cloud.py for moto,
tests/openstack_cloud.py for the OpenStack API double): the local cloud's isolated sshd —
its own filesystem view, hostname, process tree and users, sshd as PID 1 of its PID
namespace — at one loopback address, root logging in with the key it is given."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from precip_repro.clouds.local_machine import SETUP, host_key, sshd_config
from precip_repro.clouds.local_state import children

BOOT_TIMEOUT = 20.0


def start(
    state: Path, *, address: str, hostname: str, authorized_keys: str
) -> subprocess.Popen[bytes]:
    """Start a machine whose state lives in ``state`` (its host key kept there: a machine
    started again in the same directory is the same disk)."""
    if not (state / "host_key").exists():
        (state / "root").mkdir(parents=True, exist_ok=True)
        (state / "layers").mkdir(exist_ok=True)
        pem, _ = host_key()
        (state / "host_key").write_bytes(pem)
        (state / "host_key").chmod(0o600)
    (state / "authorized_keys").write_text(authorized_keys + "\n")
    (state / "setup.sh").write_text(SETUP)
    config = sshd_config(
        address=address, port=22, state=state, root_mode=True,
        host_key="/etc/ssh/precip_host_key", user="root",
    )  # fmt: skip
    (state / "sshd_config").write_text(config + "\n")
    with (state / "boot.log").open("wb") as log_file:
        return subprocess.Popen(
            ["unshare", "-m", "-p", "-u", "--fork", "--kill-child", "/bin/sh",
             str(state / "setup.sh"), "root", str(state), hostname, "", address],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def await_ready(machine: subprocess.Popen[bytes], state: Path, *, hosts: Path) -> int | None:
    """Wait until the machine's sshd is up, then bind ``hosts`` (rewritten in place as
    instances come and go: the network's DNS) over its ``/etc/hosts``; its init's pid, or
    None when it died or did not boot in :data:`BOOT_TIMEOUT` s."""
    boot_log = state / "boot.log"
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and machine.poll() is None:
        init = children(machine.pid)
        if init and b"precip-instance-ready" in boot_log.read_bytes():
            subprocess.run(
                ["nsenter", "-t", str(init[0]), "-m", "--", "mount", "--bind", str(hosts),
                 str(state / "root" / "etc" / "hosts")],
                check=True, capture_output=True,
            )  # fmt: skip
            return init[0]
        time.sleep(0.01)
    return None
