"""Comparison of a recorded step with the replay's outcome.

The replay records what it does as any run does; each step's verdict compares the recorded
call with the replay's own record of the call it just made, through the one comparison
``diff`` uses (:func:`precip_repro.compare_calls`), told to leave out what a replay changes
on purpose (:data:`precip_repro.REPLAY_COMPARING`: mapped arguments, another cloud's ids,
images, types and addresses, durations). A step is ``identical`` when nothing else
differs — exit codes, outputs and files after normalisation, results the script was given —
and ``equivalent`` when the rules the run declared (and ``--rules``) cover each difference.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from precip_repro import (
    REPLAY_COMPARING,
    CallView,
    ComparisonSide,
    ContentReader,
    Difference,
    Expectations,
    GrowingView,
    compare_calls,
)
from replay.content import RecordedContent

__all__ = ["Comparison"]


class Comparison(RecordedContent):
    """The differences between a recorded call and its replay, for
    :class:`replay.engine.Engine` (mixed in); none is a reproduced step."""

    run_path: Path | None
    _own: GrowingView | None = None
    _source_side: ComparisonSide | None = None
    _own_side: ComparisonSide | None = None
    _own_names: tuple[object, ...] = ()
    rules: Expectations

    def _differences(self, call: CallView, new_call: int) -> list[Difference] | None:
        """The differences between the recorded ``call`` and the replay's call
        ``new_call``; None when the replay's record does not hold that call."""
        if self.run_path is None:
            return None
        if self._own is None:
            self._own = GrowingView(self.run_path)
        if self._source_side is None:
            reader = ContentReader(self.source, stand_ins=self.stand_ins)
            self._source_side = ComparisonSide(
                self.source, reader=reader, norm=self.source_norm, one_host=True
            )
        own = self._own.refresh()
        replayed = own.calls.get(new_call)
        if replayed is None:
            return None
        # The replay's side is made again only when its instances changed (launched, ready
        # at new addresses): a view and a normaliser per step made long replays quadratic.
        names = tuple(
            (slot, tuple(view.instance_ids), view.public_address, view.private_address,
             view.public_hostname, view.private_hostname, len(view.earlier_addresses))
            for slot, view in own.instances.items()
        )  # fmt: skip
        if self._own_side is None or names != self._own_names:
            self._own_side = ComparisonSide(own.build(), one_host=True)
            self._own_names = names
        how = attrs.evolve(REPLAY_COMPARING, rules=self.rules)
        return list(compare_calls(self._source_side, self._own_side, call, replayed, how))
