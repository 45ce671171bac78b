"""An experiment's instances: launched by slot, chosen by tags, terminated — a failed
provision leaving nothing running, a termination going ahead when the record refuses it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from precip_repro.clouds.base import Cloud, CloudInstance, LaunchRequest
from precip_repro.exceptions import ExperimentClosed, NoInstanceMatches, RecordError
from precip_repro.experiment.fanout import fan_out
from precip_repro.experiment.instance import Instance
from precip_repro.experiment.recording import Call, Calls
from precip_repro.logs import get_logger
from precip_repro.record.events import InstanceLaunched, InstanceTerminated, InstanceTerminating
from precip_repro.session import Session
from precip_repro.slots import slot_order
from precip_repro.ssh import SshPool

__all__ = ["LAUNCHES_WAIT", "Fleet"]

log = get_logger(__name__)

LAUNCHES_WAIT: Final = 300.0
"""How long closing waits for launches under way in other threads (a cloud API answers a
launch within seconds; its retries give up within minutes)."""


class Fleet:
    """The instances of one experiment, in slot order. Thread-safe: threads of the script
    may provision, deprovision and use instances at once."""

    def __init__(
        self,
        *,
        exp: str,
        label: str,
        cloud: Cloud,
        pool: SshPool,
        calls: Calls,
        session: Session,
    ) -> None:
        self.exp = exp
        self.label = label
        """How messages name the experiment: ``e1`` or ``e1 (name)``."""
        self.cloud = cloud
        self.pool = pool
        self.calls = calls
        self.session = session
        self.lock = threading.RLock()
        self.terminating = threading.RLock()
        """Held by terminations, and by replacements so they take turns with them."""
        self.closing = False
        self.closed = False
        self._launching = 0  # launches under way: closing waits for them
        self._launches_ended = threading.Condition(self.lock)
        self._instances: list[Instance] = []
        self._provisions = 0

    # -- what there is ------------------------------------------------------------------------

    def check_open(self, method: str) -> None:
        if self.closed or self.closing:
            how = (
                "closed: close() or the end of its `with` block deprovisioned it"
                if self.closed
                else "closing: close(), the end of its `with` block or of the script is "
                "deprovisioning it"
            )
            raise ExperimentClosed(
                f"experiment {self.label} is {how}, so {method}() would start or use what "
                "nothing deprovisions any more; make a new experiment",
                exp=self.exp,
            )

    def match(self, tags: Sequence[str]) -> list[Instance]:
        with self.lock:
            found = [inst for inst in self._instances if inst.matches(tags)]
        if not found:
            log.warning("no instance matches the tags", exp=self.exp, tags=list(tags))
        return found

    def targets(self, tags: Sequence[str], method: str) -> list[Instance]:
        """The instances a call acts on; :class:`NoInstanceMatches` when there are none
        (a call that silently did nothing let a run end ``ok`` having run nothing)."""
        with self.lock:
            everyone = list(self._instances)
        found = [inst for inst in everyone if inst.matches(tags)]
        if found:
            return found
        # Each instance's first three tags are precip, its id and its slot.
        existing = sorted({tag for inst in everyone for tag in inst.tags[3:]})
        if not everyone:
            have = "it has no instances (provision them first; deprovisioned ones are gone)"
        elif existing:
            have = (
                f"its instances have the tags {', '.join(existing)} (and each precip, its id "
                "and its slot)"
            )
        else:
            have = "its instances have no tags but precip, their ids and their slots"
        raise NoInstanceMatches(
            f"{method}(): no instance of experiment {self.exp} has all of the tags "
            f"{list(tags)}, so nothing was done; {have}",
            tags=tags,
            existing=existing,
        )

    def slots(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {
                inst.slot: {
                    **inst.as_dict(),
                    "public_hostname": inst.public_hostname,
                    "private_hostname": inst.private_hostname,
                }
                for inst in self._instances
            }

    def live(self) -> list[Instance]:
        """Those not terminated."""
        with self.lock:
            return [inst for inst in self._instances if inst.state != "terminated"]

    # -- launching ----------------------------------------------------------------------------

    def provision(
        self,
        call: Call,
        *,
        run: str,
        image_id: str,
        instance_type: str,
        count: int,
        user_tags: list[str],
    ) -> list[str]:
        """Launch ``count`` instances; their ids. A partly failed provision leaves nothing
        running."""
        with self.lock:
            self._provisions += 1
            k = self._provisions
        requests = [
            LaunchRequest(
                run=run,
                exp=self.exp,
                slot=f"{self.exp}.p{k}.{index}",
                image_id=image_id,
                instance_type=instance_type,
                tags=tuple(user_tags),
            )
            for index in range(count)
        ]
        started: list[Instance] = []
        failed = threading.Event()

        def launch(request: LaunchRequest) -> Instance | None:
            if failed.is_set() or self.session.signal_held:
                return None  # the provision is failing or stopping: start no more
            try:
                return self._launch(call, request, user_tags, started)
            except BaseException:
                failed.set()
                raise

        try:
            # Launches overlap where the cloud takes them so (an EC2 API answers each in a
            # second or so: a hundred in turn took minutes); the whole is shielded so that a
            # signal waits for those under way, then ends them all below.
            with self.session.shielded("launching instances"):
                outcomes = fan_out(
                    launch, requests, parallel=True, workers=self.cloud.launch_workers
                )
            for _, error in outcomes:
                if error is not None:
                    raise error
        except BaseException:
            if started:
                self.terminate(started, call.number)
            raise
        with self.lock:  # in slot order, as launched in turn
            self._instances.sort(key=lambda inst: slot_order(inst.slot))
        return [inst.instance_id for inst, _ in outcomes if inst is not None]

    def _launch(
        self, call: Call, request: LaunchRequest, user_tags: list[str], started: list[Instance]
    ) -> Instance:
        """Launch one instance, known to this experiment (and in ``started``) before its
        launch is recorded."""
        # Shielded until the instance is known: a Ctrl-C in the middle of the launch request
        # would leave an instance running that nothing terminates. Known before it is
        # recorded: should the record refuse the event, the instance is still terminated by
        # the provision, not left running unseen.
        with self.lock:
            # Closing (another thread, or the end of the script): what this launch would
            # start, nothing would deprovision.
            self.check_open("provision")
            self._launching += 1
        try:
            with self.session.shielded("launching an instance"):
                inst = launched(self.cloud.launch(request), request, user_tags)
                with self.lock:
                    self._instances.append(inst)
                    started.append(inst)
                self.record_launched(inst, call.number, image_digest=inst.image_digest)
        finally:
            with self.lock:
                self._launching -= 1
                self._launches_ended.notify_all()
        return inst

    def record_launched(self, inst: Instance, call: int, *, image_digest: str | None) -> None:
        """Write ``instance.launched`` for ``inst`` (launched, or launched again in its slot)."""
        self.calls.append(
            InstanceLaunched(
                call=call,
                exp=self.exp,
                slot=inst.slot,
                instance_id=inst.instance_id,
                image_id=inst.image_id,
                instance_type=inst.instance_type,
                tags=list(inst.tags),
                image_digest=image_digest,
            )
        )

    def wait_for_launches(self) -> bool:
        """Wait (holding the lock) until no launch is under way; False past LAUNCHES_WAIT."""
        return self._launches_ended.wait_for(lambda: self._launching == 0, timeout=LAUNCHES_WAIT)

    # -- terminating --------------------------------------------------------------------------

    def terminate(self, targets: list[Instance], call: int) -> None:
        # One termination at a time: threads of the script deprovisioning at once end each
        # instance once, and each returns when what it asked for has ended.
        with self.session.shielded(), self.terminating:  # a Ctrl-C must not stop it half-way
            with self.lock:
                targets = [inst for inst in targets if inst in self._instances]
            self._terminate_unshielded(targets, call)

    def _terminate_unshielded(self, targets: list[Instance], call: int) -> None:
        # Termination is the one side effect that goes ahead when its intent cannot be
        # recorded (a full disk): a running instance costs money, a gap in the record is
        # said out loud (the error is raised once the instances are gone).
        refused: RecordError | None = None

        def record(payload: InstanceTerminating | InstanceTerminated) -> None:
            nonlocal refused
            if refused is None:
                try:
                    self.calls.append(payload)
                except RecordError as exc:
                    refused = exc

        known = [inst.reachability for inst in targets]
        for inst in targets:
            record(InstanceTerminating(slot=inst.slot, instance_id=inst.instance_id, call=call))
            # Before its connections drop: a thread of the script's own still using one
            # must learn why it broke, not that the cloud no longer knows the instance.
            inst.reachability = inst.reachability.going(
                f"this experiment terminated it (deprovision, call #{call})"
            )
            self.pool.drop(inst.instance_id)
        if targets:
            try:
                self.cloud.terminate([inst.instance_id for inst in targets])
            except BaseException:
                for inst, before in zip(targets, known, strict=True):
                    inst.reachability = before  # not terminated after all
                raise
        for inst in targets:
            inst.state = "terminated"
            inst.reachability = inst.reachability.ended()
            record(InstanceTerminated(slot=inst.slot, instance_id=inst.instance_id, call=call))
        with self.lock:
            self._instances = [i for i in self._instances if i not in targets]
        if refused is not None:
            log.error(
                "instances terminated; the record could not say so",
                exp=self.exp, instances=[i.instance_id for i in targets], error=str(refused),
            )  # fmt: skip
            raise refused


def launched(described: CloudInstance, request: LaunchRequest, user_tags: list[str]) -> Instance:
    inst = Instance(
        slot=request.slot,
        instance_id=described.instance_id,
        image_id=request.image_id,
        instance_type=request.instance_type,
        tags=["precip", described.instance_id, request.slot, *user_tags],
        image_digest=described.image_digest,
        request=request,
    )
    inst.update(described)
    return inst
