"""What a run was asked to do — its script's arguments and the parameters it declared with
``exp.param`` — is recorded, and ``diff`` says first what changed in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from precip_repro.cli import main
from precip_repro.diff import diff_runs
from precip_repro.loading import ViewBuilder, load_run
from precip_repro.parameters import ParameterChange, declared, parameter_changes
from precip_repro.runview import RunView
from tests.documents import valid
from tests.helpers import record_sweep

TS = "2026-12-04T10:00:00.000000Z"


def view_of(*events: tuple[str, dict[str, Any]], script: bool = True) -> RunView:
    """A run view made of these events after a ``run.started`` (of a script, or not)."""
    builder = ViewBuilder(Path("run"))
    started: dict[str, Any] = {"run": "r", "argv": ["sweep.py", "1", "9"]}
    if script:
        started["script_path"] = "/home/alice/sweep.py"
    builder.add_parts("run.started", TS, started)
    for kind, data in events:
        builder.add_parts(kind, TS, data)
    return builder.build()


def parameter(name: str, value: Any, source: str = "default") -> tuple[str, dict[str, Any]]:
    return "parameter", {"name": name, "value": value, "source": source}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """Two sweeps on the local cloud: levels 1 9 at the default size, levels 1 6 at a size
    the environment gave."""
    from precip_repro.record import RunStore

    store = RunStore(tmp_path_factory.mktemp("sweeps") / "records")
    return store, record_sweep(store, 1, 9), record_sweep(store, 1, 6, sweep_bytes=100_000)


def test_a_declared_parameter_is_recorded_with_its_type_and_where_it_came_from(sweeps):
    _, default_run, environment_run = sweeps
    (one,) = load_run(default_run).parameters.values()
    assert (one.name, one.value, one.source) == ("SWEEP_BYTES", 200_000, "default")
    (other,) = load_run(environment_run).parameters.values()
    assert (other.value, other.source) == (100_000, "environment")
    assert type(other.value) is int  # read from the environment's text as the default's type


def test_diff_says_first_that_the_arguments_and_a_parameter_changed(sweeps, capsys):
    store, a, b = sweeps
    code = main(["--records", str(store.root), "diff", a.name, b.name])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[:4] == [
        f"a: {a.name}",
        f"b: {b.name}",
        "argv 1 9 → 1 6",
        "parameter SWEEP_BYTES 200000 → 100000 (default → environment)",
    ]
    assert lines[4].startswith("step ")  # then what the change explains


def test_diff_json_carries_the_changes_and_fits_its_schema(sweeps, capsys):
    store, a, b = sweeps
    main(["--records", str(store.root), "diff", a.name, b.name, "--json"])
    document = valid("diff", capsys.readouterr().out)
    assert document["parameters"] == [
        {"kind": "argv", "a": ["1", "9"], "b": ["1", "6"]},
        {"kind": "parameter", "name": "SWEEP_BYTES", "a": 200000, "b": 100000,
         "a_source": "default", "b_source": "environment"},
    ]  # fmt: skip
    assert document["same"] is False


def test_a_run_diffed_with_itself_has_no_parameter_change(sweeps):
    _, a, _ = sweeps
    view = load_run(a)
    result = diff_runs(view, load_run(a))
    assert result.parameters == [] and result.same


def test_a_parameter_that_changed_type_changed_and_one_from_elsewhere_did_not():
    a = view_of(parameter("N", 1), parameter("RATE", 0.5), parameter("LABEL", "x"))
    b = view_of(parameter("N", 1.0), parameter("RATE", 0.5, "environment"),
                parameter("LABEL", "x"))  # fmt: skip
    assert parameter_changes(a, b) == [
        ParameterChange(kind="parameter", name="N", a=1, b=1.0, a_source="default",
                        b_source="default"),
    ]  # fmt: skip
    assert parameter_changes(a, b)[0].line() == "N 1 → 1.0"


def test_a_parameter_one_run_did_not_declare_is_null_on_that_side_in_declaration_order():
    a = view_of(parameter("A", 1), parameter("B", 2))
    b = view_of(parameter("C", 3), parameter("B", 2))
    changes = parameter_changes(a, b)
    assert [(c.name, c.a, c.b) for c in changes] == [("A", 1, None), ("C", None, 3)]
    assert changes[0].line() == "A 1 → (not declared)"
    assert changes[0].to_json() == {"kind": "parameter", "name": "A", "a": 1, "b": None,
                                    "a_source": "default"}  # fmt: skip


def test_arguments_are_compared_only_when_both_runs_ran_a_script():
    # A notebook's or a replay's argv is its host process's: it says nothing of the
    # experiment, and differs from kernel to kernel.
    scripted = view_of()
    other = view_of(script=False)
    other.started["argv"] = ["ipykernel_launcher.py", "-f", "/tmp/kernel-1.json"]
    assert parameter_changes(scripted, other) == []
    assert declared(other) == {}
    assert declared(scripted) == {"argv": "1 9"}


def test_a_parameter_declared_again_with_another_value_counts_with_its_last():
    view = view_of(parameter("N", 1), parameter("M", 2), parameter("N", 3, "environment"))
    assert [(p.name, p.value) for p in view.parameters.values()] == [("M", 2), ("N", 3)]


def test_a_replay_records_the_parameters_its_source_ran_with(tmp_path, capsys):
    from precip_repro.record import RunStore
    from replay.cli import main as replay

    store = RunStore(tmp_path / "records")
    source = record_sweep(store, 1, sweep_bytes=100_000)
    replay([source.name, "--records", str(store.root), "--to", "local", "--max-gap", "1"])
    capsys.readouterr()
    (new,) = [p for p in store.run_dirs() if p != source]
    found = {p.name: (p.value, p.source) for p in load_run(new).parameters.values()}
    assert found == {"SWEEP_BYTES": (100_000, "recording")}  # the values its calls carry
    assert parameter_changes(load_run(source), load_run(new)) == []
