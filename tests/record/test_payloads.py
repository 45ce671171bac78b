"""The payload classes of the record format (precip_repro.record.payloads)."""

from __future__ import annotations

import re
from pathlib import Path

from precip_repro.record.payloads import PAYLOADS, BlobRef


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
