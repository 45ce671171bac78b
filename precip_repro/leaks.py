"""The leak ledger: instances still running that nothing will ever deprovision.

gc knows clouds only through the :class:`~precip_repro.clouds.base.Cloud` interface; the
CLI gives it the local cloud of this machine and each ``--cloud``. Three sources, merged by
instance id:

- **the record**: in every run of the store that is not open, instances launched and never
  terminated — asked about at the cloud that :meth:`~Cloud.holds` them, where one was given;
- **the clouds' run listings** (:attr:`Capability.RUN_LISTING`): instances launched for a
  run. Where the cloud knows whether the process that launched an instance still runs (the
  local cloud's state files say), that decides: a leak once it is gone, or once its run is
  no longer being written. Where it cannot know (EC2's tags), an instance is a leak when
  its run is in the store and not open; those of runs this store does not know are listed,
  never touched;
- **floating addresses** tagged with such runs (:attr:`Capability.FLOATING_ADDRESSES`).

``collect`` lists them; ``terminate`` ends them and records what it did in a run of its
own, naming each run it acted on with its digest. A finished run is never appended to.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs

from precip_repro.clouds.base import Capability, Cloud, CloudInfo, CloudInstance, RunInstance
from precip_repro.exceptions import CloudError
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
from precip_repro.stores import Store, open_store

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


def _runs(store: Store) -> dict[str, RunInfo]:
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
    cloud: CloudInfo
    """The cloud its experiment recorded (``?`` its kind where the record names none)."""
    ts: str


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _ledger(store: Store, runs: dict[str, RunInfo]) -> list[_Launched]:
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
                        cloud=CloudInfo(
                            kind=str(cloud.get("kind", "?")),
                            endpoint=_text(cloud.get("endpoint")),
                            region=_text(cloud.get("region")),
                        ),
                        ts=event.ts,
                    )
                elif event.type == "instance.terminated":
                    launched.pop(str(data.get("instance_id")), None)
        except Exception as exc:
            log.warning("run read in part", run=run_id, error=str(exc))
        out.extend(launched.values())
    return out


def _label(cloud: CloudInfo) -> str:
    """How a leak names its cloud, and how terminate() finds the cloud again by it: a cloud
    no endpoint or region places (this machine's local cloud) by its kind alone."""
    if cloud.endpoint is None and cloud.region is None:
        return cloud.kind
    return f"{cloud.kind} {cloud.endpoint or 'AWS'} ({cloud.region})"


@attrs.frozen(kw_only=True)
class Collected:
    """What ``collect`` found."""

    leaks: list[Leak]
    """Instances first: an address is released once the instance holding it is ended."""
    runs: dict[str, RunInfo]
    unchecked: dict[str, str]
    """Clouds that could not be asked (their label → why): what the record says they
    run is listed as not checked, and instances only their tags would show are unknown."""


def collect(store: Store | RunStore, *, clouds: Sequence[Cloud]) -> Collected:
    """Every leaked instance, what gc knows of the store's runs, and the clouds it could
    not check — one cloud that cannot be reached hides nothing the others show. ``clouds``
    are all gc may ask: what the record says runs on another is listed as not checked."""
    store = open_store(store)
    runs = _runs(store)
    leaks: dict[str, Leak] = {}
    unchecked: dict[str, str] = {}
    labelled = [(_label(cloud.info()), cloud) for cloud in clouds]

    for item in _ledger(store, runs):
        if item.instance_id in leaks:
            continue
        label, cloud = next(  # the last cloud given for an endpoint answers for it
            ((label, cloud) for label, cloud in reversed(labelled) if cloud.holds(item.cloud)),
            (_label(item.cloud), None),
        )
        found = None
        if cloud is not None and label not in unchecked:
            try:
                found = _described(cloud, item.instance_id)
            except CloudError as exc:
                unchecked[label] = str(exc)
        if cloud is None or label in unchecked:
            why = (
                f"pass --cloud {item.cloud.endpoint or ''} to check and terminate it"
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

    for label, cloud in labelled:
        if label in unchecked or Capability.RUN_LISTING not in cloud.capabilities:
            continue
        try:
            listed = cloud.run_instances()
            addresses = (
                cloud.run_addresses() if Capability.FLOATING_ADDRESSES in cloud.capabilities else []
            )
        except CloudError as exc:
            unchecked[label] = str(exc)
            continue
        for entry in listed:
            if entry.owner_alive is not None:
                leak = _owned(entry, entry.owner_alive, label, runs)
                if leak is not None:  # what its owner's fate says outweighs the record
                    leaks[leak.instance_id] = leak
            elif entry.instance.instance_id not in leaks:
                leak = _tagged(entry, label, runs)
                if leak is not None:
                    leaks[leak.instance_id] = leak
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


def _owned(
    entry: RunInstance, owner_alive: bool, label: str, runs: dict[str, RunInfo]
) -> Leak | None:
    """A listed instance whose cloud knows whether its launching process lives: a leak
    once that process is gone, or once its run is no longer being written; None while a
    live experiment — this store's or another's — may still end it."""
    run = entry.run or ""
    info = runs.get(run)
    if info is not None and info.state == "open" and owner_alive:
        return None  # a live experiment is using it
    if info is None and owner_alive:
        return None  # another store's live experiment
    reason = "its recording process is gone" if run else "its process is gone"
    if owner_alive and info is not None:
        reason = f"its run is {info.state}"
    unrecorded = "unrecorded: record=False"
    instance = entry.instance
    return Leak(
        instance_id=instance.instance_id,
        cloud=label,
        run=run or None,
        run_state=info.state if info else "not in this store" if run else unrecorded,
        slot=entry.slot,
        address=instance.public_address or instance.private_address,
        age_s=(time.time_ns() - entry.started_ns) / 1e9 if entry.started_ns else None,
        reason=reason,
        actionable=True,
    )


def _tagged(entry: RunInstance, label: str, runs: dict[str, RunInfo]) -> Leak | None:
    """A listed instance its cloud knows only the run of: a leak to end when that run is
    in the store and not open; listed, never touched, when the store does not know it;
    None while its run is being written."""
    run_id = entry.run
    info = runs.get(run_id or "")
    if info is not None and info.state == "open":
        return None
    instance = entry.instance
    return Leak(
        instance_id=instance.instance_id,
        cloud=label,
        run=run_id,
        run_state=info.state if info else "not in this store",
        slot=entry.slot,
        address=instance.public_address or instance.private_address,
        age_s=None,
        reason=(
            f"tagged with run {run_id}, which is {info.state}"
            if info
            else f"tagged with run {run_id}, unknown to this store: not touched"
        ),
        actionable=info is not None,
    )


def _described(cloud: Cloud, instance_id: str) -> CloudInstance | None:
    """The cloud's description of one instance; None when it no longer knows it."""
    described = {inst.instance_id: inst for inst in cloud.describe([instance_id])}
    return described.get(instance_id)


def terminate(
    store: Store | RunStore,
    leaks: Sequence[Leak],
    runs: dict[str, RunInfo],
    *,
    clouds: Sequence[Cloud],
) -> Ended:
    """End the actionable leaks; record what was done in a run of gc's own. A leak its
    cloud refuses to end is recorded and reported, and the others are still ended."""
    store = open_store(store)
    targets = [leak for leak in leaks if leak.actionable]
    failed: dict[str, str] = {}
    if not targets:
        return Ended(run=None, failed=failed)
    by_label = {_label(cloud.info()): cloud for cloud in clouds}
    run = Run.open(store.local, name="gc", argv=["precip-repro", "gc", "--terminate"])
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
