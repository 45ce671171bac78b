"""The call model: one table of the seed's methods, checked against the Experiment itself."""

from __future__ import annotations

import inspect

import pytest

from precip_repro import METHODS, CallAnswer, Experiment
from precip_repro.record.methods import CallResult, method
from precip_repro.record.recorder import COSTLY_METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_records_the_experiments_own_parameters_with_their_defaults(name):
    parameters = inspect.signature(getattr(Experiment, name)).parameters
    for param in METHODS[name].params:
        assert param.name in parameters, f"{name} records {param.name}, which it does not take"
        default = parameters[param.name].default
        if param.required:
            assert default is inspect.Parameter.empty, (name, param.name)
        else:
            assert default == param.default, (name, param.name, default, param.default)


def test_the_seeds_positional_parameters_are_recorded_in_their_order():
    for name, model in METHODS.items():
        positional = [
            p.name
            for p in inspect.signature(getattr(Experiment, name)).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
        ]
        assert list(model.names[: len(positional)]) == positional, name


def test_recorded_arguments_must_be_exactly_the_tables():
    assert list(METHODS["put"].recorded(user="u", remote_path="/r", local_path="l", tags=[])) == [
        "tags",
        "local_path",
        "remote_path",
        "user",
    ]
    with pytest.raises(TypeError, match="put records tags, local_path, remote_path, user"):
        METHODS["put"].recorded(tags=[], local_path="l", remote_path="/r")
    with pytest.raises(TypeError):
        METHODS["list"].recorded(tags=[], extra=1)


def test_an_older_record_gets_the_defaults_of_what_it_left_out():
    assert METHODS["wait"].bound({"tags": ["w"]}) == {"tags": ["w"], "timeout": 600}
    bound = METHODS["run"].bound({"tags": [], "cmd": "true", "new_in_v9": 1})
    assert bound == {
        "tags": [],
        "cmd": "true",
        "user": "root",
        "check_exit_code": True,
        "timeout": None,
        "new_in_v9": 1,  # an argument this version does not know is kept, last
    }


def test_what_each_method_answers_and_records():
    assert {n for n, m in METHODS.items() if m.answer is CallAnswer.OUTPUTS} == {
        "run",
        "copy_and_run",
    }
    assert {n for n, m in METHODS.items() if m.answer is CallAnswer.RESULT} == {
        "list",
        "get_public_hostnames",
        "get_private_hostnames",
    }
    assert METHODS["get"].answer is CallAnswer.FILES
    assert {n for n, m in METHODS.items() if m.result is CallResult.DERIVED} == {
        "run",
        "copy_and_run",
        "put",
        "get",
    }
    assert {"provision", "deprovision"} == COSTLY_METHODS
    assert METHODS["provision"].placed == {"image_id", "instance_type"}
    assert METHODS["copy_and_run"].local_paths == {"local_script"}


def test_a_method_a_newer_tool_recorded_is_answered_with_nothing_and_not_replayed():
    found = method("resize")
    assert (found.name, found.answer, found.replayed) == ("resize", CallAnswer.NOTHING, False)
    assert found.bound({"size": 3}) == {"size": 3}
