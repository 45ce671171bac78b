"""The event envelope's timestamps and payload conversion (precip_repro.record.events)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.exceptions import RecordCorrupted
from precip_repro.record.events import GENESIS, format_ts, parse_ts, payload_of, unstructure
from precip_repro.record.lines import parse_line, seal
from precip_repro.record.payloads import Note


def test_format_ts_is_rfc3339_utc_with_microseconds():
    assert format_ts(1_764_040_000_123_456_789) == "2025-11-25T03:06:40.123456Z"


@given(st.lists(st.integers(min_value=0, max_value=4_000_000_000_000_000_000), max_size=20))
def test_parse_ts_inverts_format_ts_to_the_microsecond_in_any_order(stamps):
    # parse_ts caches the last second it parsed: interleaved seconds must not leak into
    # each other.
    for ns in stamps + stamps[::-1]:
        assert parse_ts(format_ts(ns)) == ns // 1000 * 1000


@pytest.mark.parametrize("text", ["2026-11-25T05:57:22.0382x4Z", "2026-11-25T05:57:22.038214",
                                  "yesterday"])  # fmt: skip
def test_parse_ts_refuses_what_is_not_a_timestamp(text):
    with pytest.raises(ValueError):
        parse_ts(text)


def test_unknown_event_types_are_read_but_have_no_payload():
    _, line = seal(seq=0, ts=format_ts(0), type="future.thing", data={"x": 1}, prev=GENESIS)
    assert payload_of(parse_line(line[:-1], line=1)) is None


def test_a_known_type_with_a_missing_or_mistyped_field_is_corrupt():
    data = unstructure(Note(text="x"))
    data["text"] = 5
    event, _ = seal(seq=3, ts=format_ts(0), type="note", data=data, prev=GENESIS)
    with pytest.raises(RecordCorrupted, match=r"seq 3.*expected str, got int @ data.text"):
        payload_of(event)
