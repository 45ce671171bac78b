from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.canonical import (
    canonical,
    canonical_v1,
    check_recordable,
    dumps_fast,
    jsonable,
)
from precip_repro.record.numbers import decode

# JSON a v1 record can hold: no floats, str keys, valid Unicode.
text = st.text(st.characters(exclude_categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_the_v1_canonical_form_is_stable_through_a_parse(value):
    once = canonical_v1(value)
    assert canonical_v1(json.loads(once)) == once


@given(json_values)
def test_the_v1_canonical_form_matches_the_documented_json_dumps_call(value):
    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    assert canonical_v1(value) == expected
    assert canonical(value, v=1) == expected


@settings(max_examples=2000)
@given(json_values | st.integers(min_value=-(2**70), max_value=2**70))
def test_the_fast_v1_writer_writes_exactly_the_v1_canonical_bytes(value):
    # orjson writes v1 appends (recover); json defines v1's form and has the last word.
    assert dumps_fast(value) == canonical_v1(value)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, {"k": [2**80]}, "\u2028\u2029\x7f\x00\x1f", {"é": 1, "e": 2, "𝄞": 3}],
)
def test_the_fast_v1_writer_agrees_where_orjson_refuses_or_json_escapes(value):
    assert dumps_fast(value) == canonical_v1(value)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers())
@example(-math.nan)  # a NaN's sign is not kept (one NaN, records/README.md "Numbers")
def test_jsonable_keeps_a_number_a_number_that_reads_back_as_written(number):
    stored = jsonable({"metric": number})
    back = decode(json.loads(canonical(stored)))["metric"]
    assert type(back) is type(number)
    assert back == number or (math.isnan(back) and math.isnan(number))
    if isinstance(number, float) and not math.isnan(number):  # -0.0 stays -0.0
        assert math.copysign(1.0, back) == math.copysign(1.0, number)


def test_canonical_v1_refuses_a_float_naming_the_field():
    with pytest.raises(UnrecordableValue) as info:
        canonical_v1({"data": {"timings": [1, {"duration_ns": 1.5}]}})
    assert info.value.field == "data.timings[1].duration_ns"
    assert "data.timings[1].duration_ns" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2.0, -0.0, 2**53])
def test_canonical_refuses_a_number_json_cannot_carry_naming_the_field(bad):
    with pytest.raises(UnrecordableValue, match="jsonable") as info:
        canonical({"run": {"timeout": bad}}, field="args")
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


@pytest.mark.parametrize("v", [1, 2])
def test_a_lone_surrogate_is_refused_with_the_field(v):
    with pytest.raises(UnrecordableValue) as info:
        canonical({"cmd": "echo \ud800"}, v=v)
    assert info.value.field == "cmd"


def test_text_that_merely_looks_like_a_float_is_recorded_in_v1():
    assert canonical_v1({"cmd": "sleep 1.5", "x": ":1.5e3"}) == b'{"cmd":"sleep 1.5","x":":1.5e3"}'
