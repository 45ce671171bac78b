"""A parameter's value: the environment's, typed as declared, else the default; played
back, the recording's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.exceptions import InvalidOption, ParameterInvalid
from precip_repro.experiment.params import Chosen, choose, kind_of, parse


def test_the_environment_wins_over_the_default_and_is_read_as_the_defaults_type():
    kind = kind_of("SORT_N", 200_000, None)
    assert choose("SORT_N", 200_000, kind, environ={"SORT_N": "400000"}) == Chosen(
        value=400_000, source="environment"
    )
    assert choose("SORT_N", 200_000, kind, environ={}) == Chosen(value=200_000, source="default")


def test_a_float_parameter_with_an_integer_default_is_a_float_all_the_same():
    chosen = choose("RATE", 2, float, environ={})
    assert chosen == Chosen(value=2.0, source="default") and type(chosen.value) is float
    assert choose("RATE", 2, float, environ={"RATE": "0.5"}).value == 0.5


def test_booleans_are_read_from_the_usual_words():
    assert choose("FAST", False, bool, environ={"FAST": "yes"}).value is True
    assert choose("FAST", True, bool, environ={"FAST": "Off"}).value is False
    with pytest.raises(ParameterInvalid, match="one of 0, 1, false, no, off, on, true, yes"):
        choose("FAST", True, bool, environ={"FAST": "maybe"})


def test_text_that_is_not_of_the_type_names_the_variable_its_text_and_the_type():
    with pytest.raises(ParameterInvalid) as raised:
        choose("SORT_N", 1, int, environ={"SORT_N": "2e5"})
    assert raised.value.name == "SORT_N"
    assert raised.value.text == "2e5"
    assert raised.value.expected == "int"
    assert "SORT_N='2e5' is not an int" in str(raised.value)


def test_no_value_and_no_default_says_how_to_give_one():
    with pytest.raises(ParameterInvalid, match=r"set the environment variable LABEL.*default="):
        choose("LABEL", None, str, environ={})


def test_a_recorded_value_is_used_whatever_the_environment_holds():
    chosen = choose("SORT_N", 1, int, environ={"SORT_N": "5"}, recorded=200_000)
    assert chosen == Chosen(value=200_000, source="recording")


def test_a_default_not_of_the_declared_type_and_an_unknown_type_are_refused():
    with pytest.raises(ParameterInvalid, match="'7' is of type str, and the parameter is declared"):
        kind_of("N", "7", int)
    with pytest.raises(InvalidOption, match="bool, float, int, str"):
        kind_of("N", None, list)  # type: ignore[arg-type]


@given(st.integers())
def test_an_integer_reads_back_from_its_decimal_text(value):
    assert parse("N", str(value), int) == value


@given(st.floats(allow_nan=False))
def test_a_float_reads_back_from_its_repr(value):
    assert parse("X", repr(value), float) == value


def test_exp_param_records_the_value_once_however_often_declared(local_experiment, monkeypatch):
    from precip_repro import finish_run
    from precip_repro.record import LogReader
    from precip_repro.record.store import EVENTS

    monkeypatch.setenv("SORT_N", "400000")
    monkeypatch.delenv("LABEL", raising=False)
    exp = local_experiment("params")
    assert exp.param("SORT_N", default=200_000) == 400_000
    assert exp.param("SORT_N", default=200_000) == 400_000  # in a loop: recorded once
    assert exp.param("LABEL", default="fast") == "fast"
    assert exp.param("RATE", type=float, default=1) == 1.0
    run_path = exp.run_path
    finish_run()
    recorded = [e.data for e in LogReader(run_path / EVENTS) if e.type == "parameter"]
    assert recorded == [
        {"name": "SORT_N", "value": 400000, "source": "environment"},
        {"name": "LABEL", "value": "fast", "source": "default"},
        {"name": "RATE", "value": {"$float": "1"}, "source": "default"},  # a float, typed
    ]


def test_a_secret_in_a_parameter_is_recorded_as_its_name(local_experiment, monkeypatch):
    from precip_repro import finish_run
    from precip_repro.loading import load_run

    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    exp = local_experiment("params")
    exp.secret("TOKEN", "s3cr3t-value")
    assert exp.param("TOKEN", default="") == "s3cr3t-value"  # the script gets the value
    run_path = exp.run_path
    finish_run()
    assert load_run(run_path).parameters["TOKEN"].value == "${secret:TOKEN}"


def test_a_playback_uses_the_recorded_parameter_whatever_the_environment_says(
    store, monkeypatch, capsys
):
    from precip_repro.cli import main
    from tests.helpers import SWEEP, record_sweep

    run_dir = record_sweep(store, 1, sweep_bytes=100_000)
    monkeypatch.delenv("SWEEP_BYTES", raising=False)  # the default (200000) would differ
    code = main(["--records", str(store.root), "run", "--playback", run_dir.name,
                 str(SWEEP), "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "recorded calls matched" in out
    assert "level 1: " in out  # the recorded outputs, printed by the script


def test_a_parameter_the_environment_mistypes_stops_precip_repro_run_in_one_line(
    store, tmp_path, monkeypatch, capsys
):
    from precip_repro.cli import main

    script = tmp_path / "typed.py"
    script.write_text(
        "from precip_repro import LocalExperiment\n"
        "with LocalExperiment('typed') as exp:\n"
        "    exp.param('SORT_N', default=1)\n"
    )
    monkeypatch.setenv("SORT_N", "many")
    code = main(["--records", str(store.root), "run", str(script)])
    err = capsys.readouterr().err
    assert code == 1
    assert "ParameterInvalid: parameter SORT_N: the environment variable SORT_N='many' is " in err
