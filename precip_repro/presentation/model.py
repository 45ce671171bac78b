"""What a report says, once: the facts of a run as plain text and numbers, in the order a
reader meets them. The HTML and the Markdown templates both draw this one model — each
escaping the text its own way — so neither can show a fact the other lacks.

Nothing here knows how a run is stored (:mod:`precip_repro.presentation.adapter` fills the
model in) nor how it is drawn (:mod:`precip_repro.presentation.templating`).
"""

from __future__ import annotations

import attrs

__all__ = [
    "Across",
    "CallRow",
    "CommandRow",
    "Comparison",
    "Content",
    "Fact",
    "FileRow",
    "InstanceRow",
    "Integrity",
    "Measure",
    "NoteRow",
    "ParameterRow",
    "ReportModel",
    "Script",
    "Series",
    "StepRow",
    "Table",
]


@attrs.define(kw_only=True)
class Fact:
    """One labelled value: a header line, or one of an instance's facts."""

    label: str
    value: str


@attrs.define(kw_only=True)
class Integrity:
    """The run's integrity as ``verify`` sees it: ``intact``, ``corrupt``, ``open`` or
    ``abandoned``, and that said in words."""

    state: str
    text: str


@attrs.define(kw_only=True)
class Content:
    """Bytes the run recorded (an output, a file), as shown: an excerpt of its text or
    what stands for it, and its hash — ``sha256`` is None for empty content, whose hash
    says nothing a reader needs."""

    size: int | None
    shown: str
    """The text (up to an excerpt's length), ``(empty)``, or where the bytes are."""
    sha256: str | None
    withheld: str | None = None
    """Why the record keeps these bytes by hash only, when it does."""


@attrs.define(kw_only=True)
class InstanceRow:
    slot: str
    instance_ids: str
    """Its cloud ids, replacements after the first."""
    image: str
    instance_type: str
    boot: str
    """How long it took to be ready, or ``not ready``."""
    addresses: str
    host_key: str
    facts: list[Fact]
    launched_ns: int
    ready_ns: int | None
    terminated_ns: int | None


@attrs.define(kw_only=True)
class CallRow:
    number: int
    name: str
    """``e1.run``: the experiment and the method."""
    args: str
    """Its arguments as JSON, a long command by its head and tail."""
    outcome: str
    failed: bool
    duration: str
    per_instance: str


@attrs.define(kw_only=True)
class CommandRow:
    call: int
    slot: str
    cmd: str
    summary: str | None
    """What a long or multi-line command is labelled by (None: shown whole as its label)."""
    exit_code: int | None
    failed: bool
    duration: str
    duration_ns: int
    end_ns: int
    stdout: Content
    stderr: Content


@attrs.define(kw_only=True)
class FileRow:
    call: int
    slot: str
    kind: str
    """``put`` or ``got``."""
    local_path: str
    remote_path: str
    mode: str
    """Octal, as ``ls -l`` users read it: ``0644``."""
    content: Content
    at_ns: int


@attrs.define(kw_only=True)
class StepRow:
    """One step of a replay: the recorded call it re-executed and how it went."""

    source_call: str
    name: str
    verdict: str
    reproduced: bool
    differences: list[str]


@attrs.define(kw_only=True)
class NoteRow:
    text: str
    fields: str | None
    """Its fields as JSON, None when it has none."""


@attrs.define(kw_only=True)
class ParameterRow:
    """A parameter the script declared: its value as text and where it came from."""

    name: str
    value: str
    source: str


@attrs.define(kw_only=True)
class Table:
    """Results as a table: a row per note, its fields as columns (cells as text; the
    columns that hold only numbers are ``numeric``, drawn right-aligned)."""

    columns: list[str]
    numeric: list[bool]
    rows: list[list[str]]


@attrs.define(kw_only=True)
class Series:
    """One note's values of a field across the runs: ``points`` are (run index, value)."""

    label: str
    points: list[tuple[int, float]]


@attrs.define(kw_only=True)
class Measure:
    """A numeric field of the notes, across the runs: one series per note text."""

    field: str
    series: list[Series]


@attrs.define(kw_only=True)
class Across:
    """The results of several runs side by side (``report RUN --vs B``, ``report RUN
    RUN…``): the runs, each labelled by what differs in what it was asked to do, one table
    of all their notes, and each numeric field measured across them."""

    runs: list[str]
    labels: list[str]
    table: Table
    measures: list[Measure]


@attrs.define(kw_only=True)
class Script:
    """The experiment script the run recorded: where it was, its hash, and its text — or,
    when the text cannot be shown, why not (``unshown``)."""

    path: str
    sha256: str
    size: int
    text: str | None
    unshown: str | None = None


@attrs.define(kw_only=True)
class Comparison:
    """The diff against another run (``report --vs``)."""

    other_run: str
    same: bool
    text: str
    """The diff as ``precip-repro diff`` words it."""


@attrs.define(kw_only=True)
class ReportModel:
    run: str
    integrity: Integrity
    header: list[Fact]
    instances: list[InstanceRow]
    script: Script | None
    """None when the run recorded no script (a run opened from Python, not a script)."""
    calls: list[CallRow]
    commands: list[CommandRow]
    files: list[FileRow]
    steps: list[StepRow]
    """A replay's verdicts (empty for a run that is not a replay)."""
    notes: list[NoteRow]
    arguments: str | None = None
    """The script's arguments, shell-quoted (None: the run ran no script)."""
    parameters: list[ParameterRow] = attrs.Factory(list)
    parameter_changes: list[str] = attrs.Factory(list)
    """What changed in the arguments and parameters against the ``vs`` run: said first."""
    results: Table | None = None
    """The run's notes that have fields, as a table (None: it has none)."""
    across: Across | None = None
    comparison: Comparison | None = None
    not_compared: str = ""
    """Why the ``vs`` run was not compared (a damaged run), when it was asked for."""
    start_ns: int = 0
    end_ns: int = 0
    duration: str = ""
