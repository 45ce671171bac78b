"""A benchmark sweep replayed and diffed with declared expectations, on real local instances:
timings within the declared tolerance are equivalent; a changed compressed size is not."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from precip_repro import Rule, finish_run
from precip_repro.cli import main as precip_repro
from precip_repro.record import LogReader, RunStore
from precip_repro.record.store import EVENTS
from replay.cli import main as replay

TYPES = ("m1.small", "m1.medium", "m1.large")
LEVELS = (1, 6, 9)
RULES = """\
[[numbers]]
name = "timings"
relative = 0.10
pattern = 'in ([0-9.]+) s'

[[numbers]]
name = "note timings"
field = "seconds"
relative = 0.10
"""


def sweep_command(level: int) -> str:
    # The size is the same on every rerun; the "seconds" differ a little every time
    # (1.00 followed by the clock's nanoseconds): what a timing does.
    return (
        f"size=$(gzip -{level} -c /opt/data-{level} | wc -c); secs=1.00$(date +%N); "
        f'echo "level {level}: $size bytes in $secs s" | tee /tmp/result-{level}.txt'
    )


def make_image(root: Path, *, changed: int | None = None) -> Path:
    (root / "opt").mkdir(parents=True)
    for level in LEVELS:
        text = "".join(f"sample {n} of the sweep's input\n" for n in range(2000))
        if level == changed:
            text += "one more line that compresses to another size\n"
        (root / "opt" / f"data-{level}").write_text(text)
    return root


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    return {t: make_image(tmp_path / "images" / t) for t in TYPES}


def record_sweep(local_experiment: Any, images: dict[str, Path], got: Path, *,
                 declare: bool = False) -> str:  # fmt: skip
    got.mkdir()
    exp = local_experiment("sweep")
    if declare:
        exp.expect(
            Rule.numbers(relative=0.1, pattern=r"in ([0-9.]+) s", name="timings"),
            Rule.numbers(relative=0.1, field="seconds", name="note timings"),
        )
    for kind in TYPES:
        exp.provision(str(images[kind]), instance_type=kind, tags=[kind])
    exp.wait()
    for level in LEVELS:
        _, outs, _ = exp.run([], sweep_command(level))
        exp.get([], f"/tmp/result-{level}.txt", got / f"result-{level}.txt")
        for kind, out in zip(TYPES, outs, strict=True):
            found = re.fullmatch(r"level \d: (\d+) bytes in ([0-9.]+) s\n", out)
            assert found is not None, out
            size, seconds = found.groups()
            exp.note("compressed", type=kind, level=level, bytes=int(size), seconds=float(seconds))
    exp.deprovision()
    run_id = exp.run_id
    finish_run()
    return str(run_id)


def steps_of(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    return [e.data for e in LogReader(store.root / run_id / EVENTS) if e.type == "replay.step"]


def forget_replays(store: RunStore, source: str) -> None:
    for run_dir in store.run_dirs():
        if run_dir.name != source:
            shutil.rmtree(run_dir)


def replay_of(store: RunStore, source: str) -> str:
    (found,) = [p.name for p in store.run_dirs() if p.name != source]
    return found


def test_the_sweep_replays_equivalent_within_its_declared_timings_and_a_changed_size_diverges(
    store, tmp_path, capsys, local_experiment, images
):
    source = record_sweep(local_experiment, images, tmp_path / "got")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    base = [source, "--records", str(store.root), "--to", "local", "--max-gap", "0"]

    # Without rules, timings alone make it diverge — and it says which rule would declare it.
    assert replay([*base, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "diverged" and document["equivalence"] == "diverged"
    run_steps = [s for s in document["steps"] if s["method"] == "run"]
    assert all(s["verdict"] == "diverged" for s in run_steps)
    hints = [d["hint"] for s in run_steps for d in s["differences"]]
    assert hints and all(h.startswith("only numbers differ") for h in hints)
    forget_replays(store, source)

    # With the rules file: every step reproduced, the runs' and gets' equivalent, each
    # covered difference listed with its rule.
    assert replay([*base, "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"EQUIVALENT: all \d+ steps reproduced; 6 within declared rules \(timings\)",
                     out), out  # fmt: skip
    assert "expected: timings" in out
    verdicts = {
        (s["method"], s["source_call"]): s["verdict"]
        for s in steps_of(store, replay_of(store, source))
    }
    assert {v for (m, _), v in verdicts.items() if m in ("run", "get")} == {"equivalent"}
    assert {v for (m, _), v in verdicts.items() if m not in ("run", "get")} == {"identical"}

    # One compressed size changed, on the line of a timing the rules cover: diverged, at
    # that step (and the file holding that line), not hidden by the timing rule.
    changed = make_image(tmp_path / "images" / "changed", changed=9)
    mapping = tmp_path / "map.toml"
    new_images = {**images, TYPES[2]: changed}
    mapping.write_text(
        "[images]\n" + "".join(f'"{images[t]}" = "{new_images[t]}"\n' for t in TYPES)
    )
    forget_replays(store, source)
    assert replay([*base, "--rules", str(rules), "--map", str(mapping)]) == 1
    out = capsys.readouterr().out
    diverged = [s for s in steps_of(store, replay_of(store, source)) if s["verdict"] == "diverged"]
    assert [s["method"] for s in diverged] == ["run", "get"]
    (difference,) = [d for d in diverged[0]["differences"] if not d.get("covered_by")]
    assert difference["kind"] == "stdout" and difference["slot"] == "e1.p3.0"
    assert "level 9:" in difference["a"]
    assert re.search(r"DIVERGED at 2 step\(s\): #\d+ e1\.run 'size=\$\(gzip -9", out), out


def test_rules_the_script_declared_are_kept_in_the_record_and_judge_its_replay(
    store, tmp_path, capsys, local_experiment, images
):
    source = record_sweep(local_experiment, images, tmp_path / "got", declare=True)
    code = replay([source, "--records", str(store.root), "--to", "local", "--max-gap", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "EQUIVALENT: all" in out and "(timings)" in out


def test_two_sweeps_diff_equivalent_with_the_rules_file_and_different_without(
    store, tmp_path, capsys, local_experiment, images
):
    a = record_sweep(local_experiment, images, tmp_path / "got-a")
    b = record_sweep(local_experiment, images, tmp_path / "got-b")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    assert precip_repro(["--records", str(store.root), "diff", a, b]) == 1
    before = capsys.readouterr().out
    assert "equivalent" not in before and "expected:" not in before  # as before: no rules
    assert precip_repro(["--records", str(store.root), "diff", a, b, "--rules", str(rules)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^equivalent: \d+ difference\(s\), each covered by a declared rule$", out,
                     re.M), out  # fmt: skip
    assert "expected: note timings" in out and "expected: timings" in out
    assert precip_repro(["--records", str(store.root), "diff", a, b, "--rules", str(rules),
                         "--json"]) == 0  # fmt: skip
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "equivalent" and document["same"] is False
    assert [r["name"] for r in document["rules"]] == ["timings", "note timings"]
    notes = [d for d in document["run"] if d["kind"] == "note"]
    assert len(notes) == 9 and all(d["covered_by"] == ["note timings"] for d in notes)


def test_a_bad_rules_file_stops_diff_and_replay_before_anything_starts(store, tmp_path, capsys):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[numbers]]\nrelative = 0.1\nwithin = 3\n")
    assert (
        precip_repro(["--records", str(store.root), "diff", "x", "y", "--rules", str(rules)]) == 2
    )
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert f"{rules}, line 3: [[numbers]] #1: 'within' is not a key of a numbers rule" in err
    assert replay(["x", "--records", str(store.root), "--to", "local", "--rules", str(rules)]) == 2
    assert "line 3" in capsys.readouterr().err
