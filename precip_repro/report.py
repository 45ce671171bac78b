"""A report a person would rather look at than read: one self-contained HTML file (inline
CSS and SVG, nothing fetched) or Markdown with the same facts but the timeline.

Header (run, digest, integrity as ``verify`` sees it — a tampered run says so plainly —,
tool, Python, script, clouds), a timeline with one lane per instance (boot, commands,
transfers; failures in red), the instances with their facts and host keys, the experiment
script itself, the calls with per-instance outcomes and durations, command outputs with
their blobs' hashes, files moved with their modes, the script's parameters, its notes as a
results table, and with ``vs`` the diff (what changed in the parameters first). With other
runs (``vs``, or a list), their results beside this run's: one table, and each numeric
field plotted across the runs (inline SVG). Both formats draw one model
(:mod:`precip_repro.presentation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from precip_repro.destinations import write_bytes
from precip_repro.diff import DiffResult, diff_runs
from precip_repro.exceptions import InvalidOption
from precip_repro.loading import ViewBuilder, collection_paused
from precip_repro.presentation import FORMATS, render, report_model
from precip_repro.record.verify import Verdict, verify
from precip_repro.results import results_of
from precip_repro.runview import RunView

__all__ = ["Report", "render_html", "render_markdown", "write_report"]


def _read(run_dir: Path) -> tuple[RunView, Verdict]:
    """The run as far as it is intact (a damaged run is still shown) and its verdict, read
    in one pass: ``verify`` hands each intact event to the view as it checks it."""
    builder = ViewBuilder(run_dir)
    with collection_paused():  # a view is many small objects, none in a cycle
        verdict = verify(run_dir, observe=builder.add)
    return builder.build(), verdict


def render_html(
    view: RunView,
    verdict: Verdict,
    diff: DiffResult | None = None,
    *,
    not_compared: str = "",
    others: Sequence[RunView] = (),
    plotted: Sequence[str] = (),
) -> str:
    return _draw(view, verdict, diff, not_compared=not_compared, others=others,
                 plotted=plotted, fmt="html")  # fmt: skip


def render_markdown(
    view: RunView,
    verdict: Verdict,
    diff: DiffResult | None = None,
    *,
    not_compared: str = "",
    others: Sequence[RunView] = (),
    plotted: Sequence[str] = (),
) -> str:
    return _draw(view, verdict, diff, not_compared=not_compared, others=others,
                 plotted=plotted, fmt="md")  # fmt: skip


def _draw(
    view: RunView,
    verdict: Verdict,
    diff: DiffResult | None,
    *,
    not_compared: str,
    others: Sequence[RunView],
    plotted: Sequence[str],
    fmt: str,
) -> str:
    # A model row per call and per command, then the page: the collector would walk the
    # whole view again and again for them, and find nothing to free.
    with collection_paused():
        model = report_model(
            view, verdict, diff, not_compared=not_compared, others=others, plotted=plotted
        )
        return render(model, fmt)


@attrs.frozen(kw_only=True)
class Report:
    """A report written: where, and the integrity of its run (and of the ``vs`` run)."""

    path: Path
    verdict: Verdict
    vs_verdict: Verdict | None = None
    left_out: tuple[str, ...] = ()
    """The other runs whose results are not beside this run's (a run not intact)."""

    @property
    def compared(self) -> bool:
        """Whether the ``vs`` diff is in the report (both runs intact)."""
        return self.vs_verdict is not None and self.verdict.intact and self.vs_verdict.intact


def write_report(
    run_dir: Path,
    out: Path,
    *,
    fmt: str = "html",
    vs: Path | None = None,
    others: Sequence[Path] = (),
    plotted: Sequence[str] = (),
) -> Report:
    """Write the report of ``run_dir`` to ``out`` (a file, or a directory to write
    ``RUN.html`` / ``RUN.md`` into).

    A damaged run is reported all the same, its header saying how it is damaged. With
    ``vs``, the diff against that run is included when both runs are intact — as
    ``precip-repro diff`` compares only intact runs; otherwise the report says why not.
    The results of ``vs`` and of ``others`` are set beside this run's (intact runs only),
    with the numeric fields of ``plotted`` (all, when not given) plotted across them.
    """
    if fmt not in FORMATS:
        raise InvalidOption("format", fmt, list(FORMATS))
    if out.is_dir():
        out = out / f"{run_dir.name}.{fmt}"
    view, verdict = _read(run_dir)
    diff = None
    other: Verdict | None = None
    not_compared = ""
    beside: list[RunView] = []
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
            beside.append(other_view)
    left_out: list[str] = []
    for path in others:
        more_view, more = _read(path)
        if more.intact and verdict.intact:
            beside.append(more_view)
        else:
            left_out.append(more.run)
            if not more.intact:
                not_compared += f"{'; ' if not_compared else ''}run {more.run} is {more.state}, "
                not_compared += f"not intact: {more.reason}"
    if plotted and beside:
        numeric = results_of([view, *beside]).numeric_fields()
        for field in plotted:
            if field not in numeric:
                raise InvalidOption("--plot", field, numeric or ["(no note field is a number)"])
    if left_out:
        whose = "this run's" if verdict.intact else f"run {verdict.run}'s, which is not intact"
        not_compared += f" — so the results of {', '.join(left_out)} are not set beside {whose}"
    text = _draw(
        view, verdict, diff, not_compared=not_compared, others=beside, plotted=plotted, fmt=fmt
    )
    try:
        write_bytes(out, text.encode("utf-8"))
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot write the report to {out}: {exc.strerror or exc}", str(out)
        ) from None
    return Report(path=out, verdict=verdict, vs_verdict=other, left_out=tuple(left_out))
