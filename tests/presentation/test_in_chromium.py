"""The HTML report as a browser reads it: Debian's Chromium, headless, loads the pool
example's report, and the page it builds holds the instances table and the script."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from precip_repro.loading import load_run
from precip_repro.report import write_report
from tests.presentation.dom import html_tree
from tests.test_examples import EXAMPLES, run_example

CHROMIUM = shutil.which("chromium")


def dump_dom(page: Path, profile: Path) -> str:
    """The document Chromium built from ``page``, serialised: one browser start."""
    assert CHROMIUM, "the tests need Debian's chromium: `make test` installs it as root"
    flags = [
        "--headless",
        "--disable-gpu",
        f"--user-data-dir={profile}",  # its own profile: nothing shared between runs
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the page fetches nothing; nor may Chromium
        *(["--no-sandbox"] if os.geteuid() == 0 else []),  # its sandbox refuses root
    ]
    done = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-3000:]
    return done.stdout


def test_chromium_shows_the_pool_examples_instances_with_facts_and_host_keys_and_its_script(
    store, tmp_path
):
    done = run_example("condor_pool.py", store)
    assert done.returncode == 0, done.stderr
    (run_dir,) = list(store.run_dirs())
    page = write_report(run_dir, tmp_path / "pool.html").path
    dom = html_tree(dump_dom(page, tmp_path / "profile"))

    view = load_run(run_dir)
    table = dom.by_id("instances")
    header = [th.text for th in table.find_all("th")]
    rows = [dict(zip(header, row, strict=True)) for row in table.rows()]
    assert [row["slot"].text for row in rows] == list(view.instances) == [
        "e1.p1.0", "e1.p2.0", "e1.p2.1"
    ]  # fmt: skip
    for row, inst in zip(rows, view.instances.values(), strict=True):
        assert row["instance"].text == inst.instance_ids[0]
        assert row["type"].text == "m1.large"
        assert inst.host_key and inst.host_key.startswith("SHA256:")
        assert row["host key"].text == inst.host_key
        facts = row["facts"]
        shown = dict(zip([dt.text for dt in facts.find_all("dt")],
                         [dd.text for dd in facts.find_all("dd")], strict=True))  # fmt: skip
        assert shown == {name: str(value) for name, value in inst.facts.items()}
        assert {"cpus", "hostname", "memory_kb", "os", "uname"} <= set(shown)

    script = EXAMPLES / "condor_pool.py"
    assert dom.by_id("script").text == script.read_text()
    assert dom.by_id("script-sha256").text == hashlib.sha256(script.read_bytes()).hexdigest()
    assert str(script) in dom.by_id("script-file").text


def test_chromium_shows_a_sweeps_parameters_results_and_plots_across_its_runs(store, tmp_path):
    from tests.helpers import record_sweep

    base = record_sweep(store, 1, 9)
    small = record_sweep(store, 1, 9, sweep_bytes=100_000)
    large = record_sweep(store, 1, 9, sweep_bytes=400_000)
    page = write_report(base, tmp_path / "sweep.html", vs=large, others=[small]).path
    dom = html_tree(dump_dom(page, tmp_path / "profile"))
    order = [e.attrs.get("id") for e in dom.iter() if e.attrs.get("id")]

    # What changed in what the runs were asked to do comes before anything it explains.
    changes = dom.by_id("parameter-changes")
    assert [li.text for li in changes.find_all("li")] == [
        "SWEEP_BYTES 200000 → 400000 (default → environment)"
    ]
    assert order.index("parameter-changes") < order.index("parameters") < order.index("instances")
    assert dom.by_id("comparison").text.splitlines()[2].startswith("parameter SWEEP_BYTES")
    shown = {row[0].text: (row[1].text, row[2].text) for row in dom.by_id("parameters").rows()}
    assert shown == {"argv": ("1 9", "command line"), "SWEEP_BYTES": ("200000", "default")}

    # The run's own notes: a row each, their fields as columns, numbers as recorded.
    notes = [fields for _, _, fields in load_run(base).notes]
    results = dom.by_id("results")
    header = [th.text for th in results.find_all("th")]
    assert header[0] == "note" and {"bytes", "seconds", "slot", "instance_type"} <= set(header)
    rows = [dict(zip(header, (td.text for td in row), strict=True)) for row in results.rows()]
    assert [row["bytes"] for row in rows] == [str(fields["bytes"]) for fields in notes]
    assert [row["seconds"] for row in rows] == [repr(fields["seconds"]) for fields in notes]

    # Across the three runs (the --vs run, then the others): one table, one plot per
    # numeric field, a line per note with a point per run.
    assert len(dom.by_id("across").rows()) == 18
    plots = {svg.attrs["data-field"]: svg for svg in dom.find_all("svg")
             if svg.attrs.get("class") == "plot"}  # fmt: skip
    assert list(plots) == ["bytes", "input_bytes", "level", "seconds"]
    sizes = plots["input_bytes"]
    series = [g for g in sizes.find_all("g") if g.attrs.get("class") == "series"]
    assert len(series) == 6  # two levels on three instance types
    for line in series:
        points = line.find_all("circle")
        assert len(points) == 3
        titles = [c.find_all("title")[0].text for c in points]
        assert [t.split(" = ")[1].split(" ")[0] for t in titles] == ["200000", "400000", "100000"]
        heights = [float(c.attrs["cy"] or "nan") for c in points]
        assert heights[1] < heights[0] < heights[2]  # larger is higher up the page
        xs = [float(c.attrs["cx"] or "nan") for c in points]
        assert xs == sorted(xs)  # the runs in the order given
    labels = [t.text for t in sizes.find_all("text") if t.attrs.get("transform")]
    assert labels == ["SWEEP_BYTES=200000", "SWEEP_BYTES=400000", "SWEEP_BYTES=100000"]
