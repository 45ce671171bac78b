"""An OpenStack API endpoint for the tests: Keystone v3, Nova, Glance and Neutron on
127.0.0.1, answering openstacksdk's real HTTP requests as the API reference says — status
codes, bodies and error formats — and as strict as a real cloud is: a token on every
request, required fields, Nova's microversion headers, Neutron's filter validation.

There is no moto for OpenStack. This is the small part of the APIs precip-repro (through
openstacksdk) uses, written from the api-ref (docs.openstack.org/api-ref/{identity,compute,
image,network}) and openstacksdk's own request paths:

- Keystone: ``GET /identity`` (300, versions), ``GET /identity/v3``, ``POST
  /identity/v3/auth/tokens`` with the ``password`` or ``application_credential`` method
  (201, ``X-Subject-Token``, the service catalog); 401 ``{"error": …}`` otherwise;
- Nova (``/compute/v2.1``): servers, flavors, key pairs, limits; microversions 2.1 to 2.96
  (``OpenStack-API-Version: compute X`` or ``X-OpenStack-Nova-API-Version``; 406 beyond);
  errors as ``{"itemNotFound": {"code": 404, "message": …}}`` …; a server's ``fault``
  when it is in ERROR;
- Glance (``/image/v2``): images, 404 as Glance's plain page;
- Neutron (``/network/v2.0``): networks, ports, security groups and rules, floating IPs;
  errors as ``{"NeutronError": {"type": …, "message": …, "detail": ""}}``.

Each request is logged (:attr:`OpenStackAPI.requests`) for the tests to read. A
``hypervisor`` (see :mod:`tests.openstack_cloud`) boots a machine for each server that
becomes ACTIVE and for each floating address associated with one.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs

from tests.openstack_compute import Compute
from tests.openstack_http import STATUS_TEXT, Logged, Reply, Request, plain_error
from tests.openstack_image import Image
from tests.openstack_network import Network

REGION = "RegionOne"
USER = "precip-user"
USER_DOMAIN = "Default"
PROJECT = "precip-project"
PASSWORD = "precip-test-password-3b9d1c"  # the tests grep for it everywhere
APP_CREDENTIAL_ID = "aa1f8c9e2b7d4e5f8a9b0c1d2e3f4a5b"
APP_CREDENTIAL_SECRET = "precip-app-credential-secret-7e2a"
MIN_MICROVERSION = "2.1"
MAX_MICROVERSION = "2.96"


class Hypervisor(Protocol):
    def boot(self, server: dict[str, Any], address: str, public_key: str) -> bool:
        """Start the server's machine at ``address``; False when it cannot (never boots)."""
        ...

    def halt(self, server_id: str, address: str | None = None) -> None: ...


class OpenStackAPI:
    """The endpoint's state and its WSGI app. ``network_prefix`` is ``127.N``: the fixed
    addresses are handed out from ``127.N.1.0/24`` and the floating ones from
    ``127.N.2.0/24`` (``floating_pool`` of them)."""

    def __init__(
        self,
        *,
        network_prefix: str,
        max_instances: int = 40,
        floating_pool: int = 64,
        networks: Iterable[str] = ("private",),
    ) -> None:
        self.lock = threading.RLock()
        self.base = ""  # set by the server once it listens
        self.requests: list[Logged] = []
        self.latency: dict[tuple[str, str], float] = {}
        """(method, path pattern) → seconds every such request is held back."""
        self.hypervisor: Hypervisor | None = None
        self.user_id = uuid.uuid4().hex
        self.project_id = uuid.uuid4().hex
        self.password = PASSWORD
        self.app_credentials = {APP_CREDENTIAL_ID: APP_CREDENTIAL_SECRET}
        self.tokens: dict[str, str] = {}  # token → how it was got
        self.reservations: set[str] = set()
        """Chameleon leases' reservation ids: a server hinted another goes to ERROR."""
        self.compute = Compute(self, max_instances=max_instances)
        self.image = Image(self)
        self.network = Network(
            self, prefix=network_prefix, floating_pool=floating_pool, networks=networks
        )

    # -- set-up the tests use -----------------------------------------------------------

    def log_of(self, method: str, pattern: str) -> list[Logged]:
        """The requests logged with ``method`` and a path matching ``pattern``."""
        with self.lock:
            return [
                r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)
            ]

    def catalog(self) -> list[dict[str, Any]]:
        def service(kind: str, name: str, path: str) -> dict[str, Any]:
            return {
                "id": uuid.uuid5(uuid.NAMESPACE_URL, kind).hex,
                "type": kind,
                "name": name,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, kind + interface).hex,
                        "interface": interface,
                        "region": REGION,
                        "region_id": REGION,
                        "url": f"{self.base}{path}",
                    }
                    for interface in ("public", "internal")
                ],
            }

        return [
            service("identity", "keystone", "/identity"),
            service("compute", "nova", "/compute/v2.1"),
            service("image", "glance", "/image"),
            service("network", "neutron", "/network"),
        ]

    # -- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        logged = Logged(method=method, path=path, query=query, headers=headers, body=None)
        with self.lock:
            self.requests.append(logged)
        status, body, out_headers = self._answer(method, path, query, headers, raw, logged)
        logged.status = status
        if isinstance(body, bytes | str):
            data = body.encode() if isinstance(body, str) else body
            content_type = out_headers.pop("Content-Type", "text/html; charset=UTF-8")
        elif body is None:
            data, content_type = b"", out_headers.pop("Content-Type", "application/json")
        else:
            data = json.dumps(body).encode()
            content_type = "application/json"
        response_headers = [("Content-Type", content_type), ("Content-Length", str(len(data)))]
        response_headers += list(out_headers.items())
        start_response(f"{status} {STATUS_TEXT.get(status, 'Unknown')}", response_headers)
        return [data]

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        raw: bytes,
        logged: Logged,
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise Reply(400, plain_error(400, "Malformed request body")) from None
            logged.body = body
            for (held_method, pattern), seconds in self.latency.items():
                if method == held_method and re.fullmatch(pattern, path):
                    time.sleep(seconds)
            request = Request(method, path, query, headers, body, self.base)
            return self._route(request)
        except Reply as reply:
            return reply.status, reply.body, reply.headers

    def _route(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        path = request.path.rstrip("/") or "/"
        if path == "/identity" or path.startswith("/identity/"):
            return self._identity(request, path[len("/identity") :])
        for prefix, service in (
            ("/compute", self.compute),
            ("/image", self.image),
            ("/network", self.network),
        ):
            if path == prefix or path.startswith(prefix + "/"):
                rest = path[len(prefix) :]
                if rest and rest not in ("/v2.1", "/v2", "/v2.0"):
                    self._authenticated(request, service.name)
                return service.handle(request, rest)
        raise Reply(404, plain_error(404, "The resource could not be found."))

    # -- Keystone -------------------------------------------------------------------------

    def _version_v3(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def _identity(self, request: Request, rest: str) -> tuple[int, Any, dict[str, str]]:
        if rest == "" and request.method == "GET":
            return 300, {"versions": {"values": [self._version_v3()]}}, {}
        if rest == "/v3" and request.method == "GET":
            return 200, {"version": self._version_v3()}, {}
        if rest == "/v3/auth/tokens" and request.method == "POST":
            return self._issue_token(request.body)
        raise Reply(404, _keystone_error(404, "Not Found", "The resource could not be found."))

    def _issue_token(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        identity = _field(body, "auth", "identity")
        methods = _field(body, "auth", "identity", "methods")
        if not isinstance(methods, list) or not methods:
            raise _bad_auth("identity/methods", methods)
        how = methods[0]
        token_extra: dict[str, Any] = {}
        if how == "password":
            user = _field(identity, "password", "user")
            password = user.get("password")
            if password is None:
                raise _bad_auth("identity/password/user/password", None)
            known_user = user.get("id") == self.user_id or (
                user.get("name") == USER
                and _field(user, "domain").get("name", _field(user, "domain").get("id"))
                in (USER_DOMAIN, "default")
            )
            if not known_user or password != self.password:
                raise Reply(401, _unauthorized())
            scope = (body["auth"].get("scope") or {}).get("project")
            if scope is not None and scope.get("name", scope.get("id")) not in (
                PROJECT,
                self.project_id,
            ):
                raise Reply(401, _unauthorized())
        elif how == "application_credential":
            credential = _field(identity, "application_credential")
            secret = credential.get("secret")
            if secret is None:
                raise _bad_auth("identity/application_credential/secret", None)
            if self.app_credentials.get(credential.get("id", "")) != secret:
                raise Reply(401, _unauthorized())
            token_extra["application_credential"] = {
                "id": credential["id"],
                "name": "precip",
                "restricted": True,
            }
        else:
            raise Reply(401, _unauthorized())
        token = "gAAAA" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = how
        domain = {"id": "default", "name": USER_DOMAIN}
        issued = {
            "token": {
                "methods": [how],
                "user": {
                    "id": self.user_id,
                    "name": USER,
                    "domain": domain,
                    "password_expires_at": None,
                },
                "project": {"id": self.project_id, "name": PROJECT, "domain": domain},
                "roles": [{"id": uuid.uuid4().hex, "name": "member"}],
                "is_domain": False,
                "catalog": self.catalog(),
                "expires_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600)
                ),
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                "audit_ids": [secrets.token_urlsafe(16)],
                **token_extra,
            }
        }
        return 201, issued, {"X-Subject-Token": token}

    def _authenticated(self, request: Request, service: str) -> None:
        token = request.headers.get("X-Auth-Token")
        with self.lock:
            known = token is not None and token in self.tokens
        if not known:
            raise Reply(401, _keystone_error(401, "Unauthorized", _UNAUTHORIZED))


_UNAUTHORIZED = "The request you have made requires authentication."


def _keystone_error(code: int, title: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "title": title, "message": message}}


def _unauthorized() -> dict[str, Any]:
    return _keystone_error(401, "Unauthorized", _UNAUTHORIZED)


def _bad_auth(field: str, value: Any) -> Reply:
    return Reply(
        400,
        _keystone_error(
            400, "Bad Request", f"Invalid input for field '{field}': {value!r} is not valid"
        ),
    )


def _field(body: Any, *keys: str) -> Any:
    """``body[keys[0]][keys[1]]…``, or Keystone's 400 naming the missing property."""
    value = body
    for index, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise Reply(
                400,
                _keystone_error(
                    400,
                    "Bad Request",
                    f"Invalid input for field '{'/'.join(keys[:index]) or '/'}': "
                    f"'{key}' is a required property",
                ),
            )
        value = value[key]
    return value
