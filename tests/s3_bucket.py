"""A real S3 HTTP endpoint for the tests: a bucket of the session's moto server (the one
the EC2 tests use), reached through boto3 as users reach S3, and the requests it served.

Each "machine" is an environment of its own: ``PRECIP_HOME`` (keys), ``HOME`` and the
local cache, so that what one machine recorded reaches another only through the bucket.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY

CONSOLE = Path(sys.executable).parent


class RequestLog(logging.Handler):
    """The request lines the moto server logs (``GET /bucket/key HTTP/1.1``)."""

    _LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._lock = threading.Lock()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = self._LINE.search(record.getMessage())
        if found:
            with self._lock:
                self.lines.append((found.group(1), found.group(2)))

    @contextmanager
    def watching(self) -> Iterator[list[tuple[str, str]]]:
        """The requests served while the block runs."""
        with self._lock:
            start = len(self.lines)
        seen: list[tuple[str, str]] = []
        try:
            yield seen
        finally:
            with self._lock:
                seen.extend(self.lines[start:])


class S3Bucket:
    """A fresh bucket; the store ``s3://<bucket>/lab`` in it."""

    def __init__(self, endpoint: Any, tmp_path: Path, requests: RequestLog) -> None:
        self.endpoint = endpoint.url
        self.name = f"precip-{secrets.token_hex(6)}"
        self.url = f"s3://{self.name}/lab"
        self.requests = requests
        self._tmp = tmp_path
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        self.client.create_bucket(Bucket=self.name)

    def env(self, machine: str = "here", **extra: str) -> dict[str, str]:
        """The environment of ``machine``: its own precip home, home and cache; the
        endpoint and credentials boto3 finds as it finds a user's."""
        root = self._tmp / "machines" / machine
        for part in ("precip", "home", "cache"):
            (root / part).mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "PRECIP_HOME": str(root / "precip"),
            "HOME": str(root / "home"),
            "PRECIP_CACHE": str(root / "cache"),
            "PRECIP_RECORDS": self.url,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }

    def cli(
        self, machine: str, *args: str, tool: str = "precip-repro", env: Mapping[str, str] = {}
    ) -> subprocess.CompletedProcess[str]:
        """A tool run on ``machine`` (its store: this bucket, unless ``args`` say)."""
        return subprocess.run(
            [str(CONSOLE / tool), *args],
            env={**self.env(machine), **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def keys(self, under: str = "") -> list[str]:
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=f"lab/{under}"
        ):
            found.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(found)

    def blob_keys(self) -> list[str]:
        return self.keys("objects/")

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body


def require_auth(endpoint_url: str, count: str) -> None:
    """moto's own switch: check credentials from now on (``0``), or never (``inf``)."""
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form's body would be parsed away
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
