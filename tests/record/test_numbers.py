"""Format v2's typed encoding of numbers (precip_repro.record.numbers)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.canonical import canonical, jsonable
from precip_repro.record.numbers import MAX_SAFE, decode, escape_reserved, needs_encoding

keys = st.sampled_from(["$float", "$int", "$object", "$other", "x"]) | st.text(max_size=4)
leaves = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(["2", "NaN", "-0", "Infinity"])
)  # fmt: skip
user_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=15,
)


def same(a: object, b: object) -> bool:
    """Equal, with the same types, NaN equal to NaN and -0.0 told from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@given(user_values)
def test_a_users_value_reads_back_as_passed_through_its_canonical_bytes(value):
    # user objects that look like typed values included: they are escaped, never decoded
    back = decode(json.loads(canonical(jsonable(value))))
    assert same(back, value), (value, back)


@pytest.mark.parametrize(
    "value, stored",
    [
        (4.919, 4.919),
        (2.0, {"$float": "2"}),
        (-0.0, {"$float": "-0"}),
        (1e300, 1e300),
        (float("nan"), {"$float": "NaN"}),
        (float("-inf"), {"$float": "-Infinity"}),
        (MAX_SAFE, MAX_SAFE),
        (MAX_SAFE + 2, {"$int": "9007199254740993"}),
        ({"$float": "2"}, {"$object": {"$float": "2"}}),
        ({"$float": "2", "y": 1}, {"$float": "2", "y": 1}),
    ],
)
def test_the_typed_encoding_is_the_one_documented(value, stored):
    assert same(jsonable(value), stored)


@pytest.mark.parametrize(
    "bad",
    [
        {"$float": "2.5"},  # a plain number carries it
        {"$float": "2.0"},  # ECMAScript writes 2
        {"$float": 2},
        {"$float": "x"},
        {"$int": "12"},  # within the safe range
        {"$int": "0900719925474099300"},
        {"$object": {"a": 1}},  # wraps only what looks typed
        {"$object": 1},
    ],
)
def test_a_typed_value_the_writer_never_writes_is_refused_naming_the_field(bad):
    with pytest.raises(UnrecordableValue) as info:
        decode({"fields": {"m": [bad]}})
    assert info.value.field == "fields.m[0]"


def test_v1_data_that_looks_typed_means_in_v2_what_it_meant():
    v1 = {"fields": {"m": {"$float": "2"}, "n": [{"$int": "1", "other": 2}]}}
    assert decode(escape_reserved(v1)) == v1


@given(user_values)
def test_a_value_said_to_need_no_encoding_is_written_as_it_is(value):
    # the append's fast path returns such data untouched
    if not needs_encoding(value):
        assert same(jsonable(value), value)
    if not needs_encoding(value, any_float=True):
        assert "float" not in repr(type(value)) and not any(
            isinstance(x, float) for x in _leaves(value)
        )


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
