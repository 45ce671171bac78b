"""The results runs recorded, as one table: a row per note the script wrote (``exp.note``),
its fields as columns beside the run's id and what the run was asked to do (its arguments
and parameters). A sweep of many runs is one table — one CSV — that a spreadsheet or pandas
reads as it is; the report draws the same rows, and plots a numeric column across runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from precip_repro.parameters import declared
from precip_repro.record.canonical import JSON
from precip_repro.runview import RunView

__all__ = [
    "NOTE",
    "RESULTS_FORMAT",
    "RUN",
    "ResultRow",
    "Results",
    "cell_text",
    "is_number",
    "results_of",
    "script_notes",
]

RESULTS_FORMAT: Final = 1
"""The version of ``results --json`` (docs/json/results.v1.schema.json)."""
RUN: Final = "run"
NOTE: Final = "note"


def is_number(value: object) -> bool:
    """A value a plot can place: an int or a finite float (a bool is not a number here)."""
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)


def cell_text(value: object) -> str:
    """A cell as text (CSV, the Markdown report): strings as they are, numbers as Python
    writes them (the shortest form that reads back), booleans ``true``/``false`` as JSON
    does, nothing as the empty string, lists and objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def script_notes(view: RunView) -> list[tuple[str, dict[str, JSON]]]:
    """The notes the script wrote, in order: not those the tool writes (why a run did not
    end ``ok``, a replay's verdict)."""
    replay = view.started.get("replay_of") is not None
    return [
        (text, fields)
        for _, text, fields in view.notes
        if "ended" not in fields and not (replay and "replay_verdict" in fields)
    ]


@attrs.frozen(kw_only=True)
class ResultRow:
    """One note of one run: its cells by column (a column the note lacks is absent)."""

    run: str
    cells: dict[str, JSON]


@attrs.frozen(kw_only=True)
class Results:
    """The notes of runs as one table: ``columns`` in order — ``run``, the runs' arguments
    (``argv``) and parameters, ``note`` (its text), then the notes' fields in the order
    first met — and a row per note."""

    columns: list[str]
    parameters: list[str]
    """The columns that hold what a run was asked to do (its arguments and parameters)."""
    fields: list[str]
    """The columns that hold notes' fields (a field named as a parameter is ``note.NAME``)."""
    rows: list[ResultRow]
    runs: list[dict[str, Any]]
    """Each run's id, digest and parameters, in the order given."""

    def numeric_fields(self) -> list[str]:
        """The field columns every note that has them holds a number in (what a plot can
        place), in column order."""
        found = []
        for column in self.fields:
            values = [row.cells[column] for row in self.rows if column in row.cells]
            if values and all(is_number(value) for value in values):
                found.append(column)
        return found

    def to_csv(self) -> str:
        """The table as CSV (RFC 4180, a header row, ``\\r\\n`` line ends, as the csv module
        and spreadsheets write it)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([cell_text(row.cells.get(column)) for column in self.columns])
        return out.getvalue()

    def to_json(self) -> dict[str, Any]:
        """``results --json`` (docs/json.md): each row a list of its cells in the order of
        ``columns`` (as the CSV), ``null`` where its note has no such field; each run's
        parameters as ``{"name", "value"}`` pairs."""
        return {
            "version": RESULTS_FORMAT,
            "runs": [
                {
                    "run": run["run"],
                    "digest": run["digest"],
                    "parameters": [
                        {"name": name, "value": value} for name, value in run["parameters"].items()
                    ],
                }
                for run in self.runs
            ],
            "columns": self.columns,
            "parameters": self.parameters,
            "fields": self.fields,
            "rows": [[row.cells.get(column) for column in self.columns] for row in self.rows],
        }


def _ordered(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def results_of(views: Sequence[RunView], *, digests: Sequence[str | None] = ()) -> Results:
    """The notes of ``views`` as one table, the runs in the order given."""
    asked = [declared(view) for view in views]
    parameters = _ordered(name for values in asked for name in values)
    reserved = {RUN, NOTE, *parameters}
    fields: list[str] = []
    rows: list[ResultRow] = []
    for view, values in zip(views, asked, strict=True):
        for text, note_fields in script_notes(view):
            cells: dict[str, JSON] = {RUN: view.run, **values, NOTE: text}
            for name, value in note_fields.items():
                column = f"note.{name}" if name in reserved else name
                cells[column] = value
                if column not in fields:
                    fields.append(column)
            rows.append(ResultRow(run=view.run, cells=cells))
    digests = list(digests) + [None] * (len(views) - len(digests))
    return Results(
        columns=[RUN, *parameters, NOTE, *fields],
        parameters=parameters,
        fields=fields,
        rows=rows,
        runs=[
            {"run": view.run, "digest": digest, "parameters": values}
            for view, values, digest in zip(views, asked, digests, strict=True)
        ],
    )
