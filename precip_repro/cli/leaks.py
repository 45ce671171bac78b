"""The gc command: instances left running by runs that ended, found and ended."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from precip_repro.exceptions import (
    CredentialsNotFound,
    InvalidOption,
)
from precip_repro.timeline import format_duration

if TYPE_CHECKING:
    from precip_repro.clouds.aws_credentials import AWSCredentials
    from precip_repro.clouds.base import Cloud
    from precip_repro.leaks import Collected, Ended, Leak


from precip_repro.cli.core import (
    EXIT_BAD,
    EXIT_INCOMPLETE,
    EXIT_OK,
    Usage,
    store_of,
)
from precip_repro.commandline import DOCUMENT_VERSION, write_document

__all__ = ["cmd_gc"]


def _leaks_counted(leaks: Sequence[Leak]) -> str:
    instances = sum(1 for leak in leaks if leak.kind == "instance")
    addresses = len(leaks) - instances
    parts = [f"{instances} instance(s)"] if instances or not addresses else []
    return " and ".join([*parts, *([f"{addresses} floating address(es)"] if addresses else [])])


def _gc_credentials(args: argparse.Namespace, spec: str) -> AWSCredentials:
    """An EC2-compatible ``--cloud``'s credentials: boto3's chain from ``--profile`` (else
    the ``AWS_*`` environment, ``AWS_PROFILE``, SSO, an instance role), or
    ``EC2_ACCESS_KEY`` and ``EC2_SECRET_KEY`` (the seed's clouds' names) where set and
    neither ``--profile`` nor ``AWS_ACCESS_KEY_ID`` is; resolved before anything is checked
    or ended."""
    from precip_repro.clouds.aws_credentials import resolve_credentials

    access = os.environ.get("EC2_ACCESS_KEY")
    secret = os.environ.get("EC2_SECRET_KEY")
    # AWS_ACCESS_KEY_ID, boto3's own, comes first (the chain reads it), as it always did.
    explicit = bool(access and secret) and args.profile is None
    explicit = explicit and "AWS_ACCESS_KEY_ID" not in os.environ
    try:
        return resolve_credentials(
            access_key=access if explicit else None,
            secret_key=secret if explicit else None,
            profile=args.profile,
            region=args.region,
            identify=False,
        )
    except CredentialsNotFound as exc:
        raise Usage(f"--cloud {spec}: {exc}") from None


def _gc_clouds(args: argparse.Namespace) -> list[Cloud]:
    """The clouds of ``--cloud``: ``[kind=]URL`` for the EC2-compatible ones (credentials
    the AWS way: :func:`_gc_credentials`), ``openstack-native[=ENTRY]`` for native
    OpenStack (a clouds.yaml entry; without one, the OS_* environment)."""
    from precip_repro.clouds.ec2 import KINDS, EC2Cloud
    from precip_repro.clouds.openstack import KIND as NATIVE
    from precip_repro.clouds.openstack import OpenStackCloud
    from precip_repro.clouds.openstack_client import load_config

    clouds: list[Cloud] = []
    for spec in args.cloud or []:
        kind, _, url = spec.rpartition("=") if "=" in spec.split("://")[0] else ("", "", spec)
        if spec == NATIVE:
            kind, url = NATIVE, ""
        kind = kind or "ec2"
        if kind == NATIVE:
            # Its clouds.yaml entry read now: an unknown one is a usage error, not a cloud
            # gc could not check.
            clouds.append(OpenStackCloud(config=load_config(url or None)))
            continue
        if kind not in KINDS:
            raise InvalidOption("--cloud kind", kind, (*KINDS, NATIVE))
        clouds.append(
            EC2Cloud(
                kind=kind,
                endpoint=url or None,
                region=args.region,
                credentials=_gc_credentials(args, spec),
            )
        )
    return clouds


def cmd_gc(args: argparse.Namespace) -> int:
    from precip_repro.clouds.local import LocalCloud
    from precip_repro.leaks import collect, terminate

    store = store_of(args)
    clouds: list[Cloud] = [LocalCloud(lists_only=True), *_gc_clouds(args)]
    collected = collect(store, clouds=clouds)
    leaks, runs = collected.leaks, collected.runs
    for label, why in collected.unchecked.items():
        print(f"precip-repro gc: could not check {label}: {why}", file=sys.stderr)
    outcome = terminate(store, leaks, runs, clouds=clouds) if leaks and args.terminate else None
    if outcome is not None:
        for handle, why in outcome.failed.items():
            print(f"precip-repro gc: could not end {handle}: {why}", file=sys.stderr)
    status = _gc_status(leaks, collected.unchecked, outcome)
    if args.json:
        write_document(_gc_json(store.root, collected, outcome, status))
        return status
    if not leaks and collected.unchecked:
        print(
            "no leak found, but not every cloud could be checked (above): "
            "run gc again once it answers"
        )
        return status
    if not leaks:
        print("nothing leaks: every instance the record and the clouds know of is terminated")
        return status
    print(f"{'INSTANCE':<20} {'CLOUD':<10} {'RUN':<40} {'SLOT':<9} {'ADDRESS':<15} {'AGE':>8}")
    # A floating address shows its allocation id where an instance shows its id.
    for leak in leaks:
        age = format_duration(int(leak.age_s * 1e9)) if leak.age_s is not None else "-"
        print(
            f"{leak.instance_id:<20} {leak.cloud.split()[0]:<10} {leak.run or '-':<40} "
            f"{leak.slot or '-':<9} {leak.address or '-':<15} {age:>8}"
        )
        print(f"    {leak.reason} (run {leak.run_state})")
    if outcome is None:
        print(f"{_leaks_counted(leaks)} leak; `precip-repro gc --terminate` ends them")
        return status
    run = outcome.run
    ended = _ended(leaks, outcome)
    if run is not None:
        addresses = sum(1 for leak in ended if leak.kind == "address")
        done = f"terminated {len(ended) - addresses} instance(s)" + (
            f" and released {addresses} floating address(es)" if addresses else ""
        )
        signed = f", signed by {run.signature.fingerprint}" if run.signature else ", unsigned"
        print(f"{done}; recorded in run {run.id} (digest {run.digest}{signed})")
    untouched = [leak for leak in leaks if not leak.actionable]
    if untouched:
        print(f"{_leaks_counted(untouched)} not touched (see why above)")
    refused = [leak for leak in leaks if leak.instance_id in outcome.failed]
    if refused:
        print(f"{_leaks_counted(refused)} could not be ended (see why above): run gc again")
    return status


def _ended(leaks: Sequence[Leak], outcome: Ended) -> list[Leak]:
    return [leak for leak in leaks if leak.actionable and leak.instance_id not in outcome.failed]


def _gc_status(leaks: Sequence[Leak], unchecked: dict[str, str], outcome: Ended | None) -> int:
    """0 when nothing leaks (or all was ended), 1 while something does, 3 when nothing was
    found but a cloud could not be checked."""
    if not leaks:
        return EXIT_INCOMPLETE if unchecked else EXIT_OK
    if outcome is None:
        return EXIT_BAD
    left = [leak for leak in leaks if not leak.actionable or leak.instance_id in outcome.failed]
    return EXIT_BAD if left else EXIT_OK


def _gc_json(
    root: Path, collected: Collected, outcome: Ended | None, status: int
) -> dict[str, Any]:
    leaks = collected.leaks
    terminated = None
    if outcome is not None:
        run = outcome.run
        terminated = {
            "run": None if run is None else run.id,
            "digest": None if run is None else run.digest,
            "signer": None if run is None or run.signature is None else run.signature.fingerprint,
            "ended": [leak.instance_id for leak in _ended(leaks, outcome)],
            "failed": [{"id": handle, "reason": why} for handle, why in outcome.failed.items()],
        }
    return {
        "version": DOCUMENT_VERSION,
        "store": str(root),
        "exit_status": status,
        "unchecked": [
            {"cloud": label, "reason": why} for label, why in collected.unchecked.items()
        ],
        "leaks": [
            {
                "id": leak.instance_id,
                "kind": leak.kind,
                "cloud": leak.cloud,
                "run": leak.run,
                "run_state": leak.run_state,
                "slot": leak.slot,
                "address": leak.address,
                "age_s": None if leak.age_s is None else round(leak.age_s, 3),
                "reason": leak.reason,
                "actionable": leak.actionable,
            }
            for leak in leaks
        ],
        "terminated": terminated,
    }
