"""Pages and Markdown read back as a reader's tools read them: an HTML tree (as a browser
builds one) and Markdown's blocks (as CommonMark with GitHub's tables parses them)."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from markdown_it.token import Token

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})  # fmt: skip


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Element | str] = []

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str) -> list[Element]:
        return [e for e in self.iter() if e.tag == tag and e is not self]

    def by_id(self, name: str) -> Element:
        (found,) = [e for e in self.iter() if e.attrs.get("id") == name]
        return found

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def rows(self) -> list[list[Element]]:
        """A table's body rows, as their cells."""
        return [row.find_all("td") for row in self.find_all("tr") if row.find_all("td")]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs))
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.open[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag):
        while len(self.open) > 1 and self.open.pop().tag != tag:
            pass

    def handle_data(self, data):
        current = self.open[-1]
        if current.tag == "pre" and not current.children:
            data = data.removeprefix("\n")  # as a browser reads <pre>: text starts after it
        current.children.append(data)


def html_tree(source: str) -> Element:
    builder = _Builder()
    builder.feed(source)
    builder.close()
    return builder.root


def markdown_sections(source: str) -> dict[str, list[Token]]:
    """Markdown's block tokens by the ``##`` heading they come under."""
    sections: dict[str, list[Token]] = {}
    current: list[Token] = sections.setdefault("", [])
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            current = sections.setdefault(tokens[index + 1].content, [])
        current.append(token)
    return sections


def shown(token: Token) -> str:
    """An inline token's text as a reader sees it: escapes undone, code spans' content."""
    return "".join(child.content for child in token.children or [] if child.type != "softbreak")


def markdown_rows(tokens: list[Token]) -> list[list[str]]:
    """A section's table body rows, as their cells' text."""
    rows: list[list[str]] = []
    in_body = False
    for token in tokens:
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tr_open" and in_body:
            rows.append([])
        elif token.type == "inline" and in_body and rows:
            rows[-1].append(shown(token))
    return rows
