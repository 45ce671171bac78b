"""The leak ledger: instances still running that nothing will ever deprovision.

Three sources, merged by instance id:

- **local state**: every live local instance (``$PRECIP_HOME/local``) whose recording
  process is gone, or whose run is no longer being written;
- **the record**: in every run of the store that is not open, instances launched and never
  terminated — checked against their cloud where one was given;
- **cloud tags**: on each cloud given, instances tagged ``precip:run`` whose run is in the
  store and not open (instances of runs this store does not know are listed, never touched).

``collect`` lists them; ``terminate`` ends them and records what it did in a run of its
own, naming each run it acted on with its digest. A finished run is never appended to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import attrs

from precip_repro.clouds.base import CloudInstance
from precip_repro.clouds.ec2 import EC2Cloud, parse_endpoint
from precip_repro.clouds.local import (
    LocalInstanceState,
    live_local_instances,
    terminate_local,
)
from precip_repro.exceptions import CloudError
from precip_repro.keys import precip_home
from precip_repro.logs import get_logger
from precip_repro.record.events import (
    InstanceTerminated,
    InstanceTerminating,
    Note,
    parse_ts,
)
from precip_repro.record.journal import is_locked
from precip_repro.record.reader import LogReader
from precip_repro.record.recorder import Run
from precip_repro.record.store import EVENTS, RunStore
from precip_repro.record.verify import verify

__all__ = ["Collected", "Ended", "Leak", "RunInfo", "collect", "terminate"]

log = get_logger(__name__)


@attrs.frozen(kw_only=True)
class RunInfo:
    """A run of the store as gc sees it."""

    run: str
    state: str
    """``open``, ``finished`` (intact or not) or ``abandoned``."""
    digest: str | None


@attrs.frozen(kw_only=True)
class Leak:
    """One instance that is still running, or one floating address still allocated, that
    no live process will deprovision or release."""

    instance_id: str
    """The instance's id; for an address, what releases it (its allocation id)."""
    cloud: str
    run: str | None
    run_state: str
    slot: str | None
    address: str | None
    age_s: float | None
    reason: str
    actionable: bool
    """False when gc will not touch it (its run is unknown here, or no cloud was given)."""
    kind: str = "instance"
    """``instance``, or ``address`` for a floating address (it costs money unattached)."""


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runs(store: RunStore) -> dict[str, RunInfo]:
    infos: dict[str, RunInfo] = {}
    for path in store.run_dirs():
        if is_locked(path / EVENTS):
            infos[path.name] = RunInfo(run=path.name, state="open", digest=None)
            continue
        verdict = verify(path, check_blobs=False)
        state = "finished" if verdict.has_finished_event else "abandoned"
        infos[path.name] = RunInfo(run=path.name, state=state, digest=verdict.digest)
    return infos


def _ts_age(ts: str) -> float:
    return (time.time_ns() - parse_ts(ts)) / 1e9


@attrs.define
class _Launched:
    instance_id: str
    slot: str
    run: str
    exp: str
    cloud_kind: str
    endpoint: str | None
    region: str | None
    ts: str


def _ledger(store: RunStore, runs: dict[str, RunInfo]) -> list[_Launched]:
    """Instances launched and never terminated, in runs that are not open."""
    out: list[_Launched] = []
    for run_id, info in runs.items():
        if info.state == "open":
            continue
        clouds: dict[str, dict[str, object]] = {}
        launched: dict[str, _Launched] = {}
        try:
            for event in LogReader(store.root / run_id / EVENTS, run=run_id):
                data = event.data
                if event.type == "experiment.created" and isinstance(data.get("cloud"), dict):
                    clouds[str(data.get("exp"))] = data["cloud"]
                elif event.type == "instance.launched":
                    cloud = clouds.get(str(data.get("exp")), {})
                    launched[str(data["instance_id"])] = _Launched(
                        instance_id=str(data["instance_id"]),
                        slot=str(data.get("slot")),
                        run=run_id,
                        exp=str(data.get("exp")),
                        cloud_kind=str(cloud.get("kind", "?")),
                        endpoint=cloud.get("endpoint"),  # type: ignore[arg-type]
                        region=cloud.get("region"),  # type: ignore[arg-type]
                        ts=event.ts,
                    )
                elif event.type == "instance.terminated":
                    launched.pop(str(data.get("instance_id")), None)
        except Exception as exc:
            log.warning("run read in part", run=run_id, error=str(exc))
        out.extend(launched.values())
    return out


def _label(kind: str, endpoint: str | None, region: str | None) -> str:
    """How a leak names its cloud, and how terminate() finds the cloud again by it."""
    return f"{kind} {endpoint or 'AWS'} ({region})"


def _cloud_key(endpoint: str | None, region: str | None) -> tuple[str | None, str | None]:
    return (parse_endpoint(endpoint) if endpoint else None, region)


@attrs.frozen(kw_only=True)
class Collected:
    """What ``collect`` found."""

    leaks: list[Leak]
    """Instances first: an address is released once the instance holding it is ended."""
    runs: dict[str, RunInfo]
    unchecked: dict[str, str]
    """Clouds that could not be asked (their label → why): what the record says they
    run is listed as not checked, and instances only their tags would show are unknown."""


def collect(
    store: RunStore, *, clouds: Sequence[EC2Cloud] = (), home: Path | None = None
) -> Collected:
    """Every leaked instance, what gc knows of the store's runs, and the clouds it could
    not check — one cloud that cannot be reached hides nothing the others show."""
    home = home or precip_home()
    runs = _runs(store)
    leaks: dict[str, Leak] = {}
    unchecked: dict[str, str] = {}

    for state in live_local_instances(home):
        info = runs.get(state.run)
        owner_alive = _process_alive(state.owner_pid)
        if info is not None and info.state == "open" and owner_alive:
            continue  # a live experiment is using it
        if info is None and owner_alive:
            continue  # another store's live experiment
        reason = "its recording process is gone" if state.run else "its process is gone"
        if owner_alive and info is not None:
            reason = f"its run is {info.state}"
        unrecorded = "unrecorded: record=False"
        leaks[state.instance_id] = Leak(
            instance_id=state.instance_id,
            cloud="local",
            run=state.run or None,
            run_state=info.state if info else "not in this store" if state.run else unrecorded,
            slot=state.slot,
            address=state.address,
            age_s=(time.time_ns() - state.started_ns) / 1e9 if state.started_ns else None,
            reason=reason,
            actionable=True,
        )

    by_cloud = {_cloud_key(cloud.endpoint, cloud.region): cloud for cloud in clouds}
    for item in _ledger(store, runs):
        if item.instance_id in leaks or item.cloud_kind == "local":
            continue  # local instances that still run were found above
        cloud = by_cloud.get(_cloud_key(item.endpoint, item.region))
        label = _label(item.cloud_kind, item.endpoint, item.region)
        found = None
        if cloud is not None and _cloud_label(cloud) not in unchecked:
            try:
                found = _described(cloud, item.instance_id)
            except CloudError as exc:
                unchecked[_cloud_label(cloud)] = str(exc)
        if cloud is None or _cloud_label(cloud) in unchecked:
            why = (
                f"pass --cloud {item.endpoint or ''} to check and terminate it"
                if cloud is None
                else "asking its cloud failed (why is below); run gc again once it answers"
            )
            leaks[item.instance_id] = Leak(
                instance_id=item.instance_id,
                cloud=label,
                run=item.run,
                run_state=runs[item.run].state,
                slot=item.slot,
                address=None,
                age_s=_ts_age(item.ts),
                reason=f"launched and never terminated in its run; not checked: {why}",
                actionable=False,
            )
            continue
        if found is None or found.state in ("terminated", "shutting-down"):
            continue
        leaks[item.instance_id] = Leak(
            instance_id=item.instance_id,
            cloud=label,
            run=item.run,
            run_state=runs[item.run].state,
            slot=item.slot,
            address=found.public_address or found.private_address,
            age_s=_ts_age(item.ts),
            reason="launched and never terminated in its run, still " + found.state,
            actionable=True,
        )

    for cloud in clouds:
        label = _cloud_label(cloud)
        if label in unchecked:
            continue
        try:
            tagged = cloud.tagged_instances()
            addresses = cloud.tagged_addresses()
        except CloudError as exc:
            unchecked[label] = str(exc)
            continue
        for inst, tags in tagged:
            if inst.instance_id in leaks:
                continue
            run_id = tags.get("precip:run")
            info = runs.get(run_id or "")
            if info is not None and info.state == "open":
                continue
            leaks[inst.instance_id] = Leak(
                instance_id=inst.instance_id,
                cloud=label,
                run=run_id,
                run_state=info.state if info else "not in this store",
                slot=tags.get("precip:slot"),
                address=inst.public_address or inst.private_address,
                age_s=None,
                reason=(
                    f"tagged with run {run_id}, which is {info.state}"
                    if info
                    else f"tagged with run {run_id}, unknown to this store: not touched"
                ),
                actionable=info is not None,
            )
        for floating in addresses:
            run_id = floating.tags.get("precip:run")
            info = runs.get(run_id or "")
            if info is not None and info.state == "open":
                continue
            held = f", still associated with {floating.instance_id}" if floating.instance_id else ""
            leaks[floating.handle] = Leak(
                instance_id=floating.handle,
                cloud=label,
                run=run_id,
                run_state=info.state if info else "not in this store",
                slot=floating.tags.get("precip:slot"),
                address=floating.address,
                age_s=None,
                reason=(
                    f"floating address tagged with run {run_id}, which is {info.state}{held}"
                    if info
                    else f"floating address tagged with run {run_id}, unknown to this store: "
                    "not touched"
                ),
                actionable=info is not None,
                kind="address",
            )
    ordered = sorted(
        leaks.values(), key=lambda leak: (leak.kind != "instance", leak.run or "", leak.slot or "")
    )
    return Collected(leaks=ordered, runs=runs, unchecked=unchecked)


def _cloud_label(cloud: EC2Cloud) -> str:
    return _label(cloud.kind, cloud.endpoint, cloud.region)


def _described(cloud: EC2Cloud, instance_id: str) -> CloudInstance | None:
    """The cloud's description of one instance; None when it no longer knows it."""
    described = {inst.instance_id: inst for inst in cloud.describe([instance_id])}
    return described.get(instance_id)


def terminate(
    store: RunStore,
    leaks: Sequence[Leak],
    runs: dict[str, RunInfo],
    *,
    clouds: Sequence[EC2Cloud] = (),
    home: Path | None = None,
) -> Ended:
    """End the actionable leaks; record what was done in a run of gc's own. A leak its
    cloud refuses to end is recorded and reported, and the others are still ended."""
    home = home or precip_home()
    targets = [leak for leak in leaks if leak.actionable]
    failed: dict[str, str] = {}
    if not targets:
        return Ended(run=None, failed=failed)
    by_label = {_cloud_label(c): c for c in clouds}
    local_states = {state.instance_id: state for state in live_local_instances(home)}
    run = Run.open(store, name="gc", argv=["precip-repro", "gc", "--terminate"])
    acted: dict[str, str | None] = {}
    with run:
        for leak in targets:
            info = runs.get(leak.run or "")
            acted[leak.run or "?"] = info.digest if info else None
            what = (
                f"releases floating address {leak.address}"
                if leak.kind == "address"
                else f"terminates {leak.instance_id}"
            )
            names = (
                {"address": leak.address, "allocation": leak.instance_id}
                if leak.kind == "address"
                else {"instance_id": leak.instance_id}
            )
            run.append(
                Note(
                    text=f"gc {what}: {leak.reason}",
                    fields={
                        "run": leak.run,
                        "digest": info.digest if info else None,
                        **names,
                        "slot": leak.slot,
                        "cloud": leak.cloud,
                    },
                )
            )
            slot = leak.slot or "?"
            try:
                if leak.kind == "address":
                    by_label[leak.cloud].release_address(leak.instance_id)
                    continue
                run.append(InstanceTerminating(slot=slot, instance_id=leak.instance_id))
                if leak.cloud == "local":
                    state: LocalInstanceState | None = local_states.get(leak.instance_id)
                    if state is not None:
                        terminate_local(state, home)
                else:
                    by_label[leak.cloud].terminate([leak.instance_id])
            except CloudError as exc:
                failed[leak.instance_id] = str(exc)
                run.append(
                    Note(
                        text=f"gc could not end {leak.instance_id}: {exc}",
                        fields={"run": leak.run, "instance_id": leak.instance_id, "slot": slot},
                    )
                )
                continue
            run.append(InstanceTerminated(slot=slot, instance_id=leak.instance_id))
        run.append(
            Note(
                text=f"gc acted on {len(acted)} run(s)",
                fields={"runs": [{"run": r, "digest": d} for r, d in sorted(acted.items())]},
            )
        )
    return Ended(run=run, failed=failed)


@attrs.frozen(kw_only=True)
class Ended:
    """What ``terminate`` did: its run (None when nothing was to be ended) and the leaks
    whose cloud refused (instance or allocation id → why)."""

    run: Run | None
    failed: dict[str, str]
