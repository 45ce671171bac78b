"""The boto3 EC2 client of one endpoint and region: where it is, how it retries, and how
its errors become :class:`CloudError` with the cloud's code and request id.

Credentials go straight into the boto3 client and nowhere else: not into the record (which
holds the endpoint, the region and a fingerprint of the access key id), not into reprs,
log lines or exception messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, TypeVar, overload
from urllib.parse import urlsplit

import botocore.config
import botocore.exceptions
import botocore.parsers

from precip_repro.clouds.aws_credentials import AWSCredentials, configured_endpoint
from precip_repro.clouds.base import credential_fingerprint
from precip_repro.exceptions import CloudError, InvalidOption

__all__ = ["EC2Client", "access_key_fingerprint", "parse_endpoint", "parse_region"]

T = TypeVar("T")

_ZONE_RE: Final = re.compile(r"([a-z]{2}(?:-[a-z]+)+-\d+)([a-z])")
_REGION_RE: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
"""What botocore takes as a region name (a host label: private clouds name theirs freely,
``RegionOne`` say)."""


def parse_endpoint(endpoint: str) -> str:
    """The seed's endpoint forms as a URL for boto3.

    ``ec2.us-west-2.amazonaws.com`` → ``https://ec2.us-west-2.amazonaws.com``; a URL with a
    scheme, port and path (``http://host:8773/services/Cloud``) is kept as it is.
    """
    if not isinstance(endpoint, str):
        raise InvalidOption("endpoint", endpoint, ["a host name or an http(s) URL"])
    endpoint = endpoint.strip()
    if not endpoint:
        raise InvalidOption("endpoint", endpoint, ["a host name or an http(s) URL"])
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption("endpoint", endpoint, ["https://host[:port][/path]", "host"])
    return endpoint.rstrip("/")


def parse_region(region: str) -> tuple[str, str | None]:
    """A region, or an availability zone standing for one: ``us-west-2c`` → (``us-west-2``,
    placement ``us-west-2c``)."""
    if not isinstance(region, str) or not _REGION_RE.fullmatch(region):
        raise InvalidOption(
            "region",
            region,
            [
                "a region such as us-east-1 (letters, digits and -)",
                "an availability zone such as us-west-2c",
            ],
        )
    zone = _ZONE_RE.fullmatch(region)
    if zone:
        return zone.group(1), region
    return region, None


def access_key_fingerprint(access_key: str) -> str:
    """What the record keeps of an access key id: enough to tell two apart, no more."""
    return credential_fingerprint(access_key)


_NOT_THE_API: Final = "check the endpoint URL and any proxy between this machine and the cloud"


def _server_error_as_generic(response_dict: dict[str, Any], **_: Any) -> None:
    """A botocore ``before-parse`` hook: a 5xx answered with a page that is not XML (a
    proxy's ``<!DOCTYPE html>`` page, a crashed server's, plain text) becomes an empty body.

    botocore takes a 5xx for a generic server error — and retries it — only when its body
    is empty or starts with ``<html>``; any other page it parses as XML, fails, and raises
    a ResponseParserError that is never retried (boto/botocore#2463). Emptied, the answer
    is the transient error it is: retried, and in the end a ClientError with its status."""
    body = response_dict.get("body")
    if int(response_dict.get("status_code") or 0) >= 500 and isinstance(body, bytes):
        head = body.lstrip()[:5].lower()
        if not head.startswith(b"<") or head.startswith((b"<!", b"<html")):
            response_dict["body"] = b""


class EC2Client:
    """boto3's EC2 client for one endpoint and region, and :meth:`call`, which turns what
    goes wrong into :class:`CloudError`. ``kind`` names the cloud in its messages."""

    def __init__(
        self, *, kind: str, endpoint: str | None, region: str, credentials: AWSCredentials
    ) -> None:
        self.kind = kind
        self.where = f"{kind} at {endpoint or 'AWS'} ({region})"
        self.endpoint = endpoint
        config = botocore.config.Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="precip-repro",
        )
        try:
            self.client: Any = credentials.client(
                "ec2", endpoint_url=endpoint, region_name=region, config=config
            )
            if endpoint is None:  # a profile's endpoint_url, AWS_ENDPOINT_URL: recorded
                self.endpoint = configured_endpoint(credentials, self.client)
                self.where = f"{kind} at {self.endpoint or 'AWS'} ({region})"
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise CloudError(f"cannot set up the EC2 client for {self.where}: {exc}") from None
        self.client.meta.events.register("before-parse.ec2", _server_error_as_generic)

    def __repr__(self) -> str:
        return f"EC2Client({self.where!r})"

    @overload
    def call(
        self, operation: str, func: Callable[..., T], *, tolerate: None = None, **params: Any
    ) -> T: ...

    @overload
    def call(
        self, operation: str, func: Callable[..., T], *, tolerate: str, **params: Any
    ) -> T | None: ...

    def call(
        self, operation: str, func: Callable[..., T], *, tolerate: str | None = None, **params: Any
    ) -> T | None:
        """Call the API; turn its errors into :class:`CloudError` with code and request id
        (the error code ``tolerate`` returns None instead)."""
        try:
            return func(**params)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code")
            if tolerate is not None and code == tolerate:
                return None
            request_id = exc.response.get("ResponseMetadata", {}).get("RequestId")
            if code is None:  # an answer that parsed, but holds no EC2 error: not the API
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                raise CloudError(
                    f"{operation} on {self.where} failed: HTTP {status}, and the answer "
                    f"holds no EC2 error: {_NOT_THE_API}",
                    code=str(status),
                ) from None
            raise CloudError(
                f"{operation} on {self.where} failed: {code}: {error.get('Message')}"
                + (f" (request {request_id})" if request_id else ""),
                code=code,
                request_id=request_id,
            ) from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
        ) as exc:
            raise CloudError(
                f"{operation} on {self.where} failed: the endpoint cannot be reached "
                f"({exc}); check the endpoint URL, that the cloud is up, and the network",
                code="EndpointUnreachable",
            ) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CloudError(f"{operation} on {self.where} failed: {exc}") from None
        except botocore.parsers.ResponseParserError as exc:
            # Not an exception botocore's others derive from: a page a proxy put in the
            # cloud's place (a login page, a 403) would escape as no CloudError at all.
            answer = " ".join(str(exc).split())
            raise CloudError(
                f"{operation} on {self.where} failed: the endpoint answered with what is "
                f"not an EC2 API response ({answer[:300]}{'…' if len(answer) > 300 else ''}); "
                f"{_NOT_THE_API}",
                code="UnparseableResponse",
            ) from None

    def close(self) -> None:
        self.client.close()
