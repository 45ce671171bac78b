"""How an experiment ends: everything it still runs deprovisioned — waiting for launches
under way, terminating what is left when deprovisioning fails — or, played back, as the
recording says it ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from precip_repro.clouds.base import Cloud
from precip_repro.exceptions import RecordError
from precip_repro.experiment.fleet import LAUNCHES_WAIT, Fleet
from precip_repro.experiment.recording import Recording
from precip_repro.logs import get_logger
from precip_repro.session import Session
from precip_repro.ssh import SshPool

__all__ = ["Lifetime", "LiveLifetime", "PlayedLifetime"]

log = get_logger(__name__)


class Lifetime(Protocol):
    def close(self) -> None:
        """End the experiment (once; a second close does nothing)."""
        ...


class LiveLifetime:
    """An experiment on a cloud: closing deprovisions what still runs."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        pool: SshPool,
        cloud: Cloud,
        session: Session,
        owner: object,
        deprovision: Callable[[], None],
        last_call: Callable[[], int | None],
    ) -> None:
        self.fleet = fleet
        self.pool = pool
        self.cloud = cloud
        self.session = session
        self.owner = owner
        """The experiment, as the session registered it."""
        self.deprovision = deprovision
        self.last_call = last_call

    def close(self) -> None:
        fleet = self.fleet
        with fleet.lock:
            if fleet.closed:
                return
            fleet.closing = True
            # Launches under way (a thread of the script provisioning) end first: what they
            # start is deprovisioned with the rest, not left running after the close.
            if not fleet.wait_for_launches():
                log.error(
                    "launches still under way after the wait: what they start may be left "
                    "running; run `precip-repro gc`",
                    exp=fleet.exp, waited_s=LAUNCHES_WAIT,
                )  # fmt: skip
            live = fleet.live()
        with self.session.shielded():
            try:
                if live:
                    self.deprovision()
            except BaseException as exc:
                self._terminate_after_failure(exc)
                raise
            finally:
                with fleet.lock:
                    fleet.closed = True
                self.pool.close()
                self.cloud.close()
                self.session.unregister(self.owner)  # type: ignore[arg-type]

    def _terminate_after_failure(self, cause: BaseException) -> None:
        # Deprovisioning failed — the record refused its intent, the cloud erred, a signal
        # came: what still runs costs money, so it is terminated now, recorded if the
        # record takes it (gc finds such instances gone if not).
        left = self.fleet.live()
        if not left:
            return
        ids = [inst.instance_id for inst in left]
        log.error("deprovisioning failed; terminating what is left", exp=self.fleet.exp,
                  instances=ids, error=str(cause))  # fmt: skip
        try:
            self.fleet.terminate(left, self.last_call() or 0)
        except RecordError:
            pass  # terminated all the same; terminate() said what the record lacks
        except Exception as exc:
            log.error(
                "terminating failed too: run `precip-repro gc`", instances=ids, error=str(exc)
            )


class PlayedLifetime:
    """A played-back experiment: no instance exists to tell whether closing deprovisioned
    when the run was recorded; the recording tells — its next call is that deprovision, or
    not."""

    def __init__(
        self, *, fleet: Fleet, recording: Recording, deprovision: Callable[[], None]
    ) -> None:
        self.fleet = fleet
        self.recording = recording
        self.deprovision = deprovision

    def close(self) -> None:
        with self.fleet.lock:
            if self.fleet.closed:
                return
            self.fleet.closed = True
        if self.recording.is_next(self.fleet.exp, "deprovision", {"tags": []}):
            self.deprovision()
