"""Glance of the test OpenStack endpoint (see :mod:`tests.openstack_api`): images."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from tests.openstack_http import Reply, Request, new_id, now_iso, plain_error

if TYPE_CHECKING:
    from tests.openstack_api import OpenStackAPI


class Image:
    """Glance v2: images."""

    name = "image"

    def __init__(self, api: OpenStackAPI) -> None:
        self.api = api
        self.images: dict[str, dict[str, Any]] = {}

    def add(self, name: str, *, silent: bool = False, fault: str | None = None) -> str:
        """An image; ``silent``: its servers boot but never answer ssh; ``fault``: they go
        to ERROR with that fault message."""
        image_id = new_id()
        digest = hashlib.sha512(name.encode()).hexdigest()
        self.images[image_id] = {
            "id": image_id,
            "name": name,
            "status": "active",
            "visibility": "public",
            "container_format": "bare",
            "disk_format": "qcow2",
            "size": 1 << 30,
            "checksum": hashlib.md5(name.encode()).hexdigest(),
            "os_hash_algo": "sha512",
            "os_hash_value": digest,
            "min_disk": 0,
            "min_ram": 0,
            "protected": False,
            "tags": [],
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "owner": self.api.project_id,
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
            "silent": silent,
            "fault": fault,
        }
        return image_id

    @staticmethod
    def _shown(image: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in image.items() if k not in ("silent", "fault")}

    def handle(self, request: Request, rest: str) -> tuple[int, Any, dict[str, str]]:
        base = self.api.base
        if rest == "" and request.method == "GET":
            versions = [
                {
                    "id": f"v2.{minor}",
                    "status": "CURRENT" if minor == 16 else "SUPPORTED",
                    "links": [{"rel": "self", "href": f"{base}/image/v2/"}],
                }
                for minor in (16, 15, 9, 0)
            ]
            return 300, {"versions": versions}, {}
        parts = rest.strip("/").split("/")
        with self.api.lock:
            if parts[:2] == ["v2", "images"] and request.method == "GET":
                if len(parts) == 2:
                    found = list(self.images.values())
                    for key in ("name", "status", "visibility", "id"):
                        wanted = request.one(key)
                        if wanted is not None:
                            found = [i for i in found if str(i[key]) == wanted]
                    return (
                        200,
                        {
                            "images": [self._shown(i) for i in found],
                            "schema": "/v2/schemas/images",
                            "first": "/v2/images",
                        },
                        {},
                    )
                if len(parts) == 3:
                    image = self.images.get(parts[2])
                    if image is None:
                        raise Reply(404, plain_error(404, f"No image found with ID {parts[2]}"))
                    return 200, self._shown(image), {}
        raise Reply(404, plain_error(404, "The resource could not be found."))
