"""AWS credentials, resolved the one way every EC2-compatible user of them shares: an
experiment (``EC2Experiment``), ``precip-repro gc --cloud`` and a replay mapping's
``[cloud]``.

Keys given explicitly are used as they are. Without them, boto3's own chain decides: the
profile named (``profile=``, else ``AWS_PROFILE``) with whatever it holds — keys, SSO, a
role to assume, a credential process —, the ``AWS_*`` environment, container and instance
roles. The clients made from the resolved session also honour the endpoint a profile or
``AWS_ENDPOINT_URL`` sets.

Nothing of a credential reaches the record: only the profile's name and a fingerprint that
is the same for every session of one identity —

- long-term keys (no session token): the access key id, hashed (as records always had it);
- temporary credentials (SSO, an assumed role, an instance role, a session token): their
  access key id changes with every session, so the caller's ARN from STS
  GetCallerIdentity is hashed instead, an assumed role's session name left off (botocore
  names its sessions by the time). STS is asked only where the cloud is AWS's (no
  explicit endpoint): a private cloud's endpoint has no STS beside it; there, and when STS
  does not answer, no fingerprint is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

import attrs
import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from precip_repro.clouds.base import credential_fingerprint
from precip_repro.exceptions import CredentialsNotFound, InvalidOption

__all__ = [
    "AWSCredentials",
    "configured_endpoint",
    "placeholder_credentials",
    "resolve_credentials",
]

_STS_CONFIG: Final = botocore.config.Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
)
_NOT_FROM_A_PROFILE: Final = frozenset({"env", "iam-role", "container-role", "explicit"})
"""botocore's names of the credential sources that are no profile."""
_FIX: Final = (
    "pass access_key and secret_key, name a profile that holds credentials (profile= or "
    "AWS_PROFILE; `aws configure --profile NAME`, or `aws sso login --profile NAME` for SSO), "
    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


@attrs.frozen(kw_only=True)
class AWSCredentials:
    """Where an EC2 client gets its credentials: a boto3 session (which refreshes temporary
    credentials itself), and what the record may keep of them."""

    session: Any = attrs.field(repr=False, eq=False)
    """The ``boto3.Session`` clients are made from."""
    profile: str | None
    """The profile the credentials came from (None: explicit keys or the environment)."""
    fingerprint: str | None
    """Stable for one identity (see the module); None where it cannot be known."""
    secrets: Mapping[str, str] = attrs.field(repr=False, factory=dict)
    """The values to keep out of the record, by the environment variable that names them."""

    def client(self, service: str, **options: Any) -> Any:
        """A boto3 client of the session."""
        return self.session.client(service, **options)


def _explicit(access_key: str | None, secret_key: str | None, region: str | None) -> AWSCredentials:
    if not access_key or not secret_key:
        missing = "secret_key" if access_key else "access_key"
        raise InvalidOption(
            missing,
            "<none>",
            ["both access_key and secret_key", "neither (boto3's chain: profile=, AWS_PROFILE …)"],
        )
    session = boto3.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
    )
    return AWSCredentials(
        session=session,
        profile=None,
        fingerprint=credential_fingerprint(access_key),
        secrets={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
    )


def _profile_named(profile: str | None) -> str | None:
    """The profile the chain reads (None: none named, the ``default`` section if any)."""
    return profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")


def _session(profile: str | None, region: str | None) -> Any:
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except botocore.exceptions.ProfileNotFound:
        files = (
            f"{os.environ.get('AWS_CONFIG_FILE', '~/.aws/config')} or "
            f"{os.environ.get('AWS_SHARED_CREDENTIALS_FILE', '~/.aws/credentials')}"
        )
        raise CredentialsNotFound(
            f"AWS profile {_profile_named(profile)!r} is not in {files}"
            f"{_known_profiles()}: add it (`aws configure --profile "
            f"{_profile_named(profile)}`) or name another",
            profile=_profile_named(profile),
        ) from None


def _unprofiled() -> Any:
    """A botocore session that reads no profile name from the environment (botocore reads
    ``AWS_PROFILE`` whatever else is given, and fails on an unknown one)."""
    return botocore.session.Session(session_vars={"profile": (None, None, None, None)})


def _known_profiles() -> str:
    """The profiles the files define, for a message."""
    try:
        names = sorted(_unprofiled().available_profiles)
    except botocore.exceptions.BotoCoreError:
        names = []
    return f" (it has {', '.join(names)})" if names else " (it has no profile)"


def _caller_fingerprint(session: Any, region: str | None) -> str | None:
    """The caller's ARN from STS, hashed, an assumed role's session name left off."""
    try:
        sts = session.client("sts", region_name=region or "us-east-1", config=_STS_CONFIG)
        arn = str(sts.get_caller_identity()["Arn"])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError):
        return None
    service, _, resource = arn.partition(":assumed-role/")
    if resource:  # arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
        arn = f"{service}:assumed-role/{resource.split('/')[0]}"
    return credential_fingerprint(arn)


def resolve_credentials(
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
    identify: bool = True,
) -> AWSCredentials:
    """The credentials an EC2 client of ``region`` (at ``endpoint``; None: AWS's, or the
    one configured) uses: the keys given, else boto3's chain from ``profile`` (None:
    ``AWS_PROFILE`` or the default). ``identify=False`` asks STS nothing (a check before
    anything is done). Raises :class:`CredentialsNotFound`, naming the profile and what to
    do, when there are none."""
    if profile is not None and (not isinstance(profile, str) or not profile.strip()):
        raise InvalidOption("profile", profile, ["a profile of the AWS config files", "None"])
    if access_key is not None or secret_key is not None:
        if profile is not None:
            raise InvalidOption(
                "profile", profile, ["None when access_key and secret_key are given"]
            )
        return _explicit(access_key, secret_key, region)
    session = _session(profile, region)
    named = _profile_named(profile)
    where = f"AWS profile {named!r}" if named else "the default AWS profile or the environment"
    try:
        found = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except botocore.exceptions.BotoCoreError as exc:  # an expired SSO token, a failing role
        raise CredentialsNotFound(
            f"cannot get credentials from {where}: {exc}; {_FIX}", profile=named
        ) from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise CredentialsNotFound(f"no AWS credentials in {where}: {_FIX}", profile=named)
    # The environment's keys win over AWS_PROFILE's (boto3's order; a profile= given
    # puts them aside): the record names a profile only where the keys came from one.
    from_profile = getattr(found, "method", None) not in _NOT_FROM_A_PROFILE
    secrets = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        secrets["AWS_SESSION_TOKEN"] = frozen.token
        fingerprint = (
            _caller_fingerprint(session, region) if identify and endpoint is None else None
        )
    else:
        fingerprint = credential_fingerprint(frozen.access_key)
    return AWSCredentials(
        session=session,
        profile=(named or session.profile_name) if from_profile else None,
        fingerprint=fingerprint,
        secrets=secrets,
    )


def placeholder_credentials(*, profile: str | None, region: str | None) -> AWSCredentials:
    """Credentials no request is signed with: a run played back asks no cloud, and needs
    none of the profile it was recorded with."""
    session = boto3.Session(
        botocore_session=_unprofiled(),
        aws_access_key_id="played-back",
        aws_secret_access_key="played-back",
        region_name=region,
    )
    return AWSCredentials(session=session, profile=_profile_named(profile), fingerprint=None)


def configured_endpoint(credentials: AWSCredentials, client: Any) -> str | None:
    """The endpoint a profile or ``AWS_ENDPOINT_URL`` gave ``client`` (one made without an
    explicit endpoint), or None where it is AWS's own."""
    default = credentials.session.client(
        client.meta.service_model.service_name,
        region_name=client.meta.region_name,
        config=botocore.config.Config(ignore_configured_endpoint_urls=True),
    )
    url = str(client.meta.endpoint_url)
    return None if url == default.meta.endpoint_url else url.rstrip("/")
