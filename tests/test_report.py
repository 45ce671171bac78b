"""report: one self-contained HTML file (or Markdown) a reviewer can trust the header of."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt

from precip_repro import finish_run
from precip_repro.cli import main
from precip_repro.loading import load_run
from precip_repro.report import write_report
from tests.helpers import ready
from tests.test_diff import synthetic


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data):
        if self.tags and self.tags[-1][0] == "pre" and self.open[-1:] == ["pre"]:
            data = data.removeprefix("\n")  # as browsers read a <pre>: text starts after it
        self.text.append(data)


def parse(path: Path) -> Collect:
    parser = Collect()
    parser.feed(path.read_text())
    parser.close()
    return parser


def test_the_html_report_holds_every_command_output_and_lane(store, tmp_path):
    run = synthetic(store)
    out = tmp_path / "r.html"
    assert write_report(run.path, out).verdict.state == "intact"
    page = parse(out)
    assert page.open == []  # well formed
    text = "".join(page.text)
    view = load_run(run.path)
    commands = [c for call in view.calls for c in call.commands]
    assert len(commands) == 2
    for command in commands:
        assert command.cmd in text
        assert command.stdout is not None
        assert str(command.stdout.text) in text
        assert command.stdout.sha256 in text
    lanes = [attrs for tag, attrs in page.tags if tag == "g" and attrs.get("class") == "lane"]
    assert sorted(str(a["data-slot"]) for a in lanes) == sorted(view.instances)
    assert "INTACT" in text and run.digest in text
    assert run.signature is not None and "signed by" in text and run.signature.fingerprint in text
    source = out.read_text()
    assert "http://" not in source.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in source and "<link" not in source  # nothing fetched


def test_the_markdown_report_shows_commands_outputs_and_notes_as_written(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "markup")
    commands = [
        "printf '%s\\n' '```' '| a | b |' '<script>x</script>'",
        "echo 'x`y' | tr x z",
        "echo '# not a heading' >&2",
    ]
    for cmd in commands:
        exp.run([], cmd)
    exp.note("# *results* | <b>bold</b>", cells="a|b")
    run_path = exp.run_path
    finish_run()
    out = tmp_path / "r.md"
    write_report(run_path, out, fmt="md")
    tokens = MarkdownIt("commonmark").enable("table").parse(out.read_text())

    headings = [
        tokens[i + 1] for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h3"
    ]
    shown = [c.content for h in headings for c in h.children or [] if c.type == "code_inline"]
    assert shown == commands
    fences = [t.content for t in tokens if t.type == "fence"]
    view = load_run(run_path)
    for command in (c for call in view.calls for c in call.commands):
        assert command.stdout is not None and command.stderr is not None
        assert f"{command.stdout.text or '(empty)'}\n" in fences
        assert f"{command.stderr.text or '(empty)'}\n" in fences
    rows = [t for t in tokens if t.type == "tr_open"]
    # The instances, calls and results tables (the note's fields), every row whole.
    assert len(rows) == 1 + 1 + 1 + len(view.calls) + 1 + 1
    (note,) = [t for t in tokens if t.type == "bullet_list_open"][-1:]
    items = tokens[tokens.index(note) :]
    text = next(t for t in items if t.type == "inline")
    assert text.children and text.children[0].content.rstrip() == "# *results* | <b>bold</b>"
    assert not any(c.type.endswith("_open") or c.type == "html_inline" for c in text.children)


def test_a_tampered_run_says_so_in_its_header(store, tmp_path):
    run = synthetic(store)
    blob = next(p for p in (run.path / "objects").rglob("*") if p.is_file())
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    out = tmp_path / "r.html"
    assert write_report(run.path, out).verdict.state == "corrupt"
    page = parse(out)
    banner = next(a for tag, a in page.tags if a.get("id") == "integrity")
    assert "corrupt" in (banner.get("class") or "")
    assert "CORRUPT — this record was altered or damaged" in "".join(page.text)


def test_a_report_with_vs_renders_the_diff_and_markdown_has_the_facts(store, tmp_path, capsys):
    a, b = synthetic(store), synthetic(store, exit_code=4)
    code = main(["--records", str(store.root), "report", b.id, "--vs", a.id])
    assert code == 0
    html_path = store.root / "reports" / f"{b.id}.html"
    assert str(html_path) in capsys.readouterr().out
    assert "exit_code" in html_path.read_text()
    md = tmp_path / "r.md"
    assert (
        main(["--records", str(store.root), "report", b.id, "--format", "md", "-o", str(md)]) == 0
    )
    text = md.read_text()
    assert "**INTACT" in text and "worker --master" in text and "e1.p1.1" in text
    assert "<svg" not in text


def test_report_vs_a_damaged_run_is_written_without_the_diff_and_exits_3(store, capsys):
    a, b = synthetic(store), synthetic(store, exit_code=4)
    log = b.path / "events.jsonl"
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    data[data.index(b'"exit_code":4')] ^= 1  # '"' → '#': the line is no longer JSON
    log.write_bytes(bytes(data))
    code = main(["--records", str(store.root), "report", a.id, "--vs", b.id])
    out, err = capsys.readouterr()
    assert code == 3
    assert f"not compared with {b.id}" in err
    page = (store.root / "reports" / f"{a.id}.html").read_text()
    assert str(store.root / "reports" / f"{a.id}.html") in out
    assert f"run {b.id} is corrupt, not intact" in page and "Compared with" not in page


def test_report_into_a_directory_writes_the_run_named_file_there(store, tmp_path):
    run = synthetic(store)
    written = write_report(run.path, tmp_path, fmt="md")
    assert written.path == tmp_path / f"{run.id}.md" and written.path.is_file()


def test_a_report_that_cannot_be_written_says_where_and_leaves_nothing(store, tmp_path, capsys):
    run = synthetic(store)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    code = main(["--records", str(store.root), "report", run.id, "-o", str(blocker / "r.html")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot write the report to {blocker / 'r.html'}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "records"]


def test_lanes_and_rows_come_in_slot_order_past_ten_instances(store, local_experiment, tmp_path):
    exp = ready(local_experiment, "many", count=12)
    exp.run([], "true")
    run_path = exp.run_path
    finish_run()
    for fmt in ("html", "md"):
        text = write_report(run_path, tmp_path / f"r.{fmt}", fmt=fmt).path.read_text()
        firsts = list(dict.fromkeys(re.findall(r"e1\.p1\.(\d+)", text)))
        assert firsts == [str(n) for n in range(12)], fmt  # e1.p1.2 before e1.p1.10


GENERATED = "cat > /tmp/conf <<'EOF'\n" + "\n".join(f"key{i} = value {i}" for i in range(400))
GENERATED += "\nEOF\necho wrote ü"


def test_a_long_command_is_summarised_by_its_first_line_and_shown_whole_below(
    local_experiment, tmp_path
):
    exp = ready(local_experiment, "generated")
    exp.run([], GENERATED)
    run_path = exp.run_path
    finish_run()
    html_out, md_out = tmp_path / "r.html", tmp_path / "r.md"
    write_report(run_path, html_out)
    write_report(run_path, md_out, fmt="md")

    page = parse(html_out)
    assert page.open == [] and GENERATED in page.text  # whole, in one <pre>
    assert "cat > /tmp/conf <<'EOF' … (403 lines, " in "".join(page.text)
    calls_row = next(t for t in page.text if t.startswith('{"check_exit_code"'))
    assert len(calls_row) < 500 and "characters…" in calls_row and "wrote ü" in calls_row

    tokens = MarkdownIt("commonmark").enable("table").parse(md_out.read_text())
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert any("cat > /tmp/conf <<'EOF' … (403 lines," in h for h in headings)
    assert f"{GENERATED}\n" in [t.content for t in tokens if t.type == "fence"]
    assert max(len(line) for line in md_out.read_text().splitlines()) < 600


def test_a_run_without_notes_says_none_under_notes(store, tmp_path):
    from precip_repro.record import Run

    with Run.open(store, name="quiet") as run:
        pass
    out = tmp_path / "quiet.html"
    write_report(run.path, out)
    page = parse(out)
    assert page.open == []
    assert "Notes(none)" in "".join(page.text)


def test_a_sweeps_markdown_report_tables_its_parameters_and_results(store, tmp_path):
    from tests.helpers import record_sweep

    base = record_sweep(store, 1)
    other = record_sweep(store, 1, sweep_bytes=100_000)
    out = tmp_path / "r.md"
    write_report(base, out, fmt="md", others=[other])
    tokens = MarkdownIt("commonmark").enable("table").parse(out.read_text())
    cells = [[c.content for c in t.children or [] if c.type in ("text", "code_inline")]
             for t in tokens if t.type == "inline"]  # fmt: skip
    assert ["argv"] in cells and ["1"] in cells  # the parameters table: argv, then its value
    assert ["SWEEP_BYTES"] in cells and ["200000"] in cells
    headers = [i for i, t in enumerate(tokens) if t.type == "thead_open"]
    assert len(headers) == 6  # parameters, instances, calls, files, results, across
    rows = [t for t in tokens if t.type == "tr_open"]
    view = load_run(base)
    notes, calls = len(view.notes), len(view.calls)
    files = sum(len(call.files) for call in view.calls)
    instances = len(view.instances)
    assert len(rows) == (1 + 2) + (1 + instances) + (1 + calls) + (1 + files) + (1 + notes) + (
        1 + 2 * notes
    )


def test_a_damaged_run_among_those_reported_is_named_and_exits_3(store, tmp_path, capsys):
    import shutil

    from precip_repro.cli import main
    from tests.helpers import record_sweep

    base = record_sweep(store, 1)
    damaged = tmp_path / "copy" / base.name
    shutil.copytree(base, damaged)
    (damaged / "checkpoint").chmod(0o644)
    (damaged / "checkpoint").write_text("{}\n")
    out = tmp_path / "r.html"
    code = main(["--records", str(store.root), "report", base.name, str(damaged), "-o", str(out)])
    assert code == 3
    assert "are not set beside this run's" in capsys.readouterr().err
    page = out.read_text()
    assert f"run {base.name} is corrupt" in page and "Results across" not in page


def test_plot_of_a_field_no_note_holds_as_a_number_lists_those_that_do(store, tmp_path, capsys):
    from precip_repro.cli import main
    from tests.helpers import record_sweep

    one, other = record_sweep(store, 1), record_sweep(store, 1)
    out = str(tmp_path / "r.html")
    argv = ["--records", str(store.root), "report", one.name]
    assert main([*argv, other.name, "--plot", "slot", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "--plot='slot' is not valid; valid values: bytes, input_bytes, level, seconds" in err
    assert main([*argv, "--plot", "bytes", "-o", out]) == 2
    assert "give more runs" in capsys.readouterr().err
    assert main([*argv, "--vs", other.name, "--plot", "bytes", "-o", out]) == 0
    page = Path(out).read_text()
    assert 'data-field="bytes"' in page and 'data-field="seconds"' not in page
