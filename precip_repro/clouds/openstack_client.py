"""The openstacksdk connection of one OpenStack cloud, from a ``clouds.yaml`` entry or the
``OS_*`` environment of an openrc file (passwords and application credentials alike), and
how the SDK's errors become :class:`CloudError` naming what went wrong.

Credentials go into the SDK's connection and to the experiment as secrets to redact, and
nowhere else: the record holds the auth URL, the region, the project and a fingerprint of
the user or application-credential id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import keystoneauth1.exceptions as ksa
import openstack
import openstack.config
import openstack.exceptions as sdk

from precip_repro.clouds.base import credential_fingerprint
from precip_repro.exceptions import CloudError

__all__ = [
    "SECRET_FIELDS",
    "CloudConfig",
    "OpenStackClient",
    "cloud_problem",
    "load_config",
]

T = TypeVar("T")

SECRET_FIELDS: Final = {
    "password": "OS_PASSWORD",
    "application_credential_secret": "OS_APPLICATION_CREDENTIAL_SECRET",
    "token": "OS_TOKEN",
}
"""The auth fields that are secrets, and the openrc variable each is named for."""


@attrs.frozen(kw_only=True)
class CloudConfig:
    """One cloud's settings as openstacksdk resolved them (clouds.yaml or environment)."""

    label: str
    """``clouds.yaml`` entry ``chameleon`` or ``the OS_* environment``: how messages name it."""
    cloud_region: Any = attrs.field(repr=False)
    """openstacksdk's CloudRegion (holds the credentials: never shown)."""

    @property
    def auth(self) -> dict[str, Any]:
        return dict(self.cloud_region.config.get("auth") or {})

    @property
    def auth_url(self) -> str | None:
        url = self.auth.get("auth_url")
        return str(url).rstrip("/") if url else None

    @property
    def region_name(self) -> str | None:
        return self.cloud_region.region_name or None

    def secrets(self) -> dict[str, str]:
        """The secrets of its auth, by the openrc variable each is named for."""
        return {
            variable: str(self.auth[field])
            for field, variable in SECRET_FIELDS.items()
            if self.auth.get(field)
        }

    def identity(self) -> str | None:
        """Who authenticates: the application credential's id, else the user's id or name."""
        auth = self.auth
        found = auth.get("application_credential_id") or auth.get("user_id")
        found = found or auth.get("username") or auth.get("application_credential_name")
        return str(found) if found else None


def _searched() -> str:
    given = os.environ.get("OS_CLIENT_CONFIG_FILE")
    paths = [given] if given else []
    paths += list(openstack.config.loader.CONFIG_FILES)
    return ", ".join(paths)


def load_config(cloud: str | None, region: str | None = None) -> CloudConfig:
    """The settings of ``clouds.yaml`` entry ``cloud`` — or, without one, of ``$OS_CLOUD``
    or the ``OS_*`` environment an openrc file sets. :class:`CloudError` naming what is
    missing: the entry (with those there are), the file, or the environment."""
    try:
        config = openstack.config.OpenStackConfig()
    except (sdk.ConfigException, OSError, ValueError) as exc:
        raise CloudError(f"cannot read clouds.yaml: {exc}", code="ConfigInvalid") from None
    name = cloud or os.environ.get("OS_CLOUD") or None
    if name is None and not os.environ.get("OS_AUTH_URL"):
        raise CloudError(
            'no OpenStack cloud given: name a clouds.yaml entry (cloud="…"), set OS_CLOUD, '
            "or source the project's openrc file (OS_AUTH_URL is not set)",
            code="NoCloudGiven",
        )
    if name is not None and name not in config.get_cloud_names():
        if config.config_filename is None:
            where = f"no clouds.yaml found (looked for {_searched()})"
        else:
            known = sorted(n for n in config.get_cloud_names() if n != "envvars")
            where = f"{config.config_filename} has {', '.join(map(repr, known)) or 'no entries'}"
        raise CloudError(
            f"OpenStack cloud {name!r} is not a clouds.yaml entry: {where}", code="UnknownCloud"
        )
    try:
        found = config.get_one(cloud=name, region_name=region or None)
    except sdk.ConfigException as exc:
        raise CloudError(
            f"OpenStack cloud {name or 'of the OS_* environment'}: {exc}", code="ConfigInvalid"
        ) from None
    label = f"clouds.yaml entry {name!r}" if name else "the OS_* environment"
    return CloudConfig(label=label, cloud_region=found)


def cloud_problem(cloud: str | None, region: str | None = None) -> str | None:
    """Why :func:`load_config` would refuse ``cloud``, or None: asks nothing of the cloud."""
    try:
        load_config(cloud, region)
    except CloudError as exc:
        return str(exc)
    return None


def _error_type(exc: sdk.HttpException) -> str | None:
    """The error's name in its body: Neutron's ``type``, Nova's fault key."""
    response = getattr(exc, "response", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        return None
    if isinstance(body, dict) and len(body) == 1:
        key, value = next(iter(body.items()))
        if key == "NeutronError" and isinstance(value, dict):
            return str(value.get("type") or key)
        return str(key)
    return None


class OpenStackClient:
    """The SDK connection of one cloud, authenticated at once (wrong credentials are an
    error now, before anything starts), and :meth:`call`."""

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        region = f" ({config.region_name})" if config.region_name else ""
        self.where = f"OpenStack {config.label} at {config.auth_url}{region}"
        try:
            self.conn: Any = openstack.connection.Connection(config=config.cloud_region)
        except (sdk.SDKException, ksa.ClientException) as exc:
            raise CloudError(f"cannot set up {self.where}: {exc}", code="ConfigInvalid") from None
        self.call("authenticate", self.conn.authorize)
        self.project_id: str | None = self.conn.current_project_id

    def __repr__(self) -> str:
        return f"OpenStackClient({self.where!r})"

    @property
    def project(self) -> str | None:
        auth = self.config.auth
        return auth.get("project_name") or auth.get("project_id") or self.project_id

    def identity_fingerprint(self) -> str | None:
        identity = self.config.identity()
        return credential_fingerprint(identity) if identity else None

    def call(self, operation: str, func: Callable[..., T], *args: Any, **params: Any) -> T:
        """Call the SDK; what goes wrong becomes :class:`CloudError` with a code: the
        body's error type (``IpAddressGenerationFailure``, ``itemNotFound`` …),
        ``QuotaExceeded`` for a quota, ``Unauthorized`` for credentials refused."""
        try:
            return func(*args, **params)
        except sdk.NotFoundException as exc:
            raise CloudError(
                f"{operation} on {self.where}: {(exc.details or str(exc)).strip()}",
                code=_error_type(exc) or "NotFound",
            ) from None
        except sdk.HttpException as exc:
            code = _error_type(exc) or str(exc.status_code)
            detail = (exc.details or str(exc)).strip()
            if "quota exceeded" in detail.lower() or code == "OverQuota":
                code = "QuotaExceeded"
            raise CloudError(
                f"{operation} on {self.where} failed: {detail}"
                + (f" (request {exc.request_id})" if exc.request_id else ""),
                code=code,
                request_id=exc.request_id,
            ) from None
        except ksa.Unauthorized:
            raise self._refused() from None
        except ksa.MissingRequiredOptions as exc:
            missing = ", ".join(option.dest for option in exc.options)
            raise CloudError(
                f"{self.config.label} lacks {missing} for its auth: add them to clouds.yaml "
                "or the environment",
                code="ConfigInvalid",
            ) from None
        except (ksa.ConnectFailure, ksa.ConnectTimeout) as exc:
            raise CloudError(
                f"{operation} on {self.where} failed: the cloud cannot be reached ({exc}); "
                "check auth_url, that the cloud is up, and the network",
                code="EndpointUnreachable",
            ) from None
        except (sdk.SDKException, ksa.ClientException) as exc:
            # The SDK's authorize() raises SDKException(str(keystoneauth's error)) from
            # within its except: keystoneauth's own is the context.
            if isinstance(exc.__cause__ or exc.__context__, ksa.Unauthorized):
                raise self._refused() from None
            raise CloudError(f"{operation} on {self.where} failed: {exc}") from None

    def _refused(self) -> CloudError:
        return CloudError(
            f"{self.where}: the credentials were refused (HTTP 401); check the password or "
            f"application credential of {self.config.label}",
            code="Unauthorized",
        )

    def find(self, operation: str, func: Callable[..., T], name_or_id: str) -> T | None:
        """A ``find_*`` of the SDK: the resource, or None where the cloud has none by that
        name or id (one name held by several is an error naming them)."""
        try:
            return self.call(operation, func, name_or_id, ignore_missing=False)
        except CloudError as exc:
            code = exc.code or ""
            if code in ("404", "itemNotFound") or code.endswith("NotFound"):
                return None
            raise

    def close(self) -> None:
        self.conn.close()
