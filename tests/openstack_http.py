"""What the test OpenStack endpoint's parts share: a request, an answer given by raising,
the request log's entries."""

from __future__ import annotations

import time
import uuid
from typing import Any

import attrs


@attrs.define
class Logged:
    """One request as the endpoint saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


class Reply(Exception):
    """An answer a handler gives by raising (errors, mostly)."""

    def __init__(
        self, status: int, body: Any = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_id() -> str:
    return str(uuid.uuid4())


@attrs.define
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    base: str

    def one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    300: "Multiple Choices",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    500: "Internal Server Error",
}


def plain_error(code: int, message: str) -> str:
    return f"{code} {STATUS_TEXT.get(code, '')}\n\n{message}\n\n   "


def nova_error(code: int, message: str) -> Reply:
    name = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}
    return Reply(code, {name.get(code, "computeFault"): {"code": code, "message": message}})


def neutron_error(code: int, kind: str, message: str) -> Reply:
    return Reply(code, {"NeutronError": {"type": kind, "message": message, "detail": ""}})
