"""The templates escape every value: whatever text a run recorded, the page's structure is
the template's own — an element, a table cell or a code span more or less would be text
read as markup. And every template ships in the wheel."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from precip_repro.presentation import render_html, render_markdown
from precip_repro.presentation.model import (
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
from tests.presentation.dom import html_tree

ROOT = Path(__file__).parent.parent.parent

TEXT = st.text(
    alphabet=st.sampled_from("`|*_[]()<>#+-.!~&\\\"' \nab1é⏎")
    | st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=30,
)


def model(text: str) -> ReportModel:
    """A report whose every text is ``text``: each field the templates print."""
    t = text
    content = Content(size=3, shown=t, sha256=t, withheld=t)
    return ReportModel(
        run=t,
        integrity=Integrity(state="intact", text=t),
        header=[Fact(label=t, value=t)],
        instances=[
            InstanceRow(
                slot=t, instance_ids=t, image=t, instance_type=t, boot=t, addresses=t,
                host_key=t, facts=[Fact(label=t, value=t)], launched_ns=1, ready_ns=2,
                terminated_ns=3,
            )
        ],
        script=Script(path=t, sha256=t, size=3, text=t),
        calls=[CallRow(number=1, name=t, args=t, outcome=t, failed=True, duration=t,
                       per_instance=t)],
        commands=[
            CommandRow(
                call=1, slot=t, cmd=t, summary=t, exit_code=1, failed=True, duration=t,
                duration_ns=1, end_ns=2, stdout=content, stderr=content,
            )
        ],
        files=[FileRow(call=1, slot=t, kind="put", local_path=t, remote_path=t, mode=t,
                       content=content, at_ns=2)],
        steps=[StepRow(source_call=t, name=t, verdict=t, reproduced=False, differences=[t, t])],
        notes=[NoteRow(text=t, fields=t)],
        comparison=Comparison(other_run=t, same=False, text=t),
        not_compared=t,
        start_ns=0,
        end_ns=4,
        duration=t,
    )  # fmt: skip


def html_structure(text: str) -> list[tuple[str, tuple[str, ...]]]:
    page = html_tree(render_html(model(text)))
    return [(e.tag, tuple(sorted(e.attrs))) for e in page.iter()]


def markdown_structure(text: str) -> list[tuple[str, ...]]:
    structure = []
    for token in MarkdownIt("commonmark").enable("table").parse(render_markdown(model(text))):
        kinds = [child.type for child in token.children or []]
        # Escapes split a run of text into tokens; runs of text are one thing to a reader.
        collapsed = [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]
        structure.append((token.type, token.tag, *collapsed))
    return structure


@given(TEXT)
def test_html_escapes_every_value_the_template_prints(text):
    assert html_structure(text) == html_structure("x")


@given(TEXT.filter(lambda t: t.strip() == t and "\t" not in t and "  " not in t))
def test_markdown_escapes_every_value_the_template_prints(text):
    assert markdown_structure(text) == markdown_structure("x")


def test_every_template_ships_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["precip_repro"]
    templates = [p.relative_to(ROOT / "precip_repro").as_posix()
                 for p in (ROOT / "precip_repro" / "templates").iterdir()]  # fmt: skip
    assert {"templates/report.html.j2", "templates/report.md.j2"} <= set(templates)
    for name in templates:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
