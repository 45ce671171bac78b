"""An instance's reachability is one value: the state, and why where there is a why."""

from __future__ import annotations

from precip_repro.experiment.instance import Reach, Reachability


def test_a_new_instance_is_booting_and_not_ready():
    state = Reachability()
    assert (state.reach, state.ready, state.gone, state.stopped) == (
        Reach.BOOTING,
        False,
        None,
        None,
    )


def test_gone_after_ready_counts_as_ready_last_it_knew_until_terminated():
    gone = Reachability(Reach.READY).going("the cloud says it is terminated")
    assert (
        gone.reach is Reach.GONE and gone.ready and gone.gone == "the cloud says it is terminated"
    )
    assert not gone.ended().ready and gone.ended().gone == gone.gone


def test_gone_while_stopped_is_not_ready_and_says_no_longer_stopped():
    stopped = Reachability(Reach.STOPPED, "stopped at the console")
    assert stopped.stopped == "stopped at the console" and not stopped.ready
    gone = stopped.going("then terminated")
    assert (gone.ready, gone.stopped, gone.gone) == (False, None, "then terminated")


def test_the_first_reason_for_going_stays():
    gone = Reachability(Reach.READY).going("first").going("second")
    assert gone.gone == "first"
