"""Every ``--json`` schema is strict, versioned and listed in docs/json.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents import SCHEMAS, objects_in, schema

COMMANDS = sorted(p.name.split(".")[0] for p in SCHEMAS.glob("*.v1.schema.json"))


def test_every_command_that_reports_has_a_schema():
    assert COMMANDS == [
        "diff", "gc", "ls", "recover", "replay", "results", "run", "show", "verify"
    ]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_each_schema_refuses_keys_it_does_not_list_and_names_its_version(command):
    loaded = schema(command)
    assert loaded["properties"]["version"] == {"const": 1}
    assert "version" in loaded["required"]
    for described in objects_in(loaded):
        # A document's key a consumer does not know of would pass unseen otherwise.
        assert described.get("additionalProperties") is False, described
        if command not in ("replay", "diff") or "kind" not in described["properties"]:
            assert set(described["required"]) == set(described["properties"]), described


@pytest.mark.parametrize("command", COMMANDS)
def test_docs_json_lists_each_schema(command):
    page = (Path(__file__).parent.parent / "docs" / "json.md").read_text()
    assert f"(json/{command}.v1.schema.json)" in page
