"""The HTML report as a browser reads it: Debian's Chromium, headless, loads the pool
example's report, and the page it builds holds the instances table and the script."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from precip_repro.report import write_report
from precip_repro.runview import load_run
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
