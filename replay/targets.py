"""The target experiments: what the mapping and the environment must give them, checked
before anything is provisioned, and the experiments made from the mapping."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from precip_repro import (
    EC2Experiment,
    EucalyptusExperiment,
    Experiment,
    InvalidOption,
    LocalExperiment,
    NimbusExperiment,
    OpenStackExperiment,
    session,
)
from replay.content import RecordedContent
from replay.exceptions import ReplayFailed
from replay.mapping import ReplayMapping
from replay.plan import Step, images_used

__all__ = ["CLOUDS", "Targets"]

CLOUDS: Final = ("local", "ec2", "openstack", "openstack-native", "eucalyptus", "nimbus")
NATIVE: Final = "openstack-native"
"""OpenStack's own APIs (a clouds.yaml entry); ``openstack`` is its EC2 API."""

_KEY_ENV: Final = {
    "access_key_env": "AWS_ACCESS_KEY_ID",
    "secret_key_env": "AWS_SECRET_ACCESS_KEY",
}
"""The environment variables an EC2-compatible target's keys are read from by default,
where the mapping names keys at all (see :func:`_keys_by_name`)."""


def _keys_by_name(kind: str, cloud: dict[str, Any]) -> bool:
    """Whether ``cloud``'s keys are read from named environment variables rather than found
    by boto3's chain: where the mapping names them, and on OpenStack's EC2 API, whose
    experiment without keys would be native OpenStack."""
    return kind == "openstack" or "access_key_env" in cloud or "secret_key_env" in cloud


_ENDPOINT_CLOUDS: Final = {
    "openstack": OpenStackExperiment,
    "eucalyptus": EucalyptusExperiment,
    "nimbus": NimbusExperiment,
}


class Targets(RecordedContent):
    """Checks and makes the replay's experiments, for :class:`replay.engine.Engine` (mixed
    in)."""

    targets: dict[str, str]
    mapping: ReplayMapping
    records: Path | str

    def _check_images(self) -> None:
        # The cloud would refuse these only once provisioning started (and other
        # experiments' instances with it): a run recorded on one kind of cloud and replayed
        # on another without a mapping names images the target has never heard of.
        for exp, images in sorted(images_used(self.source).items()):
            kind = self.targets[exp]
            for image in sorted(images):
                mapped = self.mapping.image(exp, image)
                shown = repr(mapped) if mapped == image else f"{mapped!r} (mapped from {image!r})"
                if kind == "local":
                    problem = LocalExperiment.image_problem(mapped)
                    if problem is not None and mapped != image:
                        problem += f" (it is what {image!r} maps to)"
                    fix = "'default' or an image directory"
                elif LocalExperiment.names_local_image(mapped):
                    problem = f"image {shown} is a local cloud's"
                    fix = f"an image id of the {kind} cloud"
                else:
                    continue
                if problem is not None:
                    raise ReplayFailed(
                        f"{exp} replays on {kind}: {problem}; map it to {fix} under [images] "
                        f'(or [{exp}.images]) of --map, e.g. "{image}" = "…"',
                        usage=True,
                    )

    def check(self, secrets: set[str], steps: list[Step]) -> None:
        """Everything that can be checked before ``steps`` are replayed and anything is
        provisioned."""
        missing = sorted(name for name in secrets if name not in os.environ)
        if missing:
            raise ReplayFailed(
                f"the run used secrets {', '.join(missing)}: set the environment variable(s) "
                "of the same name to bind them again",
                usage=True,
            )
        for name in sorted(secrets):
            # Bound now, before any output: the replay's record, its verdicts and what it
            # prints say ${secret:NAME} where the new run shows the value again.
            try:
                session.add_secret(name, os.environ[name])
            except InvalidOption as exc:
                raise ReplayFailed(
                    f"the environment variable {name} cannot bind the run's secret {name}: {exc}",
                    usage=True,
                ) from None
        self._find_withheld_content(steps)
        self._check_images()
        for exp, kind in self.targets.items():
            if kind == "local":
                continue
            cloud = self.mapping.cloud(exp)
            if kind == NATIVE:
                problem = OpenStackExperiment.cloud_problem(cloud.get("cloud"), cloud.get("region"))
                if problem is not None:
                    raise ReplayFailed(
                        f"{exp} replays on {kind}: {problem} (name the clouds.yaml entry with "
                        f'cloud = "…" in [{exp}.cloud] or [cloud] of the mapping)',
                        usage=True,
                    )
                continue
            self._check_credentials(exp, kind, cloud)
            if kind != "ec2" and not cloud.get("endpoint"):
                raise ReplayFailed(
                    f"{exp} replays on {kind}: give its endpoint in [{exp}.cloud] or [cloud]",
                    usage=True,
                )

    def _check_credentials(self, exp: str, kind: str, cloud: dict[str, Any]) -> None:
        """Keys by the names of environment variables (``access_key_env`` …, and always on
        OpenStack's EC2 API, whose experiment takes keys), else boto3's chain from
        ``profile`` (else AWS_PROFILE, the environment, SSO, a role) — resolved now, before
        anything is provisioned."""
        if not _keys_by_name(kind, cloud):
            problem = EC2Experiment.credentials_problem(profile=cloud.get("profile"))
            if problem is not None:
                raise ReplayFailed(
                    f'{exp} replays on {kind}: {problem} (or give profile = "…" in '
                    f"[{exp}.cloud] or [cloud] of the mapping)",
                    usage=True,
                )
            return
        if "profile" in cloud:
            raise ReplayFailed(
                f"{exp} replays on {kind}: [{exp}.cloud] or [cloud] of the mapping gives both "
                "a profile and keys (access_key_env, secret_key_env): keep one",
                usage=True,
            )
        for key, default in _KEY_ENV.items():
            name = cloud.get(key, default)
            if name not in os.environ:
                raise ReplayFailed(
                    f"{exp} replays on {kind}: its credentials are read from the "
                    f"environment variable {name}, which is not set (set {key} in "
                    f"[{exp}.cloud] or [cloud] of the mapping to use another)",
                    usage=True,
                )

    def _make(self, exp: str) -> Experiment:
        kind = self.targets[exp]
        created = self.source.experiments.get(exp, {})
        name = created.get("name")
        cloud = self.mapping.cloud(exp)
        common: dict[str, Any] = {"records": self.records}
        for key in ("boot_timeout", "boot_max_tries"):
            if key in cloud:
                common[key] = cloud[key]
        if kind == "local":
            return LocalExperiment(
                str(name) if name else None, address_block=cloud.get("address_block"), **common
            )
        label = str(name) if name else None
        if kind == NATIVE:
            native: dict[str, Any] = {
                key: cloud[key]
                for key in ("network", "floating_network", "security_groups", "key_name",
                            "reservation", "ssh_address", "login_user")
                if key in cloud
            }  # fmt: skip
            return OpenStackExperiment(
                name=label,
                cloud=cloud.get("cloud"),
                region=cloud.get("region"),
                **native,
                **common,
            )
        access: str | None = None
        secret: str | None = None
        if _keys_by_name(kind, cloud):
            access = os.environ[cloud.get("access_key_env", _KEY_ENV["access_key_env"])]
            secret = os.environ[cloud.get("secret_key_env", _KEY_ENV["secret_key_env"])]
        else:
            common["profile"] = cloud.get("profile")
        options: dict[str, Any] = {
            key: cloud[key]
            for key in ("subnet_id", "security_groups", "key_name", "ssh_address",
                        "login_user", "floating_addresses")
            if key in cloud
        }  # fmt: skip
        options.update(common)
        region = str(cloud.get("region", "us-east-1"))
        if kind == "ec2":
            return EC2Experiment(region, cloud.get("endpoint"), access, secret, label, **options)
        made: Experiment = _ENDPOINT_CLOUDS[kind](
            str(cloud["endpoint"]), access, secret, label, region=region, **options
        )
        return made
