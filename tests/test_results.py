"""The notes of runs as one table: ``precip-repro results RUN…`` (text, ``--csv``,
``--json``) over a sweep recorded on the local cloud, and the table's rules."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest

from precip_repro.cli import main
from precip_repro.loading import ViewBuilder, load_run
from precip_repro.record import RunStore
from precip_repro.results import cell_text, results_of
from precip_repro.runview import RunView
from tests.documents import valid
from tests.helpers import record_sweep

TS = "2026-12-04T10:00:00.000000Z"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, list[Path]]:
    """A sweep of three runs: the input's size at its default and two others."""
    store = RunStore(tmp_path_factory.mktemp("sweep") / "records")
    runs = [
        record_sweep(store, 1, 9),
        record_sweep(store, 1, 9, sweep_bytes=100_000),
        record_sweep(store, 1, 9, sweep_bytes=400_000),
    ]
    return store, runs


def noted(*notes: tuple[str, dict[str, Any]], ended: bool = False) -> RunView:
    builder = ViewBuilder(Path("run"))
    builder.add_parts("run.started", TS, {"run": "r1", "argv": ["x.py"], "script_path": "x.py"})
    for text, fields in notes:
        builder.add_parts("note", TS, {"text": text, "fields": fields})
    if ended:
        builder.add_parts("note", TS, {"text": "failed", "fields": {"ended": "failed"}})
    return builder.build()


def test_note_fields_come_back_from_the_record_with_their_types(sweep):
    _, runs = sweep
    fields = [fields for _, _, fields in load_run(runs[0]).notes]
    assert len(fields) == 6  # two levels on three instance types
    for one in fields:
        assert type(one["bytes"]) is int and type(one["level"]) is int
        assert type(one["seconds"]) is float and type(one["instance_type"]) is str


def test_a_sweep_is_one_csv_a_row_per_note_with_the_runs_parameters(sweep, capsys):
    store, runs = sweep
    code = main(["--records", str(store.root), "results", *(r.name for r in runs), "--csv"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 18
    header = list(rows[0])
    assert header[:4] == ["run", "argv", "SWEEP_BYTES", "note"]
    assert {"level", "instance_type", "slot", "bytes", "seconds"} <= set(header[4:])
    assert [row["run"] for row in rows] == [run.name for run in runs for _ in range(6)]
    assert {row["SWEEP_BYTES"] for row in rows[6:12]} == {"100000"}
    for row in rows:
        assert row["argv"] == "1 9"
        assert row["input_bytes"] == row["SWEEP_BYTES"]  # the note agrees with the parameter
        assert int(row["bytes"]) > 0 and float(row["seconds"]) >= 0
    # Per instance: each instance type's notes name the slot it ran on.
    assert {(row["instance_type"], row["slot"]) for row in rows} == {
        ("m1.small", "e1.p1.0"), ("m1.medium", "e1.p2.0"), ("m1.large", "e1.p3.0")
    }  # fmt: skip


def test_results_json_fits_its_schema_and_keeps_the_types(sweep, capsys):
    store, runs = sweep
    main(["--records", str(store.root), "results", runs[0].name, runs[2].name, "--json"])
    document = valid("results", capsys.readouterr().out)
    assert [run["run"] for run in document["runs"]] == [runs[0].name, runs[2].name]
    assert document["runs"][1]["parameters"] == [
        {"name": "argv", "value": "1 9"}, {"name": "SWEEP_BYTES", "value": 400000}
    ]  # fmt: skip
    assert all(run["digest"] and len(run["digest"]) == 64 for run in document["runs"])
    assert len(document["rows"]) == 12
    first = dict(zip(document["columns"], document["rows"][0], strict=True))
    assert first["run"] == runs[0].name and first["SWEEP_BYTES"] == 200000
    assert type(first["bytes"]) is int and type(first["seconds"]) is float
    assert document["parameters"] == ["argv", "SWEEP_BYTES"]


def test_the_text_table_lines_up_its_columns(sweep, capsys):
    store, runs = sweep
    main(["--records", str(store.root), "results", runs[1].name])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 6
    assert lines[0].split()[:4] == ["run", "argv", "SWEEP_BYTES", "note"]
    ends = {line.index("0.") + len(line[line.index("0.") :].split()[0]) for line in lines[1:]}
    assert len(ends) == 1  # the seconds are right-aligned, as numbers are


def test_a_run_given_twice_is_a_usage_error(sweep, capsys):
    store, runs = sweep
    code = main(["--records", str(store.root), "results", runs[0].name, runs[0].name])
    assert code == 2
    assert "given more than once" in capsys.readouterr().err


def test_a_damaged_run_is_named_and_gives_no_table(sweep, tmp_path, capsys):
    store, runs = sweep
    import shutil

    copy = tmp_path / runs[0].name
    shutil.copytree(runs[0], copy)
    log = copy / "events.jsonl"
    log.chmod(0o644)
    log.write_bytes(log.read_bytes().replace(b'"level":1', b'"level":2', 1))
    code = main(["--records", str(store.root), "results", str(copy), runs[1].name, "--csv"])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.out == ""
    assert "corrupt, not intact" in captured.err


def test_the_tools_notes_are_not_results_and_a_field_named_as_a_column_is_kept_apart():
    view = noted(("one", {"note": "mine", "run": 7, "x": 1}), ended=True)
    table = results_of([view])
    assert table.columns == ["run", "argv", "note", "note.note", "note.run", "x"]
    (row,) = table.rows
    assert row.cells == {"run": "r1", "argv": "", "note": "one", "note.note": "mine",
                         "note.run": 7, "x": 1}  # fmt: skip


def test_cells_read_back_as_the_values_they_show():
    assert [cell_text(v) for v in (None, "a b", True, 3, 0.1, 1e-07, [1, "x"], {"k": 2})] == [
        "", "a b", "true", "3", "0.1", "1e-07", '[1,"x"]', '{"k":2}'
    ]  # fmt: skip
    assert float(cell_text(0.1 + 0.2)) == 0.1 + 0.2


def test_only_fields_that_are_numbers_in_every_note_are_numeric():
    view = noted(("a", {"n": 1, "f": 0.5, "s": "x", "b": True, "mixed": 1}),
                 ("b", {"n": 2, "f": math.nan, "mixed": "two"}))  # fmt: skip
    assert results_of([view]).numeric_fields() == ["n"]  # NaN and bools place nowhere
