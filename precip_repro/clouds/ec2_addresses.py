"""Floating (elastic) addresses of an EC2-compatible cloud: allocated for an instance that has
no public address, released when it is terminated — and, should the process that allocated
one die first, found by gc through its tags."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from precip_repro.clouds.base import FloatingAddress
from precip_repro.clouds.ec2_client import EC2Client
from precip_repro.exceptions import CloudError
from precip_repro.logs import get_logger

__all__ = ["FloatingAddresses"]

log = get_logger(__name__)


class FloatingAddresses:
    """The floating addresses one cloud object allocated, by instance; ``wanted`` are the
    addresses to take first (the user's ``floating_addresses``), any the cloud gives after.
    ``tagged``: whether the cloud takes tags where it allocates (AWS; not the older clouds,
    whose addresses gc finds through their instances)."""

    def __init__(self, api: EC2Client, wanted: Sequence[str], *, tagged: bool) -> None:
        self._api = api
        self._tagged = tagged
        self._lock = threading.Lock()
        self._wanted = list(wanted)
        self._allocations: dict[str, str] = {}

    def assign(self, instance_id: str, *, run: str = "", slot: str = "") -> str:
        """Allocate a floating address and associate it (as the original did for OpenStack).

        The address is tagged with the run and slot, as instances are: an address left
        allocated by a killed process costs money too, and gc finds it by these tags."""
        with self._lock:
            wanted = self._wanted.pop(0) if self._wanted else None
        params: dict[str, Any] = {"Domain": "vpc"}
        if wanted:
            params["Address"] = wanted
        if run and self._tagged:  # elsewhere untagged: gc finds it through its instance
            tags = [{"Key": "precip:run", "Value": run}, {"Key": "precip:slot", "Value": slot}]
            params["TagSpecifications"] = [{"ResourceType": "elastic-ip", "Tags": tags}]
        allocated = self._api.call("AllocateAddress", self._api.client.allocate_address, **params)
        allocation = allocated.get("AllocationId")
        handle: str = allocation or allocated["PublicIp"]
        associate: dict[str, Any] = {"InstanceId": instance_id}
        if allocation:
            associate["AllocationId"] = allocation
        else:
            associate["PublicIp"] = allocated["PublicIp"]
        try:
            self._api.call("AssociateAddress", self._api.client.associate_address, **associate)
        except BaseException:
            # Allocated but not associated: nothing would release it at termination.
            with contextlib.suppress(CloudError):
                self.release(handle)
            raise
        with self._lock:
            self._allocations[instance_id] = handle
        address: str = allocated["PublicIp"]
        log.info("floating address associated", instance=instance_id, address=address)
        return address

    def release_of(self, instance_ids: Sequence[str]) -> None:
        """Release the addresses allocated for ``instance_ids`` (terminated by now)."""
        for instance_id in instance_ids:
            with self._lock:
                allocation = self._allocations.pop(instance_id, None)
            if allocation is not None:
                self.release(allocation)

    def release(self, handle: str) -> None:
        """Release a floating address: its allocation id, or its address where the cloud
        gives no allocation ids."""
        params = (
            {"AllocationId": handle} if handle.startswith("eipalloc-") else {"PublicIp": handle}
        )
        self._api.call("ReleaseAddress", self._api.client.release_address, **params)

    def of_runs(self) -> list[FloatingAddress]:
        """Every floating address on this cloud tagged ``precip:run`` (none where addresses
        are not tagged: the older clouds)."""
        if not self._tagged:
            return []
        found = self._api.call(
            "DescribeAddresses",
            self._api.client.describe_addresses,
            Filters=[{"Name": "tag-key", "Values": ["precip:run"]}],
        )
        return [
            FloatingAddress(
                handle=data.get("AllocationId") or data["PublicIp"],
                address=data["PublicIp"],
                instance_id=data.get("InstanceId") or None,
                tags={tag["Key"]: tag["Value"] for tag in data.get("Tags", [])},
            )
            for data in found.get("Addresses", [])
        ]
