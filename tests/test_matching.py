"""Tags choose instances; a call that acts on instances and finds none says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from precip_repro import NoInstanceMatches, finish_run, verify
from precip_repro.record import LogReader
from precip_repro.record.store import EVENTS


def test_calls_that_act_on_instances_raise_when_no_instance_has_the_tags(
    local_experiment, tmp_path
):
    exp = local_experiment("no-match")
    exp.provision("default", tags=["a", "gpu"])
    exp.wait()
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho job\n")
    calls: dict[str, Callable[[], object]] = {
        "run": lambda: exp.run(["b"], "echo never"),
        "copy_and_run": lambda: exp.copy_and_run(["b"], script),
        "put": lambda: exp.put(["b"], script, "/tmp/job.sh"),
        "get": lambda: exp.get(["b"], "/etc/hostname", tmp_path / "hostname"),
    }
    for method, call in calls.items():
        with pytest.raises(NoInstanceMatches) as raised:
            call()
        message = str(raised.value)
        assert message.startswith(f"{method}(): no instance of experiment e1 has all of")
        assert "['b']" in message and "the tags a, gpu" in message
        assert raised.value.tags == ["b"] and raised.value.existing == ["a", "gpu"]
    assert not (tmp_path / "hostname").exists()
    # Queries keep answering with what matches: nothing.
    assert exp.list(["b"]) == []
    assert exp.get_public_hostnames(["b"]) == []
    assert exp.get_private_hostnames(["b"]) == []

    run_path = exp.run_path
    finish_run("ok")
    failed = [e.data for e in LogReader(Path(run_path) / EVENTS) if e.type == "call.failed"]
    assert [f["error"]["type"] for f in failed] == ["NoInstanceMatches"] * 4
    assert verify(run_path).state == "intact"


def test_an_experiment_without_instances_says_to_provision_first(local_experiment):
    exp = local_experiment("empty")
    with pytest.raises(NoInstanceMatches, match="it has no instances"):
        exp.run([], "echo never")
