"""Where a store is: a directory, or ``s3://bucket/prefix``; and where an S3 store's local
cache lives.

The cache is ``$PRECIP_CACHE`` if set, else ``cache/`` in the precip home (``$PRECIP_HOME``,
else ``~/.precip``); an S3 store's runs are cached in
``<cache>/s3/<endpoint>/<bucket>/<prefix>/runs/``, one run directory each, in the layout of a
local store: every reader reads them as it reads a directory of runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import attrs

from precip_repro.exceptions import StoreError

__all__ = ["S3Location", "cache_root", "is_url"]

_SCHEME: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_url(text: str) -> bool:
    """Whether ``text`` names a store by URL (``s3://…``) rather than a directory."""
    return bool(_SCHEME.match(text))


def cache_root() -> Path:
    """``$PRECIP_CACHE``, else the precip home's ``cache``."""
    found = os.environ.get("PRECIP_CACHE")
    if found:
        return Path(found)
    from precip_repro.keys import precip_home  # paramiko's: loaded for an S3 store only

    return precip_home() / "cache"


@attrs.frozen
class S3Location:
    """A bucket and a key prefix (no leading or trailing ``/``; may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket[/prefix]``; :class:`StoreError` for another scheme or a bad bucket."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise StoreError(
                f"{url!r}: a store is a directory or s3://BUCKET/PREFIX ({parts.scheme}:// is "
                "not one; MinIO, Ceph and other S3-compatible stores are s3:// with "
                "AWS_ENDPOINT_URL set)",
                store=url,
            )
        if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
            raise StoreError(
                f"{url!r}: {parts.netloc!r} is not a bucket name (3 to 63 lower-case letters, "
                "digits, dots and hyphens)",
                store=url,
            )
        prefix = parts.path.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise StoreError(f"{url!r}: the prefix has an empty, . or .. part", store=url)
        return cls(parts.netloc, prefix)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        """The key of ``parts`` under the prefix."""
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def key_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def cache_dir(self, endpoint: str | None) -> Path:
        """This store's directory in the local cache; ``endpoint`` the S3 endpoint's URL
        (None: AWS's), so that two endpoints' buckets of one name never share a cache."""
        where = urlsplit(endpoint).netloc if endpoint else "aws"
        where = re.sub(r"[^A-Za-z0-9.-]", "_", where) or "aws"
        return cache_root().joinpath("s3", where, self.bucket, *self.prefix.split("/"), "runs")
