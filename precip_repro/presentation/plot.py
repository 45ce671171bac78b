"""The HTML report's plots of a numeric field across runs, drawn from the model: the runs
along x (in the order given, labelled by what differs in what they were asked to do), the
field's values along y, one line of points per note. Geometry only — where each point goes
and what it says on hover —; the template writes the SVG (and escapes its text).
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from precip_repro.presentation.model import Across, Measure

__all__ = ["Plot", "PlotPoint", "PlotSeries", "Tick", "plots"]

WIDTH: Final = 720
HEIGHT: Final = 340
LEFT: Final = 80
RIGHT: Final = 200
"""Room for the legend."""
TOP: Final = 24
BOTTOM: Final = 110
"""Room for the runs' labels."""
PALETTE: Final = (
    "#1e6bd6", "#d32f2f", "#2e7d32", "#7b1fa2", "#ef6c00", "#00838f", "#5d4037", "#c2185b",
    "#455a64", "#9e9d24",
)  # fmt: skip
LEGEND: Final = 12
"""Series named in the legend (the rest are counted)."""


@attrs.define(kw_only=True)
class Tick:
    at: str
    label: str


@attrs.define(kw_only=True)
class PlotPoint:
    x: str
    y: str
    title: str


@attrs.define(kw_only=True)
class PlotSeries:
    label: str
    colour: str
    line: str
    """The polyline's points, ``x,y x,y …``."""
    points: list[PlotPoint]
    legend_y: int | None
    """Where its legend entry is (None: past the legend's room, counted)."""


@attrs.define(kw_only=True)
class Plot:
    field: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    series: list[PlotSeries]
    unnamed: int
    """Series past the legend's room."""


def _number(value: float) -> str:
    return f"{value:.6g}"


def _range(measure: Measure) -> tuple[float, float]:
    values = [value for series in measure.series for _, value in series.points]
    low, high = min(values), max(values)
    low, high = min(low, 0.0), max(high, 0.0)  # sizes and seconds read against zero
    if high <= low:
        high = low + 1.0
    return low, high


def _step(low: float, high: float) -> float:
    """A round step between ticks: about five from ``low`` to ``high``."""
    # A range below 1e-300 (subnormal values) is drawn as one of 1e-300: no step is smaller.
    step = 10.0 ** math.floor(math.log10(max((high - low) / 5, 1e-300)))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= 6:
            return step * factor
    return step * 10  # pragma: no cover - 10 steps of 10^k always fit


def _ticks(low: float, high: float, step: float) -> list[float]:
    """Round values from a tick at or below ``low`` to one at or above ``high``, counted in
    whole steps (dividing again would lose the first one to rounding)."""
    first, last = math.floor(low / step), math.ceil(high / step)
    return [n * step for n in range(first, last + 1)]


def _plot(measure: Measure, labels: list[str]) -> Plot:
    low, high = _range(measure)
    step = _step(low, high)
    ticks = _ticks(low, high, step)
    low, high = ticks[0], ticks[-1]  # the axis starts and ends at a tick
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(labels), 1)

    def x(run: int) -> float:
        return LEFT + (run + 0.5) * inner_w / count

    def y(value: float) -> float:
        return TOP + inner_h - (value - low) / (high - low) * inner_h

    series = []
    for number, found in enumerate(measure.series):
        ordered = sorted(found.points)
        points = [
            PlotPoint(
                x=f"{x(run):.1f}",
                y=f"{y(value):.1f}",
                title=f"{found.label}: {measure.field} = {_number(value)} ({labels[run]})",
            )
            for run, value in ordered
        ]
        series.append(
            PlotSeries(
                label=found.label,
                colour=PALETTE[number % len(PALETTE)],
                line=" ".join(f"{p.x},{p.y}" for p in points),
                points=points,
                legend_y=TOP + 4 + number * 16 if number < LEGEND else None,
            )
        )
    return Plot(
        field=measure.field,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=TOP + inner_h,
        x_ticks=[Tick(at=f"{x(run):.1f}", label=label) for run, label in enumerate(labels)],
        y_ticks=[Tick(at=f"{y(value):.1f}", label=_number(value)) for value in ticks],
        series=series,
        unnamed=max(0, len(series) - LEGEND),
    )


def plots(model_across: Across) -> list[Plot]:
    """A plot per measured field."""
    return [_plot(measure, model_across.labels) for measure in model_across.measures]
