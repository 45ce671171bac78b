"""A report a person would rather look at than read: one self-contained HTML file (inline
CSS and SVG, nothing fetched) or Markdown with the same facts but the timeline.

Header (run, digest, integrity as ``verify`` sees it — a tampered run says so plainly —,
tool, Python, script, clouds), a timeline with one lane per instance (boot, commands,
transfers; failures in red), the instances with their facts and host keys, the experiment
script itself, the calls with per-instance outcomes and durations, command outputs with
their blobs' hashes, files moved with their modes, notes, and with ``vs`` the diff. Both
formats draw one model (:mod:`precip_repro.presentation`).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from precip_repro.destinations import write_bytes
from precip_repro.diff import DiffResult, diff_runs
from precip_repro.exceptions import InvalidOption
from precip_repro.presentation import FORMATS, render, report_model
from precip_repro.record.verify import Verdict, verify
from precip_repro.runview import RunView, ViewBuilder, collection_paused

__all__ = ["Report", "render_html", "render_markdown", "write_report"]


def _read(run_dir: Path) -> tuple[RunView, Verdict]:
    """The run as far as it is intact (a damaged run is still shown) and its verdict, read
    in one pass: ``verify`` hands each intact event to the view as it checks it."""
    builder = ViewBuilder(run_dir)
    with collection_paused():  # a view is many small objects, none in a cycle
        verdict = verify(run_dir, observe=builder.add)
    return builder.build(), verdict


def render_html(
    view: RunView, verdict: Verdict, diff: DiffResult | None = None, *, not_compared: str = ""
) -> str:
    return _draw(view, verdict, diff, not_compared=not_compared, fmt="html")


def render_markdown(
    view: RunView, verdict: Verdict, diff: DiffResult | None = None, *, not_compared: str = ""
) -> str:
    return _draw(view, verdict, diff, not_compared=not_compared, fmt="md")


def _draw(
    view: RunView, verdict: Verdict, diff: DiffResult | None, *, not_compared: str, fmt: str
) -> str:
    # A model row per call and per command, then the page: the collector would walk the
    # whole view again and again for them, and find nothing to free.
    with collection_paused():
        return render(report_model(view, verdict, diff, not_compared=not_compared), fmt)


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
    if fmt not in FORMATS:
        raise InvalidOption("format", fmt, list(FORMATS))
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
    text = _draw(view, verdict, diff, not_compared=not_compared, fmt=fmt)
    try:
        write_bytes(out, text.encode("utf-8"))
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot write the report to {out}: {exc.strerror or exc}", str(out)
        ) from None
    return Report(path=out, verdict=verdict, vs_verdict=other)
