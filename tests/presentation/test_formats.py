"""The HTML and the Markdown report are drawn from one model: read back (a tree for the
HTML, CommonMark blocks for the Markdown) they carry the same facts, recorded text whole."""

from __future__ import annotations

import hashlib

import pytest

from precip_repro.loading import load_run
from precip_repro.report import write_report
from tests.helpers import record_script
from tests.presentation.dom import html_tree, markdown_rows, markdown_sections, shown

SCRIPT = """\
from pathlib import Path

from precip_repro import LocalExperiment

import blank  # an empty module of the script's own
import labhelp

config = Path(__file__).parent / "private.conf"
with LocalExperiment("facts") as exp:
    exp.provision("default", count=2)
    exp.wait()
    exp.put([], config, "/tmp/private.conf")
    exp.run([], "printf '%s\\\\n' '<b>x</b> | `tick` & *star* _u_'")
    exp.run([], "true")
    exp.note("done: <i>1.</i> | *ok*", files=2, greeting=labhelp.GREETING)
"""
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    from precip_repro.record import RunStore

    where = tmp_path_factory.mktemp("formats")
    store = RunStore(where / "records")
    script = where / "facts.py"
    script.write_text(SCRIPT)
    (where / "blank.py").write_text("")
    (where / "labhelp.py").write_text("GREETING = 'hi'\n")
    config = where / "private.conf"
    config.write_text("key = value\n")
    config.chmod(0o600)
    done = record_script(store, script)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list(store.run_dirs())
    html = write_report(run_dir, where / "r.html").path.read_text()
    md = write_report(run_dir, where / "r.md", fmt="md").path.read_text()
    return load_run(run_dir), script, html_tree(html), markdown_sections(md), html, md


def test_both_formats_list_every_instance_with_its_host_key_and_facts(reports):
    view, _, page, sections, _, _ = reports
    html_rows = page.by_id("instances").rows()
    md_rows = markdown_rows(sections["Instances"])
    assert len(html_rows) == len(md_rows) == len(view.instances) == 2
    for inst, html_row, md_row in zip(view.instances.values(), html_rows, md_rows, strict=True):
        html_cells = [cell.text for cell in html_row]
        for cells in (html_cells, md_row):
            assert cells[0] == inst.slot
            assert cells[1] == inst.instance_ids[0]
            assert inst.host_key and inst.host_key in cells
            facts = cells[-1]
            for name, value in inst.facts.items():
                assert name in facts and str(value) in facts


def test_both_formats_show_the_script_whole_with_its_hash(reports):
    _, script, page, sections, _, _ = reports
    sha = hashlib.sha256(script.read_bytes()).hexdigest()
    assert page.by_id("script").text == SCRIPT
    assert page.by_id("script-sha256").text == sha
    (fence,) = [t for t in sections["Script"] if t.type == "fence"]
    assert fence.content == SCRIPT + "\n"
    (paragraph,) = [t for t in sections["Script"] if t.type == "inline"][1:]
    assert sha in shown(paragraph) and str(script) in shown(paragraph)


def test_both_formats_give_each_file_moved_its_mode(reports):
    _, _, page, sections, _, _ = reports
    html_modes = [row[5].text for row in page.by_id("files").rows()]
    md_modes = [row[5] for row in markdown_rows(sections["Files moved"])]
    assert html_modes == md_modes == ["0600", "0600"]


def test_an_empty_output_or_module_shows_no_hash_in_either_format(reports):
    view, _, page, sections, html, md = reports
    outputs = [out for call in view.calls for c in call.commands for out in (c.stdout, c.stderr)]
    assert EMPTY_SHA256 in {out.sha256 for out in outputs if out}  # there are empty outputs
    assert view.modules["blank"].content.sha256 == EMPTY_SHA256
    helper = str(view.modules["labhelp"].content.sha256)
    header = page.by_id("header")
    labels = [dt.text for dt in header.find_all("dt")]
    modules_html = dict(zip(labels, [dd.text for dd in header.find_all("dd")], strict=True))[
        "modules"
    ]
    (modules_md,) = [shown(t) for t in sections[""] if t.type == "inline"
                     and shown(t).startswith("modules: ")]  # fmt: skip
    for modules in (modules_html, modules_md):
        assert "blank (" in modules and ", empty)" in modules and f"sha256 {helper}" in modules
    assert EMPTY_SHA256 not in html and EMPTY_SHA256 not in md
    stdout = next(
        c.stdout for call in view.calls for c in call.commands if c.stdout and c.stdout.size
    )
    assert stdout.sha256 in html and stdout.sha256 in md


def test_recorded_markup_is_shown_as_text_in_both_formats(reports):
    _, _, page, sections, _, _ = reports
    printed = "<b>x</b> | `tick` & *star* _u_\n"
    assert printed in [pre.text for pre in page.find_all("pre")]
    fences = [t.content for t in sections["Commands and outputs"] if t.type == "fence"]
    assert printed + "\n" in fences  # a fence holds the text, then its own line end
    note = "done: <i>1.</i> | *ok*"
    assert page.by_id("notes").find_all("li")[0].text.startswith(note + " ")
    items = [t for t in sections["Notes"] if t.type == "inline"][1:]
    assert shown(items[0]).startswith(note + " ")
    assert not any(c.type.endswith("_open") or c.type == "html_inline"
                   for c in items[0].children or [])  # fmt: skip
