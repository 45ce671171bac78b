"""What a run was asked to do and what it measured, as the report shows them: its
parameters, its notes as a results table, and — for several runs — one table of all their
notes and each numeric field measured across them (which :mod:`.plot` draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from precip_repro.parameters import ARGV, declared, shown
from precip_repro.presentation.model import Across, Measure, ParameterRow, Series, Table
from precip_repro.results import NOTE, RUN, Results, cell_text, is_number, results_of
from precip_repro.runview import RunView

__all__ = ["MAX_MEASURES", "across", "parameter_rows", "results_table"]

MAX_MEASURES: Final = 12
"""The most numeric fields plotted across runs (the table has them all)."""
_LABEL: Final = 40
"""Characters of a run's label under a plot."""


def parameter_rows(view: RunView) -> list[ParameterRow]:
    """The parameters the script declared, in the order declared."""
    return [
        ParameterRow(name=p.name, value=shown(p.value), source=p.source)
        for p in view.parameters.values()
    ]


def _table(results: Results, columns: Sequence[str]) -> Table:
    return Table(
        columns=list(columns),
        numeric=[
            any(column in row.cells for row in results.rows)
            and all(is_number(row.cells[column]) for row in results.rows if column in row.cells)
            for column in columns
        ],
        rows=[[cell_text(row.cells.get(column)) for column in columns] for row in results.rows],
    )


def results_table(view: RunView) -> Table | None:
    """The run's notes that have fields, a row each: its text, then its fields as columns
    (a note's ``slot`` or ``instance_type`` field says which instance it measured). None
    when no note has a field."""
    results = results_of([view])
    with_fields = [row for row in results.rows if set(row.cells) - {RUN, NOTE, *results.parameters}]
    if not with_fields:
        return None
    results = Results(
        columns=results.columns,
        parameters=results.parameters,
        fields=results.fields,
        rows=with_fields,
        runs=results.runs,
    )
    return _table(results, [NOTE, *results.fields])


def _labels(views: Sequence[RunView]) -> list[str]:
    """Each run by what differs in what the runs were asked to do (``SORT_N=400000``), else
    by its id."""
    asked = [declared(view) for view in views]
    names = list(dict.fromkeys(name for values in asked for name in values))
    varying = [name for name in names if len({cell_text(v.get(name)) for v in asked}) > 1]
    labels = []
    for view, values in zip(views, asked, strict=True):
        parts = [
            f"{name}{' ' if name == ARGV else '='}{cell_text(values.get(name))}" for name in varying
        ]
        label = ", ".join(parts) if parts else view.run
        labels.append(label if len(label) <= _LABEL else label[: _LABEL - 1] + "…")
    return labels


def across(views: Sequence[RunView], *, fields: Sequence[str] = ()) -> Across:
    """The notes of ``views`` in one table, and each numeric field (or those of ``fields``)
    measured across the runs: a series per note text, a point per run that noted it."""
    results = results_of(views)
    index = {view.run: number for number, view in enumerate(views)}
    numeric = results.numeric_fields()
    chosen = [field for field in fields if field in results.fields] if fields else numeric
    measures = []
    for field in chosen[:MAX_MEASURES]:
        series: dict[str, Series] = {}
        for row in results.rows:
            value = row.cells.get(field)
            if not is_number(value):
                continue
            label = str(row.cells.get(NOTE))
            found = series.setdefault(label, Series(label=label, points=[]))
            found.points.append((index[row.run], float(value)))  # type: ignore[arg-type]
        if series:
            measures.append(Measure(field=field, series=list(series.values())))
    return Across(
        runs=[view.run for view in views],
        labels=_labels(views),
        table=_table(results, results.columns),
        measures=measures,
    )
