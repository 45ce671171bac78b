"""The report model drawn as HTML or Markdown, through the Jinja2 templates shipped in
``precip_repro/templates``.

Recorded text is whatever the experiment wrote (``<script>``, backticks, ``|``), so each
format escapes every value unless told otherwise: HTML by Jinja2's autoescape, Markdown
by :func:`precip_repro.mdtext.prose` applied to every ``{{ value }}`` (``finalize``) —
the ``code``, ``cell`` and ``fenced`` filters write a value as code instead, and what they
write is left alone (as is what a macro wrote, marked ``written``).
"""

from __future__ import annotations

import functools
from typing import Any, Final

import jinja2

from precip_repro import mdtext
from precip_repro.presentation.lanes import timeline
from precip_repro.presentation.model import ReportModel
from precip_repro.presentation.plot import plots

__all__ = ["FORMATS", "Markdown", "render", "render_html", "render_markdown"]

FORMATS: Final = ("html", "md")


class Markdown(str):
    """Text already written as Markdown (a code span, a fenced block): printed as it is."""

    __slots__ = ()


def _prose(value: Any) -> str:
    """Every value a Markdown template prints, escaped as plain words unless it is
    Markdown already (what a filter wrote) or a number."""
    kind = type(value)  # exact types: this runs for every value of a large report
    if kind is str:
        return mdtext.prose(value)
    if kind is Markdown:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    return mdtext.prose(str(value))


def _code(value: Any) -> Markdown:
    return Markdown(mdtext.code(str(value)))


def _cell(value: Any) -> Markdown:
    """A value in a table cell, as code: recorded text shown as it is."""
    return Markdown(mdtext.code(str(value), in_table=True))


def _written(value: Any) -> Markdown:
    """What a macro of the template wrote (each value in it escaped already): as it is."""
    return Markdown(str(value))


def _fenced(value: Any) -> Markdown:
    return Markdown("\n".join(mdtext.fenced(str(value))))


_LOADER: Final = jinja2.PackageLoader("precip_repro", "templates")


@functools.cache
def _environment(fmt: str) -> jinja2.Environment:
    if fmt == "html":
        return jinja2.Environment(loader=_LOADER, autoescape=True, undefined=jinja2.StrictUndefined)
    environment = jinja2.Environment(
        loader=_LOADER,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        finalize=_prose,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(code=_code, cell=_cell, fenced=_fenced, written=_written)
    return environment


def render_html(model: ReportModel) -> str:
    """One self-contained HTML page: inline CSS and SVG (the timeline, the plots across
    runs), nothing fetched."""
    template = _environment("html").get_template("report.html.j2")
    drawn = plots(model.across) if model.across is not None else []
    return template.render(m=model, timeline=timeline(model), plots=drawn)


def render_markdown(model: ReportModel) -> str:
    """Markdown with the same facts as the HTML page, but the timeline."""
    return _environment("md").get_template("report.md.j2").render(m=model)


def render(model: ReportModel, fmt: str) -> str:
    """``model`` in ``fmt``, one of :data:`FORMATS`."""
    return render_html(model) if fmt == "html" else render_markdown(model)
