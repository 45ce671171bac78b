"""The few S3 operations an S3 store uses, through boto3, with S3's errors made ours.

boto3's own credential chain and endpoint settings apply (``AWS_PROFILE``, the ``AWS_*``
environment, SSO, an instance role; ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3`` for
MinIO, Ceph or any S3-compatible store). Large files go up and down through boto3's
transfer manager: multipart, in parallel, each part with its SHA-256 checksum.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import attrs
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from precip_repro.exceptions import StoreError, StoreUnreachable
from precip_repro.stores.location import S3Location

__all__ = ["Bucket", "Listed", "PreconditionFailed"]

_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})
_PRECONDITION: Final = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})
_NO_BUCKET: Final = frozenset({"NoSuchBucket"})
_REFUSED: Final = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403",
        "ExpiredToken",
        "InvalidToken",
        "AuthorizationHeaderMalformed",
    }
)
TRANSFER: Final = TransferConfig()
"""boto3's own defaults (multipart from 8 MiB, 10 threads): a push is as fast as
``upload_file``."""
UPLOAD_ARGS: Final = {"ChecksumAlgorithm": "SHA256"}


class PreconditionFailed(Exception):
    """A conditional write lost: the object was there (If-None-Match) or changed
    (If-Match)."""


@attrs.frozen
class Listed:
    key: str
    size: int
    modified: datetime


class Bucket:
    """One bucket and prefix, and a client for it."""

    def __init__(self, where: S3Location) -> None:
        self.where = where
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=32,
            ),
        )

    @property
    def client(self) -> Any:
        return self._client

    @property
    def endpoint(self) -> str:
        return str(self._client.meta.endpoint_url)

    def _failed(self, exc: Exception, key: str | None) -> StoreError:
        """``exc`` as one line that says what to do."""
        url = self.where.url
        what = self.where.key_url(key) if key else url
        if isinstance(exc, NoCredentialsError):
            return StoreUnreachable(
                f"no AWS credentials for the store {url}: set AWS_PROFILE (or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or log in with aws sso login",
                store=url,
            )
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = exc.response.get("Error", {}).get("Message") or code
            if code in _NO_BUCKET:
                return StoreUnreachable(
                    f"the store {url}: there is no bucket {self.where.bucket!r} at "
                    f"{self.endpoint} (create it, or check the name and AWS_ENDPOINT_URL)",
                    store=url,
                )
            if code in _REFUSED:
                return StoreUnreachable(
                    f"the store {url} refused the credentials ({code}: {message}) at "
                    f"{self.endpoint}: check AWS_PROFILE or the AWS_* keys, and that they "
                    "may read and write the bucket",
                    store=url,
                )
            return StoreError(f"the store {url}: {what}: {code}: {message}", store=url)
        return StoreUnreachable(
            f"the store {url} could not be reached at {self.endpoint}: {exc}",
            store=url,
            offline=True,
        )

    def _call(self, key: str | None, method: str, **params: Any) -> Any:
        try:
            return getattr(self._client, method)(Bucket=self.where.bucket, **params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise KeyError(key) from None
            if code in _PRECONDITION:
                raise PreconditionFailed(key) from None
            raise self._failed(exc, key) from exc
        except BotoCoreError as exc:
            raise self._failed(exc, key) from exc

    def check(self) -> None:
        """Whether the bucket is there and the credentials may use it; one clear line if
        not."""
        try:
            self._client.head_bucket(Bucket=self.where.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                exc.response["Error"]["Code"] = "NoSuchBucket"
            raise self._failed(exc, None) from exc
        except BotoCoreError as exc:
            raise self._failed(exc, None) from exc

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; None when there is none."""
        try:
            answer = self._call(key, "get_object", Key=key)
        except KeyError:
            return None
        body: bytes = answer["Body"].read()
        return body, str(answer["ETag"])

    def exists(self, key: str) -> bool:
        try:
            self._call(key, "head_object", Key=key)
        except KeyError:
            return False
        return True

    def put(
        self, key: str, body: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> None:
        """Write an object; :class:`PreconditionFailed` when a condition does not hold."""
        conditions: dict[str, str] = {}
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = if_match
        self._call(key, "put_object", Key=key, Body=body, **UPLOAD_ARGS, **conditions)

    def upload(self, path: Path, key: str) -> None:
        """A file, multipart and in parallel when large, with SHA-256 checksums."""
        try:
            self._client.upload_file(
                str(path), self.where.bucket, key, ExtraArgs=UPLOAD_ARGS, Config=TRANSFER
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._failed(exc, key) from exc
        except Exception as exc:  # s3transfer wraps the client's errors in its own
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise self._failed(cause, key) from exc
            raise

    def download(self, key: str, path: Path) -> None:
        """An object into a file; KeyError when there is none."""
        try:
            self._client.download_file(self.where.bucket, key, str(path), Config=TRANSFER)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise KeyError(key) from None
            raise self._failed(exc, key) from exc
        except BotoCoreError as exc:
            raise self._failed(exc, key) from exc

    def listing(self, prefix: str) -> Iterator[Listed]:
        """Every object whose key starts with ``prefix``, in key order."""
        token: dict[str, str] = {}
        while True:
            page = self._call(None, "list_objects_v2", Prefix=prefix, **token)
            for item in page.get("Contents", ()):
                yield Listed(item["Key"], int(item["Size"]), item["LastModified"])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, keys: list[str]) -> None:
        """Remove objects, a thousand per request."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            if batch:
                self._call(None, "delete_objects", Delete={"Objects": batch, "Quiet": True})

    def stale_uploads(self, prefix: str, before: datetime) -> Iterator[tuple[str, str]]:
        """Multipart uploads begun before ``before`` and never completed: key, upload id."""
        page = self._call(None, "list_multipart_uploads", Prefix=prefix)
        for upload in page.get("Uploads", ()):
            if upload["Initiated"] < before:
                yield upload["Key"], upload["UploadId"]

    def abort(self, key: str, upload_id: str) -> None:
        self._call(key, "abort_multipart_upload", Key=key, UploadId=upload_id)
