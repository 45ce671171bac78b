"""Test doubles for code that uses precip-repro, for a user's own tests.

:func:`playback` answers every call of the code inside it from a recorded run — no cloud,
no instance, no ssh, nothing recorded — and raises
:class:`~precip_repro.exceptions.PlaybackMismatch` at the first call that differs from the
recording. It is to precip-repro what ``httpx.MockTransport`` is to httpx: the experiment
classes are the real ones; only what is behind them answers from the record::

    from precip_repro.testing import playback

    def test_the_pipeline_still_makes_the_calls_it_was_recorded_making():
        with playback(RECORDED / "20260301T101500Z-pipeline-1a2b"):
            assert pipeline.main() == "4 workers joined"

Where a played-back run's events go: nowhere. A playback opens no run and writes no event
and no blob, in ``./records`` or anywhere (its calls are answered, not made, as
``precip-repro run --playback``'s are); the run played back is only read. What the code
itself writes stays its own: a ``get`` writes the recorded file where the code asks, as it
did when recorded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from precip_repro.exceptions import PlaybackMismatch, RecordCorrupted, RecordIncomplete
from precip_repro.loading import load_verified
from precip_repro.playback import RecordingStopped
from precip_repro.runview import RunView
from precip_repro.session import session
from precip_repro.stores import open_store

__all__ = ["PlaybackMismatch", "playback"]


@contextlib.contextmanager
def playback(
    run: str | os.PathLike[str], *, records: str | os.PathLike[str] | None = None
) -> Iterator[RunView]:
    """Answer every call of every experiment made inside the block from ``run``'s
    recording; the block gets the run's view.

    ``run`` is a run directory, or an id, a unique prefix of one or ``latest`` looked up in
    ``records`` (default: ``$PRECIP_RECORDS``, else ``./records``). The run must be
    intact: a run that is not raises :class:`~precip_repro.exceptions.RecordCorrupted` or
    :class:`~precip_repro.exceptions.RecordIncomplete`, as ``precip-repro verify`` would
    judge it, before the block runs.

    Inside, experiments are numbered from ``e1`` as when recorded, and each call must be
    the recording's next one — the same method with the same arguments (local paths
    compared by name; registered secrets and the environment's credentials as the
    recording redacted them). Answers are the recorded ones: ``run`` returns the recorded
    exit codes and outputs, ``get`` writes the recorded files, a call that failed raises
    its recorded exception, of its class. The first call that differs raises
    :class:`~precip_repro.exceptions.PlaybackMismatch`, showing the recorded and the
    attempted call side by side; every later call raises it again, and so does the end of
    the block, should the code have caught it. At the end of the block, the experiments
    still open are closed as they were at the recording's exit; recorded calls left
    unanswered then are a mismatch too — unless the recording was stopped (a signal, a
    killed process) in the call the code has reached: the block ends there, quietly, as
    the recording did.

    One playback at a time in a process (a second, nested or on another thread, is a
    ``RuntimeError``): the experiment classes learn of it from the process's session.
    """
    store = open_store(os.fspath(records) if records is not None else None)
    ((view, verdict),) = load_verified([store.resolve(os.fspath(run))])
    if view is None:
        kind = RecordCorrupted if verdict.state == "corrupt" else RecordIncomplete
        raise kind(
            f"run {verdict.run} cannot be played back: it is {verdict.state}, not intact: "
            f"{verdict.reason}; `precip-repro verify {verdict.path}` says more",
            run=verdict.run,
            path=verdict.path,
        )
    with session.playing_back(view) as played:
        try:
            # The code may reach the call the recording was stopped in: it ends there.
            with contextlib.suppress(RecordingStopped):
                yield view
            # What the recording process did at exit: close what the code left open.
            for experiment in played.experiments:
                experiment.close()
        except Exception as exc:
            # The code caught the mismatch and failed otherwise: the mismatch is the cause.
            if played.failed is not None and exc is not played.failed:
                raise played.failed from exc
            raise
        if played.failed is not None:
            raise played.failed  # caught by the code, which carried on
        if played.stopped is None and played.remaining:
            left = played.remaining[0]
            raise PlaybackMismatch(
                f"the code ended, but {len(played.remaining)} recorded call(s) remain, from "
                f"#{left.number} {left.exp}.{left.method}",
                call=left.number,
                recorded=f"{left.exp}.{left.method}",
                attempted="(nothing)",
            )
