"""Host keys pinned per instance id at first contact and never accepted when they change —
not per address, since clouds reuse addresses."""

from __future__ import annotations

import threading

import paramiko

from precip_repro.exceptions import HostKeyChanged
from precip_repro.keys import fingerprint
from precip_repro.ssh.endpoint import Endpoint

__all__ = ["HostKeyPins"]


class HostKeyPins:
    """Host keys pinned per instance id for one run. Thread-safe."""

    def __init__(self) -> None:
        self._pins: dict[str, paramiko.PKey] = {}
        self._lock = threading.Lock()

    def check(self, endpoint: Endpoint, key: paramiko.PKey) -> str:
        """Pin ``key`` at first contact; raise :class:`HostKeyChanged` if it differs later."""
        with self._lock:
            pinned = self._pins.setdefault(endpoint.instance_id, key)
        if pinned.asbytes() != key.asbytes():
            raise HostKeyChanged(
                f"instance {endpoint.instance_id} ({endpoint.slot}) at "
                f"{endpoint.host}:{endpoint.port} presented host key {fingerprint(key)} "
                f"({key.get_name()}), but {fingerprint(pinned)} was pinned at first contact: "
                "something else answers at that address, or the instance was replaced. "
                "Not connecting; deprovision and provision it again if this is expected",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            )
        return fingerprint(key)

    def get(self, instance_id: str) -> paramiko.PKey | None:
        with self._lock:
            return self._pins.get(instance_id)
