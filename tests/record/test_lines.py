"""Sealing an event into its line and parsing lines back (precip_repro.record.lines)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.exceptions import RecordCorrupted, UnrecordableValue, UnsupportedVersion
from precip_repro.loading import ViewBuilder
from precip_repro.record.canonical import canonical, jsonable
from precip_repro.record.events import GENESIS, Event, format_ts, payload_of, unstructure
from precip_repro.record.jcs import plain
from precip_repro.record.lines import parse_line, seal
from precip_repro.record.payloads import (
    BlobRef,
    CallFinished,
    CallStarted,
    CommandFinished,
    Note,
)
from precip_repro.runview import CallView
from tests.record.test_numbers import same, user_values

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
refs = st.builds(BlobRef, sha256=hexes, size=st.integers(0, 2**40), text=st.none() | text)
json_leaf = st.none() | st.booleans() | st.integers() | text
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
    max_leaves=10,
)
payloads = st.one_of(
    st.builds(Note, text=text, fields=st.dictionaries(text, json_values, max_size=4)),
    st.builds(
        CallStarted,
        call=st.integers(1, 10**6),
        exp=text,
        method=text,
        args=st.dictionaries(text, json_values, max_size=4),
    ),
    st.builds(
        CommandFinished,
        call=st.integers(1),
        slot=text,
        instance_id=text,
        user=text,
        cmd=text,
        exit_code=st.none() | st.integers(-255, 255),
        stdout=refs,
        stderr=refs,
        duration_ns=st.integers(0, 2**63),
    ),
)
timestamps = st.integers(0, 4_102_444_800 * 10**9)


def line_is_ascii(value: object) -> bool:
    return json.dumps(value, ensure_ascii=False).isascii()


@given(payloads, st.integers(0, 10**9), timestamps, hexes)
def test_event_round_trips_through_its_line(payload, seq, ns, prev):
    event, line = seal(
        seq=seq, ts=format_ts(ns), type=payload.TYPE, data=unstructure(payload), prev=prev
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = parse_line(line[:-1], line=1)
    assert back == event
    assert payload_of(back) == payload
    assert event.line() == line


@given(payloads, timestamps)
def test_hash_is_sha256_of_the_canonical_event_without_hash(payload, ns):
    event, line = seal(
        seq=0, ts=format_ts(ns), type=payload.TYPE, data=unstructure(payload), prev=GENESIS
    )
    body = json.loads(line)
    del body["hash"]
    assert hashlib.sha256(canonical(body)).hexdigest() == event.hash


@pytest.mark.parametrize("bad", [1.5, math.nan, math.inf])
def test_a_float_in_a_typed_field_is_refused_naming_it(bad):
    # (the fast writer prints NaN as null: the float rule must catch it all the same)
    payload = CommandFinished(
        call=1, slot="s", instance_id="i", user="root", cmd="true", exit_code=0,
        stdout=BlobRef.of(b""), stderr=BlobRef.of(b""), duration_ns=bad,
    )  # fmt: skip
    with pytest.raises(UnrecordableValue) as info:
        seal(seq=0, ts=format_ts(0), type=payload.TYPE, data=unstructure(payload), prev=GENESIS)
    assert info.value.field == "duration_ns"


def _line_of_version(version: int) -> bytes:
    body = {"v": version, "seq": 0, "ts": format_ts(0), "type": "note", "data": {}, "prev": GENESIS}
    body["hash"] = hashlib.sha256(canonical(body)).hexdigest()
    return canonical(body)


def test_an_unknown_version_is_refused_with_what_to_do():
    with pytest.raises(UnsupportedVersion, match=r"line 4: record format version 7.*upgrade"):
        parse_line(_line_of_version(7), line=4)


def test_a_version_digit_changed_by_hand_is_corrupt_not_unsupported():
    forged = _line_of_version(1).replace(b'"v":1', b'"v":7')
    with pytest.raises(RecordCorrupted, match="version 7 but does not hash"):
        parse_line(forged, line=2)


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda line: line.replace(b'"seq":0', b'"seq":0.0'), "not a non-negative integer"),
        (lambda line: line.replace(b'"fields":{}', b'"fields":{"x":1.50}'), "canonical"),
        (lambda line: line.replace(b'"fields":{}', b'"fields":{"x":2.0}'), "canonical"),
        (lambda line: line.replace(b'"fields":{}', b'"fields":{"x":9007199254740993}'), "2\\^53"),
        (lambda line: line.replace(b'{"data"', b'{ "data"'), "canonical"),
        (lambda line: line.replace(b'"text":"x"', b'"text":"y"'), "hash"),
        (lambda line: b"not json", "JSON"),
        (lambda line: b"[1,2]", "not an event"),
        (lambda line: line.replace(b'"type":"note"', b'"type":"No te"'), "dotted"),
        (lambda line: b"\xff" + line, "UTF-8"),
    ],
)
def test_bad_lines_are_corrupt_naming_the_line_and_why(mangle, reason):
    _, line = seal(
        seq=0, ts=format_ts(0), type="note", data={"text": "x", "fields": {}}, prev=GENESIS
    )
    with pytest.raises(RecordCorrupted, match=reason) as info:
        parse_line(mangle(line[:-1]), line=9)
    assert info.value.line == 9


@given(json_values)
def test_orjson_writes_exactly_the_canonical_bytes_the_reader_relies_on(value):
    import orjson

    if not plain(value) or not line_is_ascii(value):
        return  # the reader takes the careful path for those lines
    fast = orjson.dumps({"data": value}, option=orjson.OPT_SORT_KEYS)
    assert fast == canonical({"data": value})


@pytest.mark.parametrize("bad_prev", ["", None, "0" * 63, "A" * 64])
def test_a_line_whose_prev_is_not_a_hash_is_refused_whatever_prev_the_caller_expects(bad_prev):
    # The reader passes the previous hash to skip re-checking a prev equal to it: a prev
    # that is no hash at all must still be refused (the hash is made to match, as a forger
    # would).
    import hashlib
    import json

    body = {"v": 1, "seq": 1, "ts": format_ts(0), "type": "note",
            "data": {"text": "x", "fields": {}}, "prev": bad_prev}  # fmt: skip
    dumped = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(dumped).hexdigest()
    cut = dumped.rfind(b',"prev":')
    line = dumped[:cut] + f',"hash":"{digest}"'.encode() + dumped[cut:]
    for expected in (None, GENESIS):
        with pytest.raises(RecordCorrupted, match="'prev' is not 64 lower-case hex digits"):
            parse_line(line, line=2, prev=expected)


@given(user_values, st.sampled_from(["note", "call.started", "call.finished", "x.unknown"]))
def test_a_users_value_in_any_free_field_reads_back_as_passed_and_as_a_view_has_it(value, kind):
    # The line parser tells payloads and views whether a line may hold a typed value (they
    # skip decoding when not): whatever the value, both must give it back as passed.
    given: dict[str, tuple[str, dict[str, object]]] = {
        "note": ("fields", {"text": "t"}),
        "call.started": ("args", {"call": 1, "exp": "e1", "method": "run"}),
        "call.finished": ("result", {"call": 1, "duration_ns": 5}),
        "x.unknown": ("anything", {}),
    }
    field, data = given[kind]
    data[field] = {"x": jsonable(value)}
    event, line = seal(seq=1, ts=format_ts(0), type=kind, data=data, prev="0" * 64)
    back = parse_line(line[:-1], line=2)
    assert back == event
    builder = ViewBuilder(Path("run"))
    builder.calls[1] = CallView(number=1, exp="e1", method="run", args={}, start_ns=0)
    builder.add(back)
    payload = payload_of(back)
    if isinstance(payload, Note):
        assert same(payload.fields["x"], value)
        assert same(builder.notes[0][2]["x"], value)
    elif isinstance(payload, CallStarted):
        assert same(payload.args["x"], value)
        assert same(builder.calls[1].args["x"], value)
    elif isinstance(payload, CallFinished):
        assert same(payload.result["x"], value)
        assert same(builder.calls[1].result["x"], value)
    else:
        assert kind == "x.unknown" and payload is None


def test_a_v1_line_with_a_large_integer_before_a_typed_looking_object_keeps_it_the_users():
    # v1 integers beyond 2^53 are plain there: the free-field walk stops at them, so a v1
    # line may not be judged free of typed-looking objects by it.
    fields = {"big": 2**60, "x": {"$float": "1"}}
    _, line = seal(seq=1, ts=format_ts(0), type="note", data={"text": "t", "fields": fields},
                   prev="0" * 64, v=1)  # fmt: skip
    payload = payload_of(parse_line(line[:-1], line=2))
    assert isinstance(payload, Note) and payload.fields == fields


@pytest.mark.parametrize(("args", "typed"), [({"n": 1}, False), ({"x": math.inf}, True)])
def test_a_parsed_event_holds_every_field_an_event_has(args, typed):
    # The parser makes an event from the parsed line without attrs' __init__: a field added
    # to Event must be added there too.
    data = unstructure(CallStarted(call=1, exp="e1", method="run", args=args))
    event, line = seal(seq=0, ts=format_ts(0), type="call.started", data=data, prev=GENESIS)
    back = parse_line(line[:-1], line=1)
    assert vars(back).keys() == {field.name for field in attrs.fields(Event)}
    assert attrs.asdict(back, recurse=False) == attrs.asdict(event, recurse=False) | {
        "typed": typed
    }
    assert payload_of(back) == CallStarted(call=1, exp="e1", method="run", args=args)
