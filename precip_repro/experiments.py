"""The experiment classes users construct, one per kind of cloud, with the seed's signatures.

Our options are keyword-only. Common to all: ``record``, ``records``, ``parallel``,
``max_workers``, ``connect_timeout``; the EC2-compatible ones add ``subnet_id``,
``security_groups``, ``key_name``, ``ssh_address`` (``public`` or ``private``),
``floating_addresses``, ``boot_timeout`` and ``boot_max_tries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from precip_repro.exceptions import InvalidOption
from precip_repro.experiment import MAX_WORKERS, Experiment
from precip_repro.keys import load_keys
from precip_repro.record.redact import MIN_SECRET
from precip_repro.session import session

__all__ = [
    "EC2Experiment",
    "EucalyptusExperiment",
    "LocalExperiment",
    "NimbusExperiment",
    "OpenStackExperiment",
]

DEFAULT_REGION: Final = "us-east-1"


class LocalExperiment(Experiment):
    """An experiment on the embedded local cloud: instances are namespaced sshd processes on
    loopback addresses (a free /24 in 127.128.0.0/9 unless ``address_block`` says)."""

    def __init__(
        self,
        name: str | None = None,
        *,
        address_block: str | None = None,
        record: bool = True,
        records: Path | str | None = None,
        parallel: bool = False,
        max_workers: int = MAX_WORKERS,
        connect_timeout: float = 10.0,
        boot_timeout: float | None = None,
        boot_max_tries: int = 1,
    ) -> None:
        from precip_repro.clouds.local import LocalCloud

        super().__init__(
            LocalCloud(address_block=address_block),
            name,
            record=record,
            records=records,
            parallel=parallel,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            boot_timeout=boot_timeout,
            boot_max_tries=boot_max_tries,
            keys=load_keys(),
        )

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
    KIND = "ec2"

    def __init__(
        self,
        region: str,
        endpoint: str | None,
        access_key: str,
        secret_key: str,
        name: str | None,
        *,
        subnet_id: str | None,
        security_groups: Sequence[str] | None,
        key_name: str | None,
        ssh_address: str,
        floating_addresses: Sequence[str],
        boot_timeout: float | None,
        boot_max_tries: int,
        record: bool,
        records: Path | str | None,
        parallel: bool,
        max_workers: int,
        connect_timeout: float,
        login_user: str,
    ) -> None:
        from precip_repro.clouds.ec2 import EC2Cloud

        # Credentials never reach the record: should they appear in a command or an
        # output, they are written as ${secret:NAME}.
        for option, value in (("access_key", access_key), ("secret_key", secret_key)):
            if not isinstance(value, str) or len(value) < MIN_SECRET:
                raise InvalidOption(
                    option,
                    "<hidden>",
                    [
                        f"a string of at least {MIN_SECRET} characters (AWS's are 20 and 40; "
                        "a shorter one could not be kept out of the record)"
                    ],
                )
        session.add_secret("AWS_ACCESS_KEY_ID", access_key)
        session.add_secret("AWS_SECRET_ACCESS_KEY", secret_key)
        cloud = EC2Cloud(
            kind=self.KIND,
            endpoint=endpoint,
            region=region,
            access_key=access_key,
            secret_key=secret_key,
            subnet_id=subnet_id,
            security_groups=security_groups,
            key_name=key_name,
            floating_addresses=floating_addresses,
            name=name,
        )
        super().__init__(
            cloud,
            name,
            record=record,
            records=records,
            parallel=parallel,
            max_workers=max_workers,
            ssh_address=ssh_address,
            connect_timeout=connect_timeout,
            boot_timeout=boot_timeout,
            boot_max_tries=boot_max_tries,
            keys=load_keys(),
            login_user=login_user,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.exp} {self.name!r} on {self.cloud!r}>"


class EC2Experiment(_EC2Compatible):
    """Amazon EC2 (or any EC2 endpoint). ``region`` may be an availability zone
    (``us-west-2c``: region ``us-west-2``, instances placed in that zone); ``endpoint`` a
    host (``ec2.us-west-2.amazonaws.com``, reached over https) or a URL, or None for AWS's
    own endpoint of the region."""

    KIND = "ec2"

    def __init__(
        self,
        region: str,
        endpoint: str | None,
        access_key: str,
        secret_key: str,
        name: str | None = None,
        *,
        subnet_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        key_name: str | None = None,
        ssh_address: str = "public",
        floating_addresses: Sequence[str] = (),
        boot_timeout: float | None = 900,
        boot_max_tries: int = 3,
        record: bool = True,
        records: Path | str | None = None,
        parallel: bool = False,
        max_workers: int = MAX_WORKERS,
        connect_timeout: float = 10.0,
        login_user: str = "root",
    ) -> None:
        super().__init__(
            region,
            endpoint,
            access_key,
            secret_key,
            name,
            subnet_id=subnet_id,
            security_groups=security_groups,
            key_name=key_name,
            ssh_address=ssh_address,
            floating_addresses=floating_addresses,
            boot_timeout=boot_timeout,
            boot_max_tries=boot_max_tries,
            record=record,
            records=records,
            parallel=parallel,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            login_user=login_user,
        )


class _EndpointCloud(_EC2Compatible):
    """The seed's clouds reached through their EC2-compatible endpoint. Their original
    pseudo-regions (``openstack`` …) are not valid signing regions: ``region=`` names one
    (default ``us-east-1``)."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        name: str | None = None,
        *,
        region: str = DEFAULT_REGION,
        subnet_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        key_name: str | None = None,
        ssh_address: str = "public",
        floating_addresses: Sequence[str] = (),
        boot_timeout: float | None = 900,
        boot_max_tries: int = 3,
        record: bool = True,
        records: Path | str | None = None,
        parallel: bool = False,
        max_workers: int = MAX_WORKERS,
        connect_timeout: float = 10.0,
        login_user: str = "root",
    ) -> None:
        super().__init__(
            region,
            endpoint,
            access_key,
            secret_key,
            name,
            subnet_id=subnet_id,
            security_groups=security_groups,
            key_name=key_name,
            ssh_address=ssh_address,
            floating_addresses=floating_addresses,
            boot_timeout=boot_timeout,
            boot_max_tries=boot_max_tries,
            record=record,
            records=records,
            parallel=parallel,
            max_workers=max_workers,
            connect_timeout=connect_timeout,
            login_user=login_user,
        )


class OpenStackExperiment(_EndpointCloud):
    """OpenStack through its EC2-compatible API (``http://host:8773/services/Cloud``)."""

    KIND = "openstack"


class EucalyptusExperiment(_EndpointCloud):
    """Eucalyptus (``http://host:8773/services/Eucalyptus``)."""

    KIND = "eucalyptus"


class NimbusExperiment(_EndpointCloud):
    """Nimbus through its EC2 front end (``https://host:8444``)."""

    KIND = "nimbus"
