"""A numeric field plotted across runs: where its points go, its axes' round ticks, and a
legend that does not run off the page."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from precip_repro.presentation.model import Across, Measure, Series, Table
from precip_repro.presentation.plot import LEGEND, plots

EMPTY = Table(columns=[], numeric=[], rows=[])


def across(*series: Series, runs: int = 3) -> Across:
    labels = [f"run {n}" for n in range(runs)]
    return Across(runs=labels, labels=labels, table=EMPTY,
                  measures=[Measure(field="seconds", series=list(series))])  # fmt: skip


def test_points_go_left_to_right_by_run_and_up_by_value_within_the_axes():
    (plot,) = plots(across(Series(label="a", points=[(0, 1.0), (2, 3.0), (1, 2.0)])))
    (series,) = plot.series
    xs = [float(p.x) for p in series.points]
    ys = [float(p.y) for p in series.points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)
    assert all(plot.left < x < plot.right for x in xs)
    assert all(plot.top <= y <= plot.bottom for y in ys)
    assert series.line == " ".join(f"{p.x},{p.y}" for p in series.points)
    assert series.points[0].title == "a: seconds = 1 (run 0)"


def test_the_value_axis_starts_at_zero_and_ends_at_a_round_tick():
    (plot,) = plots(across(Series(label="a", points=[(0, 0.0123), (1, 0.0171)])))
    assert [tick.label for tick in plot.y_ticks] == ["0", "0.005", "0.01", "0.015", "0.02"]
    assert float(plot.y_ticks[-1].at) == plot.top  # the highest tick is the axis' end


def test_one_value_and_negative_values_still_make_an_axis():
    (flat,) = plots(across(Series(label="a", points=[(0, 0.0)]), runs=1))
    assert flat.y_ticks[0].label == "0" and len(flat.y_ticks) >= 2
    (negative,) = plots(across(Series(label="a", points=[(0, -5.0), (1, 5.0)])))
    labels = [float(tick.label) for tick in negative.y_ticks]
    assert labels[0] <= -5 and labels[-1] >= 5 and 0 in labels
    (tiny,) = plots(across(Series(label="a", points=[(0, 5e-324)]), runs=1))
    assert tiny.y_ticks


def test_series_past_the_legends_room_are_counted_not_drawn_off_the_page():
    many = [Series(label=f"s{n}", points=[(0, float(n))]) for n in range(LEGEND + 3)]
    (plot,) = plots(across(*many))
    assert plot.unnamed == 3
    assert [s.legend_y is None for s in plot.series].count(True) == 3
    assert max(s.legend_y or 0 for s in plot.series) < plot.height


@given(st.lists(st.floats(min_value=-1e12, max_value=1e12), min_size=1, max_size=8))
def test_every_value_lands_between_the_first_and_last_tick(values):
    points = [(n, value) for n, value in enumerate(values)]
    (plot,) = plots(across(Series(label="a", points=points), runs=len(values)))
    bottom, top = float(plot.y_ticks[0].at), float(plot.y_ticks[-1].at)
    for point in plot.series[0].points:
        assert top - 0.1 <= float(point.y) <= bottom + 0.1


def test_a_tiny_negative_value_lands_on_the_axis():
    # Found by the property above: dividing by a step again lost the lowest tick.
    (plot,) = plots(across(Series(label="a", points=[(0, -2.8451154324435255e-98)]), runs=1))
    bottom, top = float(plot.y_ticks[0].at), float(plot.y_ticks[-1].at)
    assert top - 0.1 <= float(plot.series[0].points[0].y) <= bottom + 0.1
