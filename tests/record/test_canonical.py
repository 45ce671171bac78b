from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.canonical import canonical, check_recordable, dumps_fast, jsonable

# JSON the record can hold: no floats, str keys, valid Unicode.
text = st.text(st.characters(exclude_categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_form_is_stable_through_a_parse(value):
    once = canonical(value)
    assert canonical(json.loads(once)) == once


@given(json_values)
def test_canonical_form_matches_the_documented_json_dumps_call(value):
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    assert canonical(value) == expected


@settings(max_examples=2000)
@given(json_values | st.integers(min_value=-(2**70), max_value=2**70))
def test_the_fast_writer_writes_exactly_the_canonical_bytes(value):
    # orjson writes appends; json defines the form and has the last word when verifying.
    assert dumps_fast(value) == canonical(value)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, {"k": [2**80]}, "\u2028\u2029\x7f\x00\x1f", {"é": 1, "e": 2, "𝄞": 3}],
)
def test_the_fast_writer_agrees_where_orjson_refuses_or_json_escapes(value):
    assert dumps_fast(value) == canonical(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_jsonable_keeps_a_float_as_its_exact_decimal_string(number):
    stored = jsonable({"metric": number})["metric"]
    assert isinstance(stored, str)
    assert float(stored) == number


def test_canonical_refuses_a_float_naming_the_field():
    with pytest.raises(UnrecordableValue) as info:
        canonical({"data": {"timings": [1, {"duration_ns": 1.5}]}})
    assert info.value.field == "data.timings[1].duration_ns"
    assert "data.timings[1].duration_ns" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_jsonable_refuses_nan_and_infinities_naming_the_field(bad):
    with pytest.raises(UnrecordableValue) as info:
        jsonable({"run": {"timeout": bad}}, "args")
    assert info.value.field == "args.run.timeout"


def test_jsonable_turns_tuples_paths_and_sets_into_json(tmp_path):
    assert jsonable({"t": (1, 2), "p": tmp_path, "s": {"b", "a"}}) == {
        "t": [1, 2],
        "p": str(tmp_path),
        "s": ["a", "b"],
    }


def test_non_string_keys_and_objects_are_refused_with_the_field():
    with pytest.raises(UnrecordableValue, match="key 1"):
        jsonable({"a": {1: "x"}})
    with pytest.raises(UnrecordableValue, match="key 1"):
        check_recordable({"a": {1: "x"}})
    with pytest.raises(UnrecordableValue) as info:
        jsonable({"args": {"obj": object()}})
    assert info.value.field == "args.obj"


def test_a_lone_surrogate_is_refused_with_the_field():
    with pytest.raises(UnrecordableValue) as info:
        canonical({"cmd": "echo \ud800"})
    assert info.value.field == "cmd"


def test_text_that_merely_looks_like_a_float_is_recorded():
    assert canonical({"cmd": "sleep 1.5", "x": ":1.5e3"}) == b'{"cmd":"sleep 1.5","x":":1.5e3"}'
