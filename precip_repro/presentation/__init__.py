"""The reports' one presentation layer: a run's facts gathered once into a
:class:`~precip_repro.presentation.model.ReportModel` (``adapter``), then drawn as HTML or
Markdown by Jinja2 templates (``templating``, ``lanes`` for the timeline)."""

from __future__ import annotations

from precip_repro.presentation.adapter import report_model
from precip_repro.presentation.model import ReportModel
from precip_repro.presentation.templating import FORMATS, render, render_html, render_markdown

__all__ = ["FORMATS", "ReportModel", "render", "render_html", "render_markdown", "report_model"]
