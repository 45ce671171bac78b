"""Markdown that shows recorded text as it is, checked by a CommonMark parser (with
GitHub's tables): whatever the text, it comes back whole and as text, never as markup."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from precip_repro import mdtext

MD = MarkdownIt("commonmark").enable("table")

# What commands, outputs and notes hold: any printable text, markup characters first.
TEXT = st.text(
    alphabet=st.sampled_from("`|*_[]()<>#+-.!~&\\ \n\tab1é⏎")
    | st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    max_size=40,
)


def inline(source: str) -> list[Any]:
    (paragraph,) = [t for t in MD.parse(source) if t.type == "inline"]
    return list(paragraph.children or [])


@given(TEXT.filter(bool))
def test_a_code_span_holds_any_text_whole(text):
    (span,) = inline(f"before {mdtext.code(text)} after")[1:-1]
    assert span.type == "code_inline"
    assert span.content == text.replace("\n", "⏎")


@given(TEXT.filter(bool))
def test_a_code_span_in_a_table_cell_neither_splits_the_row_nor_loses_a_character(text):
    source = f"| a | b |\n|---|---|\n| {mdtext.code(text, in_table=True)} | end |\n"
    tokens = MD.parse(source)
    cells = [t for t in tokens if t.type == "inline"][2:]
    assert len(cells) == 2 and cells[1].content == "end"
    (span,) = cells[0].children or []
    assert span.type == "code_inline"
    assert span.content == text.replace("\n", "⏎")


@given(TEXT)
def test_a_fenced_block_holds_any_text_whole(text):
    tokens = MD.parse("\n".join(["before", *mdtext.fenced(text), "after"]))
    (fence,) = [t for t in tokens if t.type == "fence"]
    assert fence.content == text + "\n"
    assert [t.content for t in tokens if t.type == "inline"][-1] == "after"


@given(TEXT.filter(lambda t: t.strip() == t and "\t" not in t and "  " not in t))
def test_prose_is_read_as_its_own_words_never_as_markup(text):
    children = inline(f"- {mdtext.prose(text)} end")
    assert {child.type for child in children} <= {"text"}
    shown = "".join(child.content for child in children)
    assert shown == f"{text.replace(chr(10), ' ⏎ ')} end".lstrip()


def test_empty_text_says_so_where_no_code_span_can_hold_it():
    assert mdtext.code("") == "(empty)"
