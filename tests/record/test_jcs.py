"""Format v2's canonical form is RFC 8785 (precip_repro.record.jcs), fast path included."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.canonical import canonical, jsonable
from precip_repro.record.jcs import check_jcs, jcs, jcs_fast, plain
from precip_repro.record.numbers import MAX_SAFE

# Keys and strings from the whole of Unicode (astral characters included: they are where
# UTF-16 and code point order part), and every number RFC 8785 can hold.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
astral = st.text(st.sampled_from(["a", "\ufb01", "\uffff", "\ue000", "\U0001d11e", "\U0010ffff"]))
numbers = st.integers(-MAX_SAFE, MAX_SAFE) | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(text | astral, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=1500)
@given(json_values)
def test_the_fast_path_writes_exactly_what_rfc8785_writes(value):
    fast = jcs_fast(value) if plain(value) else None
    if fast is not None:
        assert fast == rfc8785.dumps(value)


@settings(max_examples=800)
@given(json_values)
def test_the_canonical_form_is_rfc8785_for_every_value_it_holds(value):
    try:
        check_jcs(value)
    except UnrecordableValue:
        return  # integral floats and -0.0: jsonable types them first (tested below)
    assert jcs(value) == rfc8785.dumps(value)
    assert canonical(value) == rfc8785.dumps(value)


@given(json_values | st.floats() | st.integers())
def test_a_users_value_through_jsonable_is_always_writable_and_rfc8785(value):
    stored = jsonable(value)
    assert jcs(stored) == rfc8785.dumps(stored)
    assert jcs(json.loads(jcs(stored))) == jcs(stored)  # stable through a parse


def test_keys_sort_by_utf16_code_units_not_code_points():
    # U+1D11E is D834 DD1E in UTF-16: before U+FB01, after it by code point.
    value = {"\ufb01": 1, "\U0001d11e": 2, "a": 3}
    assert jcs(value) == '{"a":3,"\U0001d11e":2,"\ufb01":1}'.encode()
    assert jcs(value) == rfc8785.dumps(value)
    assert json.dumps(value, sort_keys=True, ensure_ascii=False).index("\ufb01") < json.dumps(
        value, sort_keys=True, ensure_ascii=False
    ).index("\U0001d11e")  # what v1's json.dumps does instead


@pytest.mark.parametrize(
    "number, written",
    [(4.919, b"4.919"), (1e21, b"1e+21"), (1e-7, b"1e-7"), (0.000001, b"0.000001"),
     (1.5e300, b"1.5e+300"), (-5e-324, b"-5e-324"), (MAX_SAFE, b"9007199254740991")],
)  # fmt: skip
def test_numbers_are_written_as_ecmascript_writes_them(number, written):
    assert jcs(number) == written


def test_escapes_are_rfc8785s():
    assert jcs('\b\t\n\f\r\x00\x1f\x7f/\u2028"\\') == rb'"\b\t\n\f\r\u0000\u001f' + (
        "\x7f/\u2028".encode() + rb'\"\\"'
    )


@pytest.mark.parametrize("bad", [2**53, -(2**53), 2.0, -0.0, float("nan"), float("inf")])
def test_what_rfc8785_cannot_hold_exactly_is_refused_naming_the_field(bad):
    with pytest.raises(UnrecordableValue) as info:
        jcs({"a": [1, {"b": bad}]})
    assert info.value.field == "a[1].b"
