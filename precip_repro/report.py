"""A report a person would rather look at than read: one self-contained HTML file (inline
CSS and SVG, nothing fetched) or Markdown with the same facts but the timeline.

Header (run, digest, integrity as ``verify`` sees it — a tampered run says so plainly —,
tool, Python, script, clouds), a timeline with one lane per instance (boot, commands,
transfers; failures in red), the calls with per-instance outcomes and durations, command
outputs with their blobs' hashes, files moved, notes, and with ``vs`` the diff.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro import mdtext
from precip_repro.content import ContentRef
from precip_repro.destinations import write_bytes
from precip_repro.diff import DiffResult, diff_runs, render_text
from precip_repro.exceptions import InvalidOption
from precip_repro.messages import SHOWN_COMMAND
from precip_repro.record.verify import Verdict, verify
from precip_repro.runview import CallView, CommandView, RunView, ViewBuilder
from precip_repro.timeline import format_duration

__all__ = ["Report", "render_html", "render_markdown", "write_report"]

EXCERPT: Final = 2000
WIDTH: Final = 1000
LANE: Final = 22
LABEL: Final = 150

_CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:3px 6px;
vertical-align:top;text-align:left}th{background:#f4f4f4;white-space:nowrap}
td code,td .muted{overflow-wrap:anywhere}
code,pre{font:12px monospace}
pre{background:#f8f8f8;padding:6px;white-space:pre-wrap;word-break:break-all;margin:2px 0}
.ok{color:#186a18}.bad{color:#b00020;font-weight:bold}.banner{padding:10px;border-radius:4px}
.banner.intact{background:#e6f4e6}.banner.corrupt,.banner.open,.banner.abandoned,.banner.unsealed{
background:#fde7ea}.muted{color:#777}dl{display:grid;grid-template-columns:max-content 1fr;
gap:2px 12px}dt{font-weight:bold}svg text{font:11px monospace}
"""


def _read(run_dir: Path) -> tuple[RunView, Verdict]:
    """The run as far as it is intact (a damaged run is still shown) and its verdict, read
    in one pass: ``verify`` hands each intact event to the view as it checks it."""
    builder = ViewBuilder(run_dir)
    verdict = verify(run_dir, observe=builder.add)
    return builder.build(), verdict


def _e(value: Any) -> str:
    return html.escape(
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
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


def _excerpt(ref: ContentRef | None) -> str:
    if ref is None:
        return "(not recorded)"
    if ref.text is not None:
        text = ref.text
        if not text:
            return "(empty)"
        return text if len(text) <= EXCERPT else text[:EXCERPT] + f"… ({len(text)} characters)"
    if ref.withheld:
        return f"(withheld: {ref.withheld})"
    return f"({ref.size} bytes in blob {ref.sha256}: precip-repro cat)"


def _sha(ref: ContentRef | None) -> str | None:
    return ref.sha256 if ref is not None else None


def _size(ref: ContentRef | None) -> int | None:
    return ref.size if ref is not None else None


def _clouds(view: RunView) -> list[str]:
    out = []
    for exp, data in sorted(view.experiments.items(), key=lambda item: (len(item[0]), item[0])):
        cloud = data.get("cloud") or {}
        where = " ".join(str(cloud.get(k)) for k in ("endpoint", "region") if cloud.get(k))
        login = f" (logging in as {data['login_user']})" if data.get("login_user") else ""
        out.append(f"{exp} {data.get('name') or ''} on {cloud.get('kind')} {where}".strip() + login)
    return out


def _outcomes(call: CallView) -> str:
    parts = [f"{c.slot}: {c.exit_code}" for c in call.commands]
    parts += [f"{f.slot}: {f.kind} {_size(f.content)} B" for f in call.files]
    return ", ".join(parts)


def _header(view: RunView, verdict: Verdict) -> list[tuple[str, str]]:
    started = view.started
    return [
        ("run", view.run),
        ("digest", verdict.digest or "-"),
        ("signed by", verdict.signer or "unsigned"),
        ("status", view.ended),
        ("events", str(view.events)),
        ("duration", format_duration(view.last_ns - view.first_ns)),
        ("tool", f"precip-repro {started.get('tool_version')}"),
        ("python", f"{started.get('python')} on {started.get('platform')}"),
        ("recorded by", f"{started.get('user')}@{started.get('host')} in {started.get('cwd')}"),
        ("script", _script(started, view.script)),
        *([("modules", _modules(view))] if view.modules else []),
        ("git commit", str(started.get("git_commit") or "-")),
        ("clouds", "; ".join(_clouds(view)) or "-"),
        *_replay_header(view),
    ]


def _script(started: dict[str, Any], script: ContentRef | None) -> str:
    path = str(started.get("script_path") or "-")
    ref = script
    if ref is not None and ref.withheld:
        return f"{path} (kept by hash only: {ref.withheld})"
    return path


def _modules(view: RunView) -> str:
    """The script's own modules, each with its source's hash (the source is in the store:
    ``precip-repro cat RUN SHA256``)."""
    return "; ".join(
        f"{name} ({module.path}, sha256 {_sha(module.content)}{_withheld(module.content)})"
        for name, module in sorted(view.modules.items())
    )


def _withheld(ref: ContentRef | None) -> str:
    return f" (withheld: {ref.withheld})" if ref is not None and ref.withheld else ""


def _replay_header(view: RunView) -> list[tuple[str, str]]:
    source = view.started.get("replay_of")
    if not isinstance(source, dict):
        return []
    steps = view.replay_steps
    diverged = sum(step.get("verdict") != "reproduced" for step in steps)
    return [
        ("replay of", f"{source.get('run')} (digest {source.get('digest')}"
                      + (f", signed by {source['signer']})" if source.get("signer") else ")")),
        ("verdict", f"{len(steps) - diverged} of {len(steps)} steps reproduced"
                    + (f", {diverged} diverged" if diverged else "")),
    ]  # fmt: skip


def _difference(found: Any) -> str:
    if not isinstance(found, dict):
        return str(found)
    where = f" {found['slot']}" if found.get("slot") else ""
    return f"{found.get('kind')}{where}: {found.get('a')!r} → {found.get('b')!r}"


def _integrity(verdict: Verdict) -> str:
    if verdict.state == "intact":
        return f"INTACT — {verdict.reason}"
    if verdict.state == "corrupt":
        return f"CORRUPT — this record was altered or damaged: {verdict.reason}"
    return f"{verdict.state.upper()} — {verdict.reason}"


def _timeline_svg(view: RunView) -> str:
    slots = list(view.instances)  # in slot order (e1.p1.2 before e1.p1.10)
    start, end = view.first_ns, max(view.last_ns, view.first_ns + 1)
    scale = WIDTH / (end - start)
    height = LANE * max(len(slots), 1) + 30

    def x(ns: int) -> float:
        return LABEL + (ns - start) * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 10}" '
        f'height="{height}" role="img" aria-label="timeline">'
    ]
    lanes = {slot: index for index, slot in enumerate(slots)}
    for slot, index in lanes.items():
        y = 5 + index * LANE
        inst = view.instances[slot]
        parts.append(f'<g class="lane" data-slot="{_e(slot)}">')
        parts.append(f'<text x="4" y="{y + 14}">{_e(slot)}</text>')
        parts.append(
            f'<line x1="{LABEL}" y1="{y + 10}" x2="{LABEL + WIDTH}" y2="{y + 10}" stroke="#eee"/>'
        )
        boot_end = inst.ready_ns or inst.terminated_ns or view.last_ns
        parts.append(
            f'<rect class="boot" x="{x(inst.launched_ns):.1f}" y="{y + 4}" '
            f'width="{max(1.0, (boot_end - inst.launched_ns) * scale):.1f}" height="12" '
            f'fill="#bbb"><title>boot {_e(slot)}: '
            f"{format_duration(boot_end - inst.launched_ns)}</title></rect>"
        )
        if inst.terminated_ns:
            parts.append(
                f'<rect x="{x(inst.terminated_ns):.1f}" y="{y + 2}" width="2" height="16" '
                'fill="#555"><title>terminated</title></rect>'
            )
        parts.append("</g>")
    for call in view.calls:
        for command in call.commands:
            lane = lanes.get(command.slot)
            if lane is None:
                continue
            y = 5 + lane * LANE
            failed = command.exit_code != 0
            begin = command.end_ns - command.duration_ns
            parts.append(
                f'<rect class="command{" failed" if failed else ""}" x="{x(begin):.1f}" '
                f'y="{y + 4}" width="{max(1.0, command.duration_ns * scale):.1f}" height="12" '
                f'fill="{"#d32f2f" if failed else "#1e6bd6"}"><title>#{call.number} '
                f"{_e(command.cmd)} → exit {command.exit_code} in "
                f"{format_duration(command.duration_ns)}</title></rect>"
            )
        for moved in call.files:
            lane = lanes.get(moved.slot)
            if lane is None:
                continue
            y = 5 + lane * LANE
            parts.append(
                f'<rect class="transfer" x="{x(moved.at_ns):.1f}" y="{y + 1}" width="3" '
                f'height="18" fill="{"#2e7d32" if moved.kind == "put" else "#7b1fa2"}">'
                f"<title>{moved.kind} {_e(moved.remote_path)} "
                f"({_size(moved.content)} bytes)</title></rect>"
            )
    parts.append(
        f'<text x="{LABEL}" y="{height - 6}">0 s</text>'
        f'<text x="{LABEL + WIDTH - 60}" y="{height - 6}">'
        f"{format_duration(end - start)}</text></svg>"
    )
    return "".join(parts)


def _command_rows(view: RunView) -> Iterator[CommandView]:
    for call in view.calls:
        yield from call.commands


def render_html(
    view: RunView, verdict: Verdict, diff: DiffResult | None = None, *, not_compared: str = ""
) -> str:
    out: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>precip-repro run {_e(view.run)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Run {_e(view.run)}</h1>",
        f'<p class="banner {verdict.state}" id="integrity"><strong>'
        f"{_e(_integrity(verdict))}</strong></p><dl>",
    ]
    for label, value in _header(view, verdict):
        out.append(f"<dt>{_e(label)}</dt><dd><code>{_e(value)}</code></dd>")
    out.append("</dl><h2>Timeline</h2>")
    out.append(_timeline_svg(view))
    out.append(
        '<p class="muted">grey: boot · blue: command · red: failed command · '
        "green/purple: file put/got · dark: terminated</p>"
    )
    out.append(
        "<h2>Calls</h2><table><tr><th>#</th><th>call</th><th>arguments</th><th>outcome</th>"
        "<th>duration</th><th>per instance</th></tr>"
    )
    for call in view.calls:
        outcome = call.outcome
        if call.error:
            outcome += f": {call.error.type}: {call.error.message}"
        css = "bad" if call.outcome != "finished" else "ok"
        duration = format_duration(call.duration_ns)
        out.append(
            f"<tr><td>{call.number}</td><td>{_e(call.exp)}.{_e(call.method)}</td>"
            f"<td><code>{_e(_brief_args(call.args))}</code></td>"
            f'<td class="{css}">{_e(outcome)}</td>'
            f"<td>{duration}</td><td>{_e(_outcomes(call))}</td></tr>"
        )
    out.append(
        "</table><h2>Commands and outputs</h2><table><tr><th>#</th><th>instance</th>"
        "<th>command</th><th>exit</th><th>duration</th><th>stdout</th><th>stderr</th></tr>"
    )
    for command in _command_rows(view):
        css = "bad" if command.exit_code != 0 else "ok"
        summary = _first_line(command.cmd)
        shown = (
            f"<code>{_e(command.cmd)}</code>"
            if summary is None
            else f"<details><summary><code>{_e(summary)}</code></summary>"
            f"<pre>{_e(command.cmd)}</pre></details>"
        )
        out.append(
            f'<tr class="command"><td>{command.call}</td><td>{_e(command.slot)}</td>'
            f'<td>{shown}</td><td class="{css}">{command.exit_code}'
            f"</td><td>{format_duration(command.duration_ns)}</td>"
            f"<td><pre>{_e(_excerpt(command.stdout))}</pre>"
            f'<span class="muted">sha256 {_e(_sha(command.stdout))}</span></td>'
            f"<td><pre>{_e(_excerpt(command.stderr))}</pre>"
            f'<span class="muted">sha256 {_e(_sha(command.stderr))}</span></td></tr>'
        )
    out.append(
        "</table><h2>Files moved</h2><table><tr><th>#</th><th>instance</th><th>way</th>"
        "<th>local</th><th>remote</th><th>mode</th><th>size</th><th>sha256</th></tr>"
    )
    for call in view.calls:
        for moved in call.files:
            out.append(
                f"<tr><td>{call.number}</td><td>{_e(moved.slot)}</td><td>{moved.kind}</td>"
                f"<td><code>{_e(moved.local_path)}</code></td>"
                f"<td><code>{_e(moved.remote_path)}</code></td><td>{moved.mode:o}</td>"
                f"<td>{_size(moved.content)}</td>"
                f"<td><code>{_e(_sha(moved.content))}</code>"
                f"{_e(_withheld(moved.content))}</td></tr>"
            )
    out.append("</table>")
    if view.replay_steps:
        out.append(
            "<h2>Replay verdicts</h2><table><tr><th>recorded call</th><th>call</th>"
            "<th>verdict</th><th>differences</th></tr>"
        )
        for step in view.replay_steps:
            ok = step.get("verdict") == "reproduced"
            found = "<br>".join(_e(_difference(d)) for d in step.get("differences") or [])
            out.append(
                f"<tr><td>#{_e(step.get('source_call'))}</td>"
                f"<td>{_e(step.get('exp'))}.{_e(step.get('method'))}</td>"
                f"<td class={'ok' if ok else 'bad'}>{_e(step.get('verdict'))}</td>"
                f"<td><code>{found}</code></td></tr>"
            )
        out.append("</table>")
    out.append("<h2>Notes</h2>")
    if view.notes:
        out.append("<ul>")
        for _, text, fields in view.notes:
            extra = f" <code>{_e(fields)}</code>" if fields else ""
            out.append(f"<li>{_e(text)}{extra}</li>")
        out.append("</ul>")
    else:
        out.append('<p class="muted">(none)</p>')
    if diff is not None:
        verdict_text = "same" if diff.same else "different"
        out.append(f"<h2>Compared with {_e(diff.b['run'])}: {verdict_text}</h2><pre>")
        out.append(_e("\n".join(render_text(diff))))
        out.append("</pre>")
    if not_compared:
        out.append(f"<h2>Not compared</h2><p class=bad>{_e(not_compared)}</p>")
    out.append("</body></html>")
    return "".join(out)


def render_markdown(
    view: RunView, verdict: Verdict, diff: DiffResult | None = None, *, not_compared: str = ""
) -> str:
    def cell(value: Any) -> str:
        """A value in a table cell, as code: recorded text shown as it is."""
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, sort_keys=True, ensure_ascii=False)
        )
        return mdtext.code(text, in_table=True)

    out = [f"# Run {view.run}", "", f"**{mdtext.prose(_integrity(verdict))}**", ""]
    out += [f"- **{label}**: {mdtext.code(str(value))}" for label, value in _header(view, verdict)]
    out += [
        "",
        "## Instances",
        "",
        "| slot | instance | image | type | ready | facts |",
        "|---|---|---|---|---|---|",
    ]
    for slot, inst in view.instances.items():
        boot = format_duration((inst.ready_ns or inst.launched_ns) - inst.launched_ns)
        out.append(
            f"| {slot} | {', '.join(inst.instance_ids)} | {cell(inst.image_id)} | "
            f"{cell(inst.instance_type)} | {boot} | {cell(inst.facts)} |"
        )
    out += [
        "",
        "## Calls",
        "",
        "| # | call | arguments | outcome | duration | per instance |",
        "|---|---|---|---|---|---|",
    ]
    for call in view.calls:
        outcome = call.outcome + (f": {call.error.type}" if call.error else "")
        out.append(
            f"| {call.number} | {call.exp}.{call.method} | {cell(_brief_args(call.args))} | "
            f"{mdtext.prose(outcome)} | {format_duration(call.duration_ns)} | "
            f"{mdtext.prose(_outcomes(call))} |"
        )
    out += ["", "## Commands and outputs", ""]
    for command in _command_rows(view):
        summary = _first_line(command.cmd)
        out += [
            f"### #{command.call} {command.slot}: {mdtext.code(summary or command.cmd)} → exit "
            f"{command.exit_code} in {format_duration(command.duration_ns)}",
            "",
            *(["command:", *mdtext.fenced(command.cmd)] if summary is not None else []),
            f"stdout (sha256 `{_sha(command.stdout)}`):",
            *mdtext.fenced(_excerpt(command.stdout)),
            f"stderr (sha256 `{_sha(command.stderr)}`):",
            *mdtext.fenced(_excerpt(command.stderr)),
            "",
        ]
    out += ["## Files moved", ""]
    moved_rows = [
        f"| {call.number} | {moved.slot} | {moved.kind} | {cell(moved.local_path)} | "
        f"{cell(moved.remote_path)} | {_size(moved.content)} | "
        f"`{_sha(moved.content)}`{mdtext.prose(_withheld(moved.content))} |"
        for call in view.calls
        for moved in call.files
    ]
    if moved_rows:
        out += [
            "| # | instance | way | local | remote | size | sha256 |",
            "|---|---|---|---|---|---|---|",
            *moved_rows,
        ]
    else:
        out.append("(none)")
    if view.replay_steps:
        out += ["", "## Replay verdicts", "", "| recorded call | call | verdict | differences |",
                "|---|---|---|---|"]  # fmt: skip
        for step in view.replay_steps:
            found = "; ".join(_difference(d) for d in step.get("differences") or [])
            out.append(
                f"| #{step.get('source_call')} | {step.get('exp')}.{step.get('method')} | "
                f"{step.get('verdict')} | {mdtext.prose(found)} |"
            )
    out += ["", "## Notes", ""]
    out += [
        f"- {mdtext.prose(text)}"
        + (f" {mdtext.code(json.dumps(fields, sort_keys=True))}" if fields else "")
        for _, text, fields in view.notes
    ] or ["(none)"]
    if diff is not None:
        out += [
            "",
            f"## Compared with {diff.b['run']}",
            "",
            *mdtext.fenced("\n".join(render_text(diff))),
        ]
    if not_compared:
        out += ["", "## Not compared", "", f"**{mdtext.prose(not_compared)}**"]
    return "\n".join(out) + "\n"


@attrs.frozen(kw_only=True)
class Report:
    """A report written: where, and the integrity of its run (and of the ``vs`` run)."""

    path: Path
    verdict: Verdict
    vs_verdict: Verdict | None = None

    @property
    def compared(self) -> bool:
        """Whether the ``vs`` diff is in the report (both runs intact)."""
        return self.vs_verdict is not None and self.verdict.intact and self.vs_verdict.intact


def write_report(run_dir: Path, out: Path, *, fmt: str = "html", vs: Path | None = None) -> Report:
    """Write the report of ``run_dir`` to ``out`` (a file, or a directory to write
    ``RUN.html`` / ``RUN.md`` into).

    A damaged run is reported all the same, its header saying how it is damaged. With
    ``vs``, the diff against that run is included when both runs are intact — as
    ``precip-repro diff`` compares only intact runs; otherwise the report says why not.
    """
    if fmt not in ("html", "md"):
        raise InvalidOption("format", fmt, ["html", "md"])
    if out.is_dir():
        out = out / f"{run_dir.name}.{fmt}"
    view, verdict = _read(run_dir)
    diff = None
    other: Verdict | None = None
    not_compared = ""
    if vs is not None:
        other_view, other = _read(vs)
        damaged = [v for v in (verdict, other) if not v.intact]
        if damaged:
            not_compared = (
                "; ".join(f"run {v.run} is {v.state}, not intact: {v.reason}" for v in damaged)
                + f" — so this run is not compared with {other.run}"
            )
        else:
            diff = diff_runs(view, other_view, digests=(verdict.digest, other.digest))
    render = render_html if fmt == "html" else render_markdown
    text = render(view, verdict, diff, not_compared=not_compared)
    try:
        write_bytes(out, text.encode("utf-8"))
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot write the report to {out}: {exc.strerror or exc}", str(out)
        ) from None
    return Report(path=out, verdict=verdict, vs_verdict=other)
