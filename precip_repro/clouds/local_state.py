"""The state files of local instances: ``$PRECIP_HOME/local/instances/<id>/state.json``.

Each holds an instance's pids, address and run, written by the process that launched it;
any other process — gc's among them — finds there which instances still run, whose
launching process died, and ends them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from precip_repro.keys import precip_home

__all__ = [
    "LocalInstanceState",
    "children",
    "find_local_instance",
    "instances_dir",
    "live_local_instances",
    "start_time",
    "terminate_local",
]


def instances_dir(home: Path) -> Path:
    """Where the state directories of ``home``'s local instances are."""
    return home / "local" / "instances"


@attrs.define(kw_only=True)
class LocalInstanceState:
    """What ``state.json`` holds about a local instance."""

    instance_id: str
    cloud_id: str
    run: str
    exp: str
    slot: str
    address: str
    port: int
    image_id: str
    instance_type: str
    image_digest: str | None
    mode: str
    launcher_pid: int
    init_pid: int | None = None
    sshd_pid: int | None = None
    started_ns: int = 0
    owner_pid: int = 0
    launcher_start: int | None = None
    init_start: int | None = None
    sshd_start: int | None = None
    """When each process started (clock ticks since boot, /proc's): a pid of a state left
    behind by a reboot, or by an instance long gone, may name another process by now — gc
    must never take that for the instance, nor kill it. (States written before these were
    kept fall back on the command line and the parent.)"""

    def path(self, home: Path) -> Path:
        return instances_dir(home) / self.instance_id

    def launcher_alive(self) -> bool:
        return _alive(self.launcher_pid, self.instance_id, start=self.launcher_start)

    def init_alive(self) -> bool:
        """The instance's init (PID 1 of its namespaces), a child of the launcher."""
        if self.init_start is None and self.init_pid is not None:
            return self.launcher_alive() and _parent(self.init_pid) == self.launcher_pid
        return _alive(self.init_pid, start=self.init_start)

    def sshd_alive(self) -> bool:
        """The sshd outside the instance (an ordinary user's mode; its config is in the
        instance's state directory, named by its id)."""
        return _alive(self.sshd_pid, self.instance_id, start=self.sshd_start)

    def live(self) -> bool:
        """Whether any of the instance's processes still runs: it holds its address and
        costs memory until something ends it."""
        return self.launcher_alive() or self.sshd_alive()

    def owner_alive(self) -> bool:
        """Whether the process that launched the instance (and records it) still runs."""
        if self.owner_pid <= 0:
            return False
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: it exists
            return True
        return True

    def save(self, home: Path) -> None:
        directory = self.path(home)
        tmp = directory / "state.json.tmp"
        tmp.write_text(json.dumps(attrs.asdict(self), sort_keys=True, indent=1))
        tmp.replace(directory / "state.json")

    @classmethod
    def load(cls, directory: Path) -> LocalInstanceState:
        data: dict[str, Any] = json.loads((directory / "state.json").read_text())
        return cls(**data)


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from its third field (the state) on: the command name before it
    may hold spaces and parentheses."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot: with the pid, it names one process
    (a pid alone is reused)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


def _alive(pid: int | None, marker: str | None = None, *, start: int | None = None) -> bool:
    """Whether ``pid`` runs and is the process meant: the one that started at ``start``,
    or, where that is not known, one whose command line mentions ``marker``."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    if start is not None:
        return len(fields) > 19 and int(fields[19]) == start
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker is None or marker.encode() in cmdline


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (none once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _load(directory: Path) -> LocalInstanceState | None:
    try:
        return LocalInstanceState.load(directory)
    except (OSError, ValueError, TypeError):
        return None


def live_local_instances(home: Path | None = None) -> Iterator[LocalInstanceState]:
    """Every local instance whose processes still run, whoever started it."""
    root = instances_dir(home or precip_home())
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        state = _load(directory)
        if state is not None and state.live():
            yield state


def find_local_instance(home: Path, instance_id: str) -> LocalInstanceState | None:
    """The state of local instance ``instance_id`` under ``home``, live or not; None when
    there is none."""
    if Path(instance_id).name != instance_id or instance_id in ("", ".", ".."):
        return None  # an id read from a record must not name a directory elsewhere
    return _load(instances_dir(home) / instance_id)


def terminate_local(state: LocalInstanceState, home: Path) -> None:
    """End a local instance's processes and remove its state (also from another process)."""
    for pid, alive in ((state.init_pid, state.init_alive), (state.sshd_pid, state.sshd_alive)):
        if pid and alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if state.launcher_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.launcher_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        state.launcher_alive() or state.init_alive() or state.sshd_alive()
    ):
        time.sleep(0.01)
    shutil.rmtree(state.path(home), ignore_errors=True)
