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
