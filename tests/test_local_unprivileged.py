"""The local cloud as an ordinary user: sessions are root inside the instance, writes stay
private, SFTP lands inside, terminating ends everything, other users are a clear error."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USER = "precip-test"

SCRIPT = r"""
import json, subprocess, sys
from precip_repro import CommandTimeout, LocalExperiment, TransferFailed, UnsupportedUser
from precip_repro import verify, finish_run
work = sys.argv[1]
exp = LocalExperiment("unprivileged", records=work + "/records")
exp.provision("default", count=2)
exp.wait()
result = {}
_, result["who"], _ = exp.run([], "whoami; hostname -f")
for i, item in enumerate(exp.list()):
    exp.run([item["id"]], f"echo {i} > /etc/precip-marker; mkdir -p /etc/app")
    exp.run([item["id"]], f"echo {i} > /etc/app/conf; echo {i} > /dev/shm/precip-marker")
_, result["marker"], _ = exp.run([], "cat /etc/precip-marker /etc/app/conf /dev/shm/precip-marker")
open(work + "/in.txt", "w").write("payload\n")
exp.put([], work + "/in.txt", "/root/in.txt")
_, result["put"], _ = exp.run([], "cat /root/in.txt")
first = [exp.list()[0]["id"]]
exp.put(first, work + "/in.txt", "relative.txt")
_, result["as_root_logs_in"], _ = exp.run(
    first, 'pwd; echo "$HOME $USER $LOGNAME"; command -v useradd; echo x > ~/tilde; '
    "cat /root/tilde /root/relative.txt"
)
exp.get([exp.list()[0]["id"]], "/root/in.txt", work + "/back.txt")
result["got"] = open(work + "/back.txt").read()
try:
    exp.put(first, work + "/in.txt", "/usr/local/bin/in.txt")
except TransferFailed as exc:
    result["host_owned"] = str(exc)
try:
    exp.run([], "true", user="wf")
except UnsupportedUser as exc:
    result["other_user"] = str(exc)
try:
    exp.run([], "sleep 2626.26", timeout=0.5)
except CommandTimeout as exc:
    result["timeout"] = str(exc)
left = exp.run([], "pgrep -c -f 'sleep 262[6]'", check_exit_code=False)
result["sleeping_past_timeout"] = left[1]
exp.run([], "nohup sleep 2727.27 >/dev/null 2>&1 &")
result["sleeping_before"] = subprocess.run(["pgrep", "-f", "sleep 2727.27"]).returncode == 0
result["ids"] = [item["id"] for item in exp.list()]
from precip_repro.clouds.local import LocalCloud
result["capabilities"] = sorted(capability.name for capability in exp.cloud.capabilities)
result["ssh_users"] = sorted(exp.cloud.ssh_users() or [])
listed = LocalCloud(lists_only=True).run_instances()
result["listed"] = sorted([e.instance.instance_id, e.owner_alive] for e in listed)
exp.deprovision()
result["sleeping_after"] = subprocess.run(["pgrep", "-f", "sleep 2727.27"]).returncode == 0
path = exp.run_path
finish_run()
result["verify"] = verify(path).state
print("RESULT " + json.dumps(result))
"""


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], Path]]:
    """A command prefix that runs Python as an ordinary user, and a directory it owns."""
    work = Path(tempfile.mkdtemp(prefix="precip-unpriv-", dir="/tmp"))
    work.chmod(0o755)
    if os.geteuid() != 0:
        yield [sys.executable], work
        shutil.rmtree(work, ignore_errors=True)
        return
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    shutil.chown(work, USER)
    # Our interpreter may live where the test user cannot reach (e.g. under /root): use the
    # system's Python of the same version, with our packages on its path.
    python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert python.exists(), (
        f"{python} is needed to run the unprivileged test (Debian package "
        f"python{sys.version_info.major}.{sys.version_info.minor}); `make test` installs it"
    )
    path = os.pathsep.join([*site.getsitepackages(), str(REPO)])
    prefix = ["runuser", "-u", USER, "--", "env", f"PYTHONPATH={path}", f"HOME={work}"]
    # Its runs go to WORK/records, whatever store the tests before it named.
    yield [*prefix, f"PRECIP_HOME={work}/home", f"PRECIP_RECORDS={work}/records", str(python)], work
    shutil.rmtree(work, ignore_errors=True)


def test_the_local_cloud_works_for_an_ordinary_user(unprivileged):
    command, work = unprivileged
    script = work / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [*command, str(script), str(work)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["who"] == [f"root\n{result['ids'][0]}\n", f"root\n{result['ids'][1]}\n"]
    assert result["marker"] == ["0\n0\n0\n", "1\n1\n1\n"]
    assert not Path("/etc/precip-marker").exists() and not Path("/etc/app/conf").exists()
    assert not Path("/dev/shm/precip-marker").exists()
    assert result["put"] == ["payload\n", "payload\n"]
    assert result["got"] == "payload\n"
    # As a root login on a cloud: root's home (for ~, relative paths and SFTP) and PATH.
    assert result["as_root_logs_in"] == ["/root\n/root root root\n/usr/sbin/useradd\nx\npayload\n"]
    assert "logging in as 'wf' is not possible" in result["other_user"]
    # Refused as root inside, the message says root (not the host's login) and why.
    assert "/usr/local/bin/in.txt on instance" in result["host_owned"]
    assert (
        " as root: Permission denied (root inside an ordinary user's local instance "
        in (result["host_owned"])
    )
    assert "was ended, with everything it started there" in result["timeout"]
    assert result["sleeping_past_timeout"] == ["0\n", "0\n"]
    assert result["sleeping_before"] and not result["sleeping_after"]
    assert result["verify"] == "intact"
    # Logging in as other users is refused (above): it declares no ANY_LOGIN_USER.
    assert result["capabilities"] == ["RUN_LISTING"] and result["ssh_users"] == ["root"]
    assert result["listed"] == sorted([instance_id, True] for instance_id in result["ids"])


def test_the_pool_example_says_why_it_cannot_create_its_user_and_leaves_nothing(unprivileged):
    command, work = unprivileged
    done = subprocess.run(
        [*command, str(REPO / "examples" / "condor_pool.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=work,
    )
    assert done.returncode == 1
    assert "cannot create the user wf on i-" in done.stderr
    assert "on the local cloud that needs root" in done.stderr
    (run,) = (work / "records").iterdir()
    kinds = [json.loads(line)["type"] for line in (run / "events.jsonl").open()]
    assert kinds.count("instance.launched") == kinds.count("instance.terminated") == 3
