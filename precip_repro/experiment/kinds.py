"""The experiment classes users construct, one per kind of cloud, with the seed's
positional parameters; our options are keyword-only and defined once here
(:class:`Options`, :class:`EC2Options`).

Common to all: ``record``, ``records``, ``parallel``, ``max_workers``, ``connect_timeout``,
``boot_timeout``, ``boot_max_tries``; the EC2-compatible ones add ``subnet_id``,
``security_groups``, ``key_name``, ``ssh_address`` (``public`` or ``private``),
``floating_addresses`` and ``login_user``; native OpenStack (:class:`OpenStackOptions`)
``network``, ``floating_network``, ``security_groups``, ``key_name``, ``reservation``,
``region``, ``ssh_address`` and ``login_user``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, TypedDict, Unpack, cast

from precip_repro.exceptions import InvalidOption
from precip_repro.experiment.api import Experiment
from precip_repro.keys import load_keys
from precip_repro.record.redact import MIN_SECRET
from precip_repro.session import session

__all__ = [
    "EC2Experiment",
    "EC2Options",
    "EucalyptusExperiment",
    "LocalExperiment",
    "NimbusExperiment",
    "OpenStackExperiment",
    "OpenStackOptions",
    "Options",
]

DEFAULT_REGION: Final = "us-east-1"


class Options(TypedDict, total=False):
    """The keyword options of every experiment (defaults: see each class's ``DEFAULTS``)."""

    record: bool
    """Record the run (default True); False runs without a record."""
    records: Path | str | None
    """The store the run is recorded in: a directory or ``s3://bucket/prefix`` (recorded in
    a local cache, pushed when the run finishes); default ``$PRECIP_RECORDS`` or
    ``./records``."""
    parallel: bool
    """Fan calls out to the matching instances at once (default False: in turn)."""
    max_workers: int
    """At most this many instances at once when fanning out (default 32)."""
    connect_timeout: float
    """Seconds an ssh connection may take to be answered (default 10)."""
    boot_timeout: float | None
    """Seconds an instance may take to boot before it is replaced (None: no limit)."""
    boot_max_tries: int
    """How many instances a slot may take to boot one (1: never replaced)."""


class EC2Options(Options, total=False):
    """The keyword options of the EC2-compatible experiments, besides :class:`Options`."""

    subnet_id: str | None
    security_groups: Sequence[str] | None
    key_name: str | None
    ssh_address: str
    """``public`` (default) or ``private``: the address ssh reaches instances at."""
    floating_addresses: Sequence[str]
    login_user: str
    """The account ssh logs in as (default ``root``; ``ubuntu`` … for today's images)."""


class OpenStackOptions(Options, total=False):
    """The keyword options of native OpenStack (``OpenStackExperiment(cloud=…)``)."""

    network: str | None
    """The network servers join, by name or id (default: the project's only one)."""
    floating_network: str | None
    """The external network floating IPs come from (default: the cloud's only one)."""
    security_groups: Sequence[str] | None
    """Security groups by name or id (default: precip's own, made where missing)."""
    key_name: str | None
    reservation: str | None
    """A Chameleon lease's reservation id: Nova's ``reservation`` scheduler hint."""
    ssh_address: str
    """``public`` (default: a floating IP where the server has no reachable address) or
    ``private`` (its fixed address)."""
    login_user: str
    """The account ssh logs in as (default ``root``; ``cc`` on Chameleon's images,
    ``ubuntu`` or ``exouser`` on Jetstream2's)."""


def _checked(cls: type, given: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Refuse an unknown keyword as Python refuses one of a plain signature (``**options``
    would otherwise take a misspelt ``boot_timout=`` in silence)."""
    for key in given:
        if key not in allowed:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")


class LocalExperiment(Experiment):
    """An experiment on the embedded local cloud: instances are namespaced sshd processes on
    loopback addresses (a free /24 in 127.128.0.0/9 unless ``address_block`` says)."""

    DEFAULTS: ClassVar[Options] = {"boot_timeout": None, "boot_max_tries": 1}

    def __init__(
        self,
        name: str | None = None,
        *,
        address_block: str | None = None,
        **options: Unpack[Options],
    ) -> None:
        from precip_repro.clouds.local import LocalCloud

        _checked(type(self), options, frozenset(Options.__annotations__))
        merged: dict[str, Any] = {**self.DEFAULTS, **options}
        super().__init__(LocalCloud(address_block=address_block), name, keys=load_keys(), **merged)

    @staticmethod
    def image_problem(image_id: str) -> str | None:
        """Why this cloud cannot start ``image_id`` (``"default"`` or a directory), or None."""
        from precip_repro.clouds.local import image_problem

        return image_problem(image_id)

    @staticmethod
    def names_local_image(image_id: str) -> bool:
        """Whether ``image_id`` looks like a local cloud's image (``"default"`` or a path),
        which no EC2-style cloud has."""
        from precip_repro.clouds.local import is_local_image

        return is_local_image(image_id)


class _EC2Compatible(Experiment):
    KIND: ClassVar[str] = "ec2"
    DEFAULTS: ClassVar[EC2Options] = {"boot_timeout": 900, "boot_max_tries": 3}

    def _start(
        self,
        region: str,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        name: str | None,
        options: EC2Options,
        *,
        profile: str | None = None,
    ) -> None:
        from precip_repro.clouds.aws_credentials import (
            placeholder_credentials,
            resolve_credentials,
        )
        from precip_repro.clouds.ec2 import EC2Cloud
        from precip_repro.exceptions import CredentialsNotFound

        _checked(type(self), options, frozenset(EC2Options.__annotations__))
        for option, value in (("access_key", access_key), ("secret_key", secret_key)):
            if value is not None and (not isinstance(value, str) or len(value) < MIN_SECRET):
                raise InvalidOption(
                    option,
                    "<hidden>",
                    [
                        f"a string of at least {MIN_SECRET} characters (AWS's are 20 and 40; "
                        "a shorter one could not be kept out of the record)",
                        "None: boto3's chain (profile=, AWS_PROFILE, SSO, the environment, "
                        "an instance role)",
                    ],
                )
        # Resolved before anything is provisioned: an unknown profile or no credentials at
        # all fail here, naming the profile.
        try:
            credentials = resolve_credentials(
                access_key=access_key,
                secret_key=secret_key,
                profile=profile,
                region=region if isinstance(region, str) else None,
                endpoint=endpoint,
                identify=session.playback is None,
            )
        except CredentialsNotFound:
            if session.playback is None:
                raise
            # Played back, no call reaches a cloud: the profile need not exist here.
            credentials = placeholder_credentials(
                profile=profile, region=region if isinstance(region, str) else None
            )
        # Credentials never reach the record: should they appear in a command or an
        # output, they are written as ${secret:NAME}.
        for variable, secret in credentials.secrets.items():
            if len(secret) < MIN_SECRET:
                raise InvalidOption(
                    variable, "<hidden>",
                    [f"at least {MIN_SECRET} characters (a shorter one could not be kept "
                     "out of the record)"],
                )  # fmt: skip
            session.add_secret(variable, secret)
        merged: dict[str, Any] = {**self.DEFAULTS, **options}
        cloud_options = {key: merged.pop(key) for key in list(merged) if key in _CLOUD_KEYS}
        cloud = EC2Cloud(
            kind=self.KIND,
            endpoint=endpoint,
            region=region,
            credentials=credentials,
            subnet_id=cloud_options.get("subnet_id"),
            security_groups=cloud_options.get("security_groups"),
            key_name=cloud_options.get("key_name"),
            floating_addresses=cloud_options.get("floating_addresses", ()),
            name=name,
        )
        super().__init__(cloud, name, keys=load_keys(), **merged)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.exp} {self.name!r} on {self.cloud!r}>"


_CLOUD_KEYS: Final = frozenset({"subnet_id", "security_groups", "key_name", "floating_addresses"})
"""The options that configure the EC2 cloud itself; the others are the experiment's."""


class EC2Experiment(_EC2Compatible):
    """Amazon EC2 (or any EC2 endpoint). ``region`` may be an availability zone
    (``us-west-2c``: region ``us-west-2``, instances placed in that zone); ``endpoint`` a
    host (``ec2.us-west-2.amazonaws.com``, reached over https) or a URL, or None for AWS's
    own endpoint of the region (or the one a profile or ``AWS_ENDPOINT_URL`` sets).

    ``access_key`` and ``secret_key`` may be left out: boto3's chain then finds the
    credentials — ``profile=`` (else ``AWS_PROFILE``), SSO, the environment, an instance
    role. The record keeps the profile's name and a fingerprint of the identity, never a
    credential."""

    KIND = "ec2"

    def __init__(
        self,
        region: str,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        name: str | None = None,
        *,
        profile: str | None = None,
        **options: Unpack[EC2Options],
    ) -> None:
        self._start(region, endpoint, access_key, secret_key, name, options, profile=profile)

    @staticmethod
    def credentials_problem(
        *, profile: str | None = None, access_key: str | None = None, secret_key: str | None = None
    ) -> str | None:
        """Why no credentials can be had with these (None: boto3's chain), or None; asks
        no cloud."""
        from precip_repro.clouds.aws_credentials import resolve_credentials
        from precip_repro.exceptions import CredentialsNotFound

        try:
            resolve_credentials(
                access_key=access_key, secret_key=secret_key, profile=profile, identify=False
            )
        except (CredentialsNotFound, InvalidOption) as exc:
            return str(exc)
        return None


class _EndpointCloud(_EC2Compatible):
    """The seed's clouds reached through their EC2-compatible endpoint. Their original
    pseudo-regions (``openstack`` …) are not valid signing regions: ``region=`` names one
    (default ``us-east-1``). Without keys, boto3's chain finds them (``profile=``, else
    ``AWS_PROFILE``, the environment …), as for :class:`EC2Experiment`."""

    def __init__(
        self,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        name: str | None = None,
        *,
        region: str = DEFAULT_REGION,
        profile: str | None = None,
        **options: Unpack[EC2Options],
    ) -> None:
        self._start(region, endpoint, access_key, secret_key, name, options, profile=profile)


class OpenStackExperiment(_EndpointCloud):
    """OpenStack. Natively, through Keystone, Nova, Neutron and Glance with openstacksdk —
    ``OpenStackExperiment(cloud="chameleon")`` for a ``clouds.yaml`` entry, or
    ``OpenStackExperiment()`` for the ``OS_*`` environment of a sourced openrc file
    (passwords and application credentials alike); recorded as kind ``openstack-native``.

    The seed's positional form ``OpenStackExperiment(endpoint, access_key, secret_key)``
    keeps meaning OpenStack's EC2-compatible API (``http://host:8773/services/Cloud``),
    kind ``openstack``."""

    KIND = "openstack"
    NATIVE_KIND: ClassVar[str] = "openstack-native"
    NATIVE_DEFAULTS: ClassVar[OpenStackOptions] = {"boot_timeout": 900, "boot_max_tries": 3}

    def __init__(
        self,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        name: str | None = None,
        *,
        cloud: str | None = None,
        region: str | None = None,
        **options: Any,
    ) -> None:
        if endpoint is not None or access_key is not None or secret_key is not None:
            if cloud is not None:
                raise TypeError(
                    "OpenStackExperiment() takes either an EC2 endpoint and keys (the seed's "
                    "form) or cloud= (native OpenStack), not both"
                )
            if endpoint is None or access_key is None or secret_key is None:
                raise TypeError(
                    "OpenStackExperiment(endpoint, access_key, secret_key) reaches the EC2 API "
                    "and needs all three; for native OpenStack give cloud= or nothing"
                )
            ec2_options = cast(EC2Options, options)
            self._start(
                region or DEFAULT_REGION, endpoint, access_key, secret_key, name, ec2_options
            )
            return
        self._start_native(cloud, region, name, options)

    def _start_native(
        self, cloud: str | None, region: str | None, name: str | None, options: dict[str, Any]
    ) -> None:
        from precip_repro.clouds.openstack import OpenStackCloud

        _checked(type(self), options, frozenset(OpenStackOptions.__annotations__))
        for option, value in (("cloud", cloud), ("region", region)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidOption(option, value, ["a clouds.yaml entry's name", "None"])
        merged: dict[str, Any] = {**self.NATIVE_DEFAULTS, **options}
        cloud_options = {key: merged.pop(key) for key in list(merged) if key in _NATIVE_KEYS}
        native = OpenStackCloud(cloud=cloud, region=region, name=name, **cloud_options)
        # Played back from a recording, the experiment needs neither the cloud nor its
        # clouds.yaml: its configuration is read when first needed.
        secrets = native.secrets() if session.playback is None else {}
        try:
            # Credentials never reach the record: should they appear in a command or an
            # output, they are written as ${secret:NAME}.
            for variable, secret in secrets.items():
                if len(secret) < MIN_SECRET:
                    raise InvalidOption(
                        variable, "<hidden>",
                        [f"at least {MIN_SECRET} characters (a shorter one could not be kept "
                         "out of the record)"],
                    )  # fmt: skip
                session.add_secret(variable, secret)
            Experiment.__init__(self, native, name, keys=load_keys(), **merged)
        except BaseException:
            native.close()
            raise

    @staticmethod
    def cloud_problem(cloud: str | None, region: str | None = None) -> str | None:
        """Why native OpenStack cannot use ``cloud`` (a ``clouds.yaml`` entry; None: the
        ``OS_*`` environment), or None; reads the configuration only."""
        from precip_repro.clouds.openstack_client import cloud_problem

        return cloud_problem(cloud, region)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.exp} {self.name!r} on {self.cloud!r}>"


_NATIVE_KEYS: Final = frozenset(
    {"network", "floating_network", "security_groups", "key_name", "reservation"}
)
"""The options that configure the native OpenStack cloud itself; the others are the
experiment's."""


class EucalyptusExperiment(_EndpointCloud):
    """Eucalyptus (``http://host:8773/services/Eucalyptus``)."""

    KIND = "eucalyptus"


class NimbusExperiment(_EndpointCloud):
    """Nimbus through its EC2 front end (``https://host:8444``)."""

    KIND = "nimbus"
