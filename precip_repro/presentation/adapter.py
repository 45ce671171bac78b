"""A run view, its verdict and a diff, turned into the :class:`ReportModel` both reports
draw. The one part of the presentation that reads a :class:`~precip_repro.runview.RunView`:
when the views change shape, this is what follows them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any, Final

from precip_repro.comparison import Difference
from precip_repro.content import ContentReader, ContentRef
from precip_repro.diff import DiffResult, render_difference, render_text
from precip_repro.exceptions import RecordError
from precip_repro.expectations import StepVerdict
from precip_repro.messages import SHOWN_COMMAND
from precip_repro.presentation.model import (
    Across,
    CallRow,
    CommandRow,
    Comparison,
    Content,
    Fact,
    FileRow,
    InstanceRow,
    Integrity,
    NoteRow,
    ReportModel,
    Script,
    StepRow,
)
from precip_repro.presentation.tables import across, parameter_rows, results_table
from precip_repro.record.verify import Verdict
from precip_repro.runview import CallView, InstanceView, RunView
from precip_repro.timeline import format_duration

__all__ = ["EXCERPT", "SCRIPT_LIMIT", "report_model"]

EXCERPT: Final = 2000
"""An output's text past this many characters is cut (the blob keeps it whole)."""
SCRIPT_LIMIT: Final = 1 << 20
"""A script larger than this is named by its hash, not shown."""


def report_model(
    view: RunView,
    verdict: Verdict,
    diff: DiffResult | None = None,
    *,
    not_compared: str = "",
    others: Sequence[RunView] = (),
    plotted: Sequence[str] = (),
) -> ReportModel:
    """What the report of ``view`` says: ``verdict`` is its integrity, ``diff`` the
    comparison with another run (``report --vs``), ``not_compared`` why there is none;
    ``others`` the runs whose results are set beside this one's (with ``vs``, that run),
    ``plotted`` the numeric fields plotted across them (all, when not given)."""
    outputs, files = _Contents(excerpt=True), _Contents(excerpt=False)
    return ReportModel(
        run=view.run,
        integrity=Integrity(state=verdict.state, text=_integrity(verdict)),
        header=_header(view, verdict),
        instances=[_instance(inst) for inst in view.instances.values()],  # in slot order
        script=_script(view),
        calls=[_call(call) for call in view.calls],
        commands=[
            CommandRow(
                call=call.number,
                slot=command.slot,
                cmd=command.cmd,
                summary=_first_line(command.cmd),
                exit_code=command.exit_code,
                failed=command.exit_code != 0,
                duration=format_duration(command.duration_ns),
                duration_ns=command.duration_ns,
                end_ns=command.end_ns,
                stdout=outputs.of(command.stdout),
                stderr=outputs.of(command.stderr),
            )
            for call in view.calls
            for command in call.commands
        ],
        files=[
            FileRow(
                call=call.number,
                slot=moved.slot,
                kind=moved.kind,
                local_path=moved.local_path,
                remote_path=moved.remote_path,
                mode=f"{moved.mode:04o}",
                content=files.of(moved.content),
                at_ns=moved.at_ns,
            )
            for call in view.calls
            for moved in call.files
        ],
        steps=[_step(step) for step in view.replay_steps],
        notes=[
            NoteRow(text=text, fields=_json(fields) if fields else None)
            for _, text, fields in view.notes
        ],
        comparison=None
        if diff is None
        else Comparison(
            other_run=str(diff.b["run"]), same=diff.same, text="\n".join(render_text(diff))
        ),
        not_compared=not_compared,
        arguments=None if view.arguments is None else shlex.join(view.arguments),
        parameters=parameter_rows(view),
        parameter_changes=[] if diff is None else [change.line() for change in diff.parameters],
        results=results_table(view),
        across=_across([view, *others], plotted) if others else None,
        start_ns=view.first_ns,
        end_ns=view.last_ns,
        duration=format_duration(view.last_ns - view.first_ns),
    )


def _across(views: Sequence[RunView], plotted: Sequence[str]) -> Across | None:
    """The runs' results side by side, when any of them noted some."""
    together = across(views, fields=plotted)
    return together if together.table.rows else None


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


class _Contents:
    """The :class:`Content` of each blob reference, made once per reference: the view
    shares one reference among the commands that printed the same (ten thousand printing
    nothing on stderr share one), and so do their rows."""

    def __init__(self, *, excerpt: bool) -> None:
        self._excerpt = excerpt
        self._made: dict[int, Content] = {}

    def of(self, ref: ContentRef | None) -> Content:
        # By identity: the view keeps every reference alive while the model is made.
        found = self._made.get(id(ref))
        if found is None:
            found = self._made[id(ref)] = _content(ref, excerpt=self._excerpt)
        return found


def _content(ref: ContentRef | None, *, excerpt: bool) -> Content:
    if ref is None:
        return Content(size=None, shown="(none recorded)", sha256=None, withheld=None)
    size, sha, withheld = ref.size, ref.sha256, ref.withheld
    empty = ref.empty
    if empty:
        shown = "(empty)"
    elif not excerpt:
        shown = f"{size} bytes"
    elif ref.text is not None:
        text = ref.text
        shown = text if len(text) <= EXCERPT else text[:EXCERPT] + f"… ({len(text)} characters)"
    elif withheld:
        shown = f"(withheld: {withheld})"
    else:
        shown = f"({size} bytes in blob {sha}: precip-repro cat)"
    return Content(size=size, shown=shown, sha256=None if empty else sha, withheld=withheld)


def _integrity(verdict: Verdict) -> str:
    if verdict.state == "intact":
        return f"INTACT — {verdict.reason}"
    if verdict.state == "corrupt":
        return f"CORRUPT — this record was altered or damaged: {verdict.reason}"
    return f"{verdict.state.upper()} — {verdict.reason}"


def _header(view: RunView, verdict: Verdict) -> list[Fact]:
    started = view.started
    rows = [
        ("run", view.run),
        ("digest", verdict.digest or "-"),
        ("signed by", verdict.signer or "unsigned"),
        ("status", view.ended),
        ("events", str(view.events)),
        ("duration", format_duration(view.last_ns - view.first_ns)),
        ("tool", f"precip-repro {started.get('tool_version')}"),
        ("python", f"{started.get('python')} on {started.get('platform')}"),
        ("recorded by", f"{started.get('user')}@{started.get('host')} in {started.get('cwd')}"),
        ("script", _script_line(started, view.script)),
        *([("modules", _modules(view))] if view.modules else []),
        ("git commit", str(started.get("git_commit") or "-")),
        ("clouds", "; ".join(_clouds(view)) or "-"),
        *_replay_header(view),
    ]
    return [Fact(label=label, value=value) for label, value in rows]


def _script_line(started: dict[str, Any], ref: ContentRef | None) -> str:
    path = str(started.get("script_path") or "-")
    if ref is not None and ref.withheld:
        return f"{path} (kept by hash only: {ref.withheld})"
    return path


def _modules(view: RunView) -> str:
    """The script's own modules, each with its source's hash (the source is in the store:
    ``precip-repro cat RUN SHA256``)."""
    return "; ".join(
        f"{name} ({module.path}, {_hash(module.content)}{_withheld(module.content)})"
        for name, module in sorted(view.modules.items())
    )


def _hash(ref: ContentRef | None) -> str:
    if ref is None:
        return "not recorded"
    return "empty" if ref.empty else f"sha256 {ref.sha256}"


def _withheld(ref: ContentRef | None) -> str:
    return f" (withheld: {ref.withheld})" if ref is not None and ref.withheld else ""


def _clouds(view: RunView) -> list[str]:
    out = []
    for exp, data in sorted(view.experiments.items(), key=lambda item: (len(item[0]), item[0])):
        cloud = data.get("cloud") or {}
        where = " ".join(str(cloud.get(k)) for k in ("endpoint", "region") if cloud.get(k))
        login = f" (logging in as {data['login_user']})" if data.get("login_user") else ""
        out.append(f"{exp} {data.get('name') or ''} on {cloud.get('kind')} {where}".strip() + login)
    return out


def _replay_header(view: RunView) -> list[tuple[str, str]]:
    source = view.started.get("replay_of")
    if not isinstance(source, dict):
        return []
    steps = view.replay_steps
    verdicts = [StepVerdict.read(step.get("verdict")) for step in steps]
    diverged = verdicts.count(StepVerdict.DIVERGED)
    equivalent = verdicts.count(StepVerdict.EQUIVALENT)
    return [
        ("replay of", f"{source.get('run')} (digest {source.get('digest')}"
                      + (f", signed by {source['signer']})" if source.get("signer") else ")")),
        ("verdict", f"{len(steps) - diverged} of {len(steps)} steps reproduced"
                    + (f" ({equivalent} equivalent)" if equivalent else "")
                    + (f", {diverged} diverged" if diverged else "")),
    ]  # fmt: skip


def _script(view: RunView) -> Script | None:
    """The experiment script, its text read from the run's store and checked against its
    hash (a damaged run's script says why it is not shown)."""
    ref = view.script
    if ref is None:
        return None
    sha, size = ref.sha256, ref.size
    script = Script(
        path=str(view.started.get("script_path") or "-"), sha256=sha, size=size, text=None
    )
    if ref.withheld:
        script.unshown = f"kept by hash only: {ref.withheld}"
    elif size > SCRIPT_LIMIT:
        script.unshown = f"{size:,} bytes: precip-repro cat {view.run} {sha}"
    else:
        try:
            script.text = ContentReader(view).read(ref, what="the script").decode("utf-8")
        except UnicodeDecodeError:
            script.unshown = f"not UTF-8 text: precip-repro cat {view.run} {sha}"
        except (RecordError, OSError, ValueError) as exc:
            script.unshown = f"cannot be read: {exc}"
    return script


def _instance(inst: InstanceView) -> InstanceRow:
    return InstanceRow(
        slot=inst.slot,
        instance_ids=", ".join(inst.instance_ids),
        image=inst.image_id + (f" (digest {inst.image_digest})" if inst.image_digest else ""),
        instance_type=inst.instance_type,
        boot="not ready"
        if inst.ready_ns is None
        else format_duration(inst.ready_ns - inst.launched_ns),
        addresses=_addresses(inst),
        host_key=inst.host_key or "-",
        facts=[Fact(label=name, value=_text(value)) for name, value in sorted(inst.facts.items())],
        launched_ns=inst.launched_ns,
        ready_ns=inst.ready_ns,
        terminated_ns=inst.terminated_ns,
    )


def _addresses(inst: InstanceView) -> str:
    """Where it was reached: each address with its hostname when that says more."""
    public = _address(inst.public_address, inst.public_hostname)
    private = _address(inst.private_address, inst.private_hostname)
    if public and public == private:
        return f"{public} (public and private)"
    return (
        ", ".join(
            f"{side} {shown}" for side, shown in (("public", public), ("private", private)) if shown
        )
        or "-"
    )


def _address(address: str | None, hostname: str | None) -> str | None:
    if address and hostname and hostname != address:
        return f"{address} ({hostname})"
    return address or hostname


def _call(call: CallView) -> CallRow:
    outcome = call.outcome
    if call.error:
        outcome += f": {call.error.type}: {call.error.message}"
    return CallRow(
        number=call.number,
        name=f"{call.exp}.{call.method}",
        args=_json(_brief_args(call.args)),
        outcome=outcome,
        failed=call.outcome != "finished",
        duration=format_duration(call.duration_ns),
        per_instance=_outcomes(call),
    )


def _brief_args(args: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments for its row in the calls table: a long command (a generated
    script, a heredoc) by its head and tail — the commands section shows it whole."""
    return {
        key: _clipped(value) if isinstance(value, str) and len(value) > SHOWN_COMMAND else value
        for key, value in args.items()
    }


def _clipped(text: str) -> str:
    head, tail = text[: SHOWN_COMMAND * 2 // 3], text[-(SHOWN_COMMAND // 3) :]
    return f"{head}…{len(text) - len(head) - len(tail):,} characters…{tail}"


def _first_line(cmd: str) -> str | None:
    """What a long or multi-line command is labelled by (None: it is short, shown as is)."""
    if "\n" not in cmd and len(cmd) <= SHOWN_COMMAND:
        return None
    first = cmd.split("\n", 1)[0]
    lines = cmd.count("\n") + 1
    label = first if len(first) <= SHOWN_COMMAND // 2 else first[: SHOWN_COMMAND // 2]
    return f"{label} … ({lines} lines, {len(cmd):,} characters)"


def _outcomes(call: CallView) -> str:
    parts = [f"{c.slot}: {c.exit_code}" for c in call.commands]
    parts += [f"{f.slot}: {f.kind} {f.content.size if f.content else '?'} B" for f in call.files]
    return ", ".join(parts)


def _step(step: dict[str, Any]) -> StepRow:
    return StepRow(
        source_call=f"#{step.get('source_call')}",
        name=f"{step.get('exp')}.{step.get('method')}",
        verdict=StepVerdict.read(step.get("verdict")).value,
        reproduced=StepVerdict.read(step.get("verdict")) is not StepVerdict.DIVERGED,
        differences=[_difference(found) for found in step.get("differences") or []],
    )


def _difference(found: Any) -> str:
    """A replay step's difference as ``diff`` and ``precip-replay`` show it."""
    try:
        typed = Difference.from_json(found)
    except (TypeError, KeyError, ValueError, AttributeError):
        return str(found)  # not a difference of a kind this version knows
    return "\n".join(render_difference(typed))
