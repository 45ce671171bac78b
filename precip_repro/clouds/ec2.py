"""EC2 and the EC2-compatible APIs of OpenStack, Eucalyptus and Nimbus, through boto3.

- :mod:`precip_repro.clouds.ec2_client`: the boto3 client — endpoint, region, retries, and
  its errors as :class:`CloudError`;
- :mod:`precip_repro.clouds.ec2_setup`: the key pair and security groups instances start
  with;
- :mod:`precip_repro.clouds.ec2_addresses`: floating addresses;
- here, :class:`EC2Cloud`: instances — launched, tagged, described, terminated — behind the
  :class:`~precip_repro.clouds.base.Cloud` interface (the names of the others are
  re-exported for their importers).

Every capability is declared: floating addresses (whether or not the user named any, an
instance without a public address gets one of the cloud's), ports to open in the security
groups, key pairs, instances listed by their ``precip:run`` tag, and any login user.

Credentials go straight into the boto3 client and nowhere else: not into the record (which
holds the endpoint, the region and a fingerprint of the access key id), not into reprs,
log lines or exception messages. Without keys, they come from boto3's chain
(:mod:`precip_repro.clouds.aws_credentials`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from precip_repro.clouds.aws_credentials import AWSCredentials, resolve_credentials
from precip_repro.clouds.base import (
    Capability,
    CloudInfo,
    CloudInstance,
    FloatingAddress,
    LaunchRequest,
    RunInstance,
    end_ghosts,
)
from precip_repro.clouds.ec2_addresses import FloatingAddresses
from precip_repro.clouds.ec2_client import (
    EC2Client,
    access_key_fingerprint,
    parse_endpoint,
    parse_region,
)
from precip_repro.clouds.ec2_setup import (
    ensure_key_pair,
    ensure_security_group,
    open_port,
    resolve_groups,
)
from precip_repro.exceptions import CloudError, InvalidOption
from precip_repro.keys import Keys
from precip_repro.logs import get_logger

__all__ = [
    "KINDS",
    "EC2Cloud",
    "FloatingAddress",
    "access_key_fingerprint",
    "cloud_tag_keys",
    "parse_endpoint",
    "parse_region",
]

log = get_logger(__name__)

KINDS: Final = ("ec2", "openstack", "eucalyptus", "nimbus")
TERMINATE_TIMEOUT: Final = 600.0
NOT_FOUND: Final = "InvalidInstanceID.NotFound"
UNKNOWN_GRACE: Final = 15.0
"""Seconds an instance id the cloud does not know is asked about again before it is taken
as gone: AWS may not know an id RunInstances just returned for a few seconds."""
LAUNCH_WORKERS: Final = 8
"""RunInstances requests in flight at once for one provision (botocore pools 10
connections; EC2's RunInstances throttling bucket holds far more)."""
DESCRIBE_BATCH: Final = 200
"""Instance ids per DescribeInstances filter (EC2 takes at most 200 values in one)."""
MAX_USER_TAGS: Final = 40
CAPABILITIES: Final = frozenset(
    {
        Capability.FLOATING_ADDRESSES,
        Capability.OPEN_PORT,
        Capability.KEY_PAIRS,
        Capability.RUN_LISTING,
        Capability.ANY_LOGIN_USER,
    }
)


def cloud_tag_keys(tags: Sequence[str]) -> list[str]:
    """The user's tags as the cloud takes them (each a key, ``"1"`` its value, as the seed
    had them): EC2 refuses a whole launch for a key given twice, one starting ``aws:``, an
    empty one or one of ours (``Name``, ``precip:…``), and keys past 128 characters — moto
    takes them all. Those are left off the cloud's tags only; the experiment matches the
    user's tags as given."""
    keys: list[str] = []
    for tag in tags:
        key = tag[:128]
        reserved = key.lower().startswith(("aws:", "precip:")) or key == "Name"
        if key.strip() and not reserved and key not in keys:
            keys.append(key)
    return keys[:MAX_USER_TAGS]


class EC2Cloud:
    """One EC2-compatible endpoint and region."""

    session_user: str | None = None  # sessions run as the user that logs in
    denied_hint: str | None = None

    def __init__(
        self,
        *,
        kind: str,
        endpoint: str | None,
        region: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        credentials: AWSCredentials | None = None,
        subnet_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        key_name: str | None = None,
        floating_addresses: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise InvalidOption("kind", kind, KINDS)
        self.kind = kind
        self.capabilities: frozenset[Capability] = CAPABILITIES
        self.launch_workers = LAUNCH_WORKERS
        # AWS has taken tags in the requests that create resources (TagSpecifications) and
        # DescribeKeyPairs' IncludePublicKey since 2017 and 2021; the EC2 APIs of OpenStack,
        # Eucalyptus and Nimbus predate them (OpenStack ec2-api's run_instances has no such
        # parameter, and an unknown one fails the request): there, an instance is tagged by
        # CreateTags after its launch and a key pair recognised by its fingerprint.
        self.modern = kind == "ec2"
        self.endpoint = parse_endpoint(endpoint) if endpoint else None
        self.region, self.placement = parse_region(region)
        self.subnet_id = subnet_id
        self.security_groups = list(security_groups) if security_groups else None
        self.key_name = key_name
        self.name = name
        if credentials is None:
            credentials = resolve_credentials(
                access_key=access_key, secret_key=secret_key, region=self.region
            )
        self._credentials = credentials
        self._group_ids: list[str] | None = None
        self._keys: Keys | None = None
        self._api = EC2Client(
            kind=kind,
            endpoint=self.endpoint,
            region=self.region,
            credentials=credentials,
        )
        self.endpoint = self._api.endpoint
        self._addresses = FloatingAddresses(self._api, floating_addresses, tagged=self.modern)

    def __repr__(self) -> str:
        return f"EC2Cloud(kind={self.kind!r}, endpoint={self.endpoint!r}, region={self.region!r})"

    def info(self) -> CloudInfo:
        return CloudInfo(
            kind=self.kind,
            endpoint=self.endpoint,
            region=self.region,
            access_key_fingerprint=self._credentials.fingerprint,
            profile=self._credentials.profile,
        )

    @property
    def client(self) -> Any:
        """The boto3 EC2 client (for event hooks and what precip-repro does not wrap)."""
        return self._api.client

    @property
    def security_group_ids(self) -> list[str]:
        return list(self._group_ids or [])

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, keys: Keys) -> None:
        self._keys = keys
        if self.key_name is None:
            self.key_name = keys.key_name
            ensure_key_pair(self._api, keys, keys.key_name, own=True, modern=self.modern)
        else:  # the user's pair: instances would refuse a login with another key
            ensure_key_pair(self._api, keys, self.key_name, own=False, modern=self.modern)
        if self.security_groups is None:
            self._group_ids = [ensure_security_group(self._api, self.subnet_id)]
        else:
            self._group_ids = resolve_groups(self._api, self.security_groups, self.subnet_id)

    def open_port(self, port: int, protocol: str, cidr: str) -> list[str]:
        """Allow ``protocol``/``port`` from ``cidr`` in the experiment's security groups."""
        return open_port(self._api, self._group_ids or [], port, protocol, cidr)

    def ssh_user(self, user: str) -> str:
        return user

    def ssh_users(self) -> frozenset[str] | None:
        return None

    def check_capacity(self, count: int) -> None:
        # EC2's quotas are vCPUs per instance family, known to Service Quotas alone (the
        # API's "max-instances" attribute is no longer kept): RunInstances refuses beyond,
        # and the provision ends what it started.
        return

    # -- instances ------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> CloudInstance:
        tags = [
            {"Key": "Name", "Value": f"PRECIP - {self.name or request.slot}"},
            {"Key": "precip:run", "Value": request.run},
            {"Key": "precip:exp", "Value": request.exp},
            {"Key": "precip:slot", "Value": request.slot},
        ]
        tags += [{"Key": key, "Value": "1"} for key in cloud_tag_keys(request.tags)]
        params: dict[str, Any] = {
            "ImageId": request.image_id,
            "InstanceType": request.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
        }
        if self.modern:
            params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tags}]
        if self.key_name:
            params["KeyName"] = self.key_name
        if self._group_ids:
            params["SecurityGroupIds"] = self._group_ids
        if self.subnet_id:
            params["SubnetId"] = self.subnet_id
        if self.placement:
            params["Placement"] = {"AvailabilityZone": self.placement}
        try:
            found = self._api.call("RunInstances", self._api.client.run_instances, **params)
        except CloudError as exc:
            self._sweep(request, exc)
            raise
        instance = self._instance(found["Instances"][0])
        if not self.modern:
            self._tag(instance.instance_id, tags)
        return instance

    def _tag(self, instance_id: str, tags: list[dict[str, str]]) -> None:
        """Tag an instance after its launch, where the launch cannot: the tags are for gc and
        the cloud's console, so a cloud that refuses them is warned about, not fatal (the
        record still names the instance)."""
        try:
            self._api.call(
                "CreateTags", self._api.client.create_tags, Resources=[instance_id], Tags=tags
            )
        except CloudError as exc:
            log.warning(
                "the cloud would not tag the instance: `precip-repro gc --cloud` cannot find "
                "it by its tags, only through the record",
                instance=instance_id,
                error=str(exc),
            )

    def _sweep(self, request: LaunchRequest, failure: CloudError) -> None:
        """Terminate what a failed RunInstances started anyway: an answer lost on the way
        back (after botocore's retries, which reuse the request's idempotency token) leaves
        an instance running that no id names, found here by its run and slot tags."""
        if not request.run:
            return  # an unrecorded experiment's tags name no run: they would match others'
        tags = {"precip:run": request.run, "precip:slot": request.slot}
        end_ghosts(
            self, request, failure,
            lambda: [inst.instance_id for inst, _ in self.tagged_instances(tags)],
            what="instance",
            gc_cloud=self.endpoint or f"https://ec2.{self.region}.amazonaws.com",
        )  # fmt: skip

    @staticmethod
    def _instance(data: dict[str, Any]) -> CloudInstance:
        state = data.get("State", {}).get("Name", "pending")
        return CloudInstance(
            instance_id=data["InstanceId"],
            image_id=data.get("ImageId", ""),
            instance_type=data.get("InstanceType", ""),
            state=state,
            public_address=data.get("PublicIpAddress") or None,
            private_address=data.get("PrivateIpAddress") or None,
            public_hostname=data.get("PublicDnsName") or data.get("PublicIpAddress") or None,
            private_hostname=data.get("PrivateDnsName") or data.get("PrivateIpAddress") or None,
            state_reason=data.get("StateReason", {}).get("Message") or None,
        )

    def describe(self, instance_ids: Sequence[str]) -> list[CloudInstance]:
        """The instances of ``instance_ids`` the cloud knows. Asked by filter, not by id:
        DescribeInstances refuses a whole list for one id it does not know — not yet (AWS
        is eventually consistent) or no longer (gone an hour after termination; deleted by
        OpenStack) — and a caller must still learn about the others."""
        ids = list(dict.fromkeys(instance_ids))
        paginator = self._api.client.get_paginator("describe_instances")
        out: list[CloudInstance] = []
        for start in range(0, len(ids), DESCRIBE_BATCH):
            filters = [{"Name": "instance-id", "Values": ids[start : start + DESCRIBE_BATCH]}]
            pages = self._api.call(
                "DescribeInstances", lambda **p: list(paginator.paginate(**p)), Filters=filters
            )
            out += (
                self._instance(data)
                for page in pages
                for reservation in page.get("Reservations", [])
                for data in reservation.get("Instances", [])
            )
        wanted = set(ids)  # a cloud that ignores a filter it lacks answers with every instance
        return [inst for inst in out if inst.instance_id in wanted]

    def tagged_instances(
        self, tags: dict[str, str] | None = None
    ) -> list[tuple[CloudInstance, dict[str, str]]]:
        """Every live instance on this cloud tagged ``precip:run`` (and ``tags``), with its
        tags: every page of the answer (a busy account has more than one)."""
        filters = [
            {"Name": "tag-key", "Values": ["precip:run"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
            *({"Name": f"tag:{key}", "Values": [value]} for key, value in (tags or {}).items()),
        ]
        paginator = self._api.client.get_paginator("describe_instances")
        pages = self._api.call(
            "DescribeInstances", lambda **p: list(paginator.paginate(**p)), Filters=filters
        )
        out = []
        for page in pages:
            for reservation in page.get("Reservations", []):
                for data in reservation.get("Instances", []):
                    found = {tag["Key"]: tag["Value"] for tag in data.get("Tags", [])}
                    out.append((self._instance(data), found))
        return out

    def holds(self, recorded: CloudInfo) -> bool:
        """Whether ``recorded`` names this endpoint and region, whichever kind it says (the
        same API may be recorded as ``ec2`` and given to gc as ``openstack=…``)."""
        try:
            endpoint = parse_endpoint(recorded.endpoint) if recorded.endpoint else None
        except InvalidOption:
            return False  # no endpoint of any cloud's
        return (endpoint, recorded.region) == (self.endpoint, self.region)

    def run_instances(self) -> list[RunInstance]:
        """The live instances tagged ``precip:run``: who launched them the cloud cannot
        tell, so only a store knowing their run can say whether anything will end them."""
        return [
            RunInstance(instance=instance, run=tags.get("precip:run"), slot=tags.get("precip:slot"))
            for instance, tags in self.tagged_instances()
        ]

    def assign_public_address(self, instance_id: str, *, run: str = "", slot: str = "") -> str:
        """Allocate a floating address — one of ``floating_addresses`` while any is left,
        then any the cloud gives — and associate it; :meth:`terminate` releases it."""
        return self._addresses.assign(instance_id, run=run, slot=slot)

    def terminate(self, instance_ids: Sequence[str]) -> None:
        ids = list(instance_ids)
        if not ids:
            return
        known = self._request_termination(ids)
        deadline = time.monotonic() + TERMINATE_TIMEOUT
        delay = 0.05
        while known:
            states = {inst.instance_id: inst.state for inst in self.describe(known)}
            if all(state == "terminated" for state in states.values()):
                break
            if time.monotonic() > deadline:
                waiting = [i for i, state in states.items() if state != "terminated"]
                raise CloudError(
                    f"instances {', '.join(waiting)} on {self._api.where} were asked to "
                    f"terminate but are not terminated after {TERMINATE_TIMEOUT:.0f} s; "
                    "check them in the cloud's console and run `precip-repro gc`"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._addresses.release_of(ids)

    def _request_termination(self, ids: list[str]) -> list[str]:
        """Ask the cloud to end ``ids``; return those it knows. TerminateInstances refuses
        a whole list for one id it does not know, so then each is asked alone — one
        unknown id must not leave the others running — and an unknown one again for
        :data:`UNKNOWN_GRACE` s (AWS may not know a new id yet) before it is taken as gone:
        an instance the cloud does not know costs nothing."""
        try:
            self._api.call(
                "TerminateInstances", self._api.client.terminate_instances, InstanceIds=ids
            )
            return ids
        except CloudError as exc:
            if exc.code != NOT_FOUND:
                raise
        known: list[str] = []
        unknown = ids
        deadline = time.monotonic() + UNKNOWN_GRACE
        delay = 0.5
        while True:
            asked = [(instance_id, self._terminate_one(instance_id)) for instance_id in unknown]
            known += [instance_id for instance_id, found in asked if found]
            unknown = [instance_id for instance_id, found in asked if not found]
            if not unknown or time.monotonic() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if unknown:
            log.warning(
                "the cloud does not know these instances (gone already?): nothing to terminate",
                instances=unknown,
                cloud=self._api.where,
            )
        return known

    def _terminate_one(self, instance_id: str) -> bool:
        """Ask the cloud to end one instance; False when it does not know the id."""
        found = self._api.call(
            "TerminateInstances",
            self._api.client.terminate_instances,
            tolerate=NOT_FOUND,
            InstanceIds=[instance_id],
        )
        return found is not None

    def release_address(self, handle: str) -> None:
        """Release a floating address: its allocation id, or its address where the cloud
        gives no allocation ids."""
        self._addresses.release(handle)

    def run_addresses(self) -> list[FloatingAddress]:
        """Every floating address on this cloud tagged ``precip:run`` (none where addresses
        are not tagged: the older clouds)."""
        return self._addresses.of_runs()

    def close(self) -> None:
        self._api.close()
