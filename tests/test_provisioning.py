"""provision() refuses at once a count no cloud could give, before anything is started."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from precip_repro import CloudError, InvalidOption
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import LogReader
from precip_repro.record.store import EVENTS


def test_a_count_past_any_cloud_is_refused_at_once_recording_no_call(local_experiment):
    exp = local_experiment("huge")
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(InvalidOption, match=r"at most 10,000"):
            exp.provision("default", count=10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1
    assert peak < 1 << 20  # nothing was built for a billion instances
    assert exp.list() == []
    methods = [
        e.data["method"] for e in LogReader(exp.run_path / EVENTS) if e.type == "call.started"
    ]
    assert methods == ["list"]  # the refused provision left no call behind


def test_a_count_past_what_the_local_cloud_can_give_names_what_it_can(local_experiment):
    exp = local_experiment("too-many", address_block="127.40.7.0/28")
    before = {s.instance_id for s in live_local_instances()}
    with pytest.raises(CloudError, match=r"127.40.7.0/28 has 13 of its 13 addresses left"):
        exp.provision("default", count=14)
    assert {s.instance_id for s in live_local_instances()} == before
    exp.provision("default", count=13)  # all it has
    assert len(exp.list()) == 13
