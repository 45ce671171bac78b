"""The payload classes of the record format (precip_repro.record.payloads)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.record.payloads import FREE_FORM, PAYLOADS, BlobRef, is_hex64


def test_every_type_in_the_table_has_a_payload_class():
    assert set(PAYLOADS) == {
        "run.started", "experiment.created", "call.started", "instance.launched",
        "instance.ready", "command.finished", "file.put", "file.got",
        "instance.terminating", "instance.terminated", "call.finished", "call.failed",
        "note", "run.finished", "replay.step", "blob.withheld", "module.loaded", "blob.added",
            "parameter",
    }  # fmt: skip


def test_every_payload_type_is_documented_in_the_records_readme():
    readme = (Path(__file__).parents[2] / "records" / "README.md").read_text()
    rows = re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \|", readme, flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z_.]+)`", row)}
    assert set(PAYLOADS) <= documented, set(PAYLOADS) - documented


def test_short_utf8_output_is_inline_and_binary_or_long_output_is_not():
    assert BlobRef.of(b"hi\n").text == "hi\n"
    assert BlobRef.of(b"\xff\xfe").text is None
    assert BlobRef.of(b"a" * 4097).text is None
    assert BlobRef.of(b"a" * 4096).text == "a" * 4096


def _read_back(payload: Any) -> Any:
    """``payload`` written as an event's canonical data, parsed and read again."""
    import json

    from precip_repro.record.canonical import canonical
    from precip_repro.record.events import GENESIS, Event, payload_of, unstructure

    data = json.loads(canonical(unstructure(payload), v=2))
    event = Event(v=2, seq=1, ts="2026-12-04T10:00:00.000000Z", type=payload.TYPE, data=data,
                  prev=GENESIS, hash=GENESIS)  # fmt: skip
    return payload_of(event)


@given(
    name=st.text(min_size=1),
    value=st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans()),
    source=st.sampled_from(["environment", "default", "recording"]),
)
def test_a_parameter_reads_back_with_its_value_and_type(name, value, source):
    from precip_repro.record.payloads import Parameter

    read = _read_back(Parameter(name=name, value=value, source=source))
    assert read == Parameter(name=name, value=value, source=source)
    assert type(read.value) is type(value)  # 2.0 stays a float, True a bool, 2**60 an int


def test_every_field_with_a_converter_is_free_form():
    # payload_of sets the reading version only for FREE_FORM classes: a converter elsewhere
    # would read the record as a user's new values (and re-encode them).
    converted = {
        (cls, field.name)
        for cls in PAYLOADS.values()
        for field in attrs.fields(cls)
        if field.converter is not None
    }
    assert converted == {(cls, name) for cls, names in FREE_FORM.items() for name in names}


@given(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
    | st.text(alphabet="0123456789abcdefABCDEFgxyz é\u0660", min_size=62, max_size=66)
)
def test_a_sha256_is_exactly_64_lower_case_hex_digits(text):
    assert is_hex64(text) == bool(re.fullmatch(r"[0-9a-f]{64}", text))
