"""The ``--json`` documents' schemas (docs/json/), and validating a command's output
against them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).parent.parent / "docs" / "json"


@cache
def schema(command: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{command}.v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def valid(command: str, text: str) -> dict[str, Any]:
    """``text``, one JSON document, checked against ``command``'s schema (formats too)."""
    document: dict[str, Any] = json.loads(text)
    jsonschema.validate(
        document,
        schema(command),
        cls=jsonschema.Draft202012Validator,
        format_checker=jsonschema.FormatChecker(),
    )
    return document


def objects_in(node: Any) -> list[dict[str, Any]]:
    """Every subschema of ``node`` that describes an object with named properties."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(objects_in(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(objects_in(value))
    return found
