"""``precip-repro ls``: what tells runs apart, filters, and ``--json`` against its schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from precip_repro import ReplayOf
from precip_repro.cli import main
from precip_repro.record import Run, RunStore
from precip_repro.record.payloads import Note
from tests.helpers import record_sample_run

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "docs" / "json" / "ls.v1.schema.json").read_text()
)


def ls(capsys, store: RunStore, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--records", str(store.root), "ls", *args])
    return code, capsys.readouterr().out


def a_replay(
    store: RunStore, source: str, verdicts: dict[str, int], *, overall: str | None = None
) -> Run:
    """A replay's run as precip-replay leaves it: the source named, its verdict last."""
    run = Run.open(store, name="replay-sweep", replay_of=ReplayOf(run=source, digest="0" * 64))
    overall = overall or ("diverged" if verdicts.get("diverged") else "reproduced")
    run.append(Note(text=f"replay {overall}", fields={"replay_verdict": overall,
                                                      "steps": verdicts, "of": 40}))  # fmt: skip
    run.finish()
    return run


@pytest.fixture
def runs(store: RunStore, tmp_path: Path) -> dict[str, Run]:
    script = tmp_path / "sweep.py"
    script.write_text("print('sweep')\n")
    sweep = Run.open(store, name="sweep", script=script)
    sweep.finish()
    other = record_sample_run(store, name="other")
    bad = a_replay(store, sweep.id, {"diverged": 12, "reproduced": 28})
    good = a_replay(store, sweep.id, {"reproduced": 40})
    return {"sweep": sweep, "other": other, "bad": bad, "good": good}


def test_ls_shows_a_replays_verdict_its_source_the_script_digest_and_signer(capsys, store, runs):
    code, out = ls(capsys, store)
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    bad = rows[runs["bad"].id]
    assert "ok, diverged (12 diverged, 28 reproduced of 40)" in bad
    assert bad.rstrip().endswith(runs["sweep"].id)
    assert "ok, reproduced (40 reproduced of 40)" in rows[runs["good"].id]
    sweep = rows[runs["sweep"].id]
    assert " sweep.py " in sweep
    assert (runs["sweep"].digest or "")[:12] in sweep
    signature = runs["sweep"].signature
    assert signature is not None and signature.fingerprint.removeprefix("SHA256:")[:12] in sweep


def test_filters_and_limit(capsys, store, runs):
    def listed(*args: str) -> list[str]:
        return [line.split()[0] for line in ls(capsys, store, *args)[1].splitlines()[1:]]

    assert listed("--status", "diverged") == [runs["bad"].id]
    assert listed("--status", "reproduced") == [runs["good"].id]
    assert listed("--name", "replay") == [runs["good"].id, runs["bad"].id]
    assert listed("--script", "sweep.py") == [runs["sweep"].id]
    assert listed("--limit", "2") == [runs["good"].id, runs["bad"].id]
    assert len(listed("--since", "1h")) == 4
    assert ls(capsys, store, "--since", "2999-01-01")[1] == f"no runs in {store.root} match\n"


def test_a_bad_since_or_limit_is_one_line_and_exit_2(capsys, store, runs):
    assert main(["--records", str(store.root), "ls", "--since", "yesterday"]) == 2
    assert "--since 'yesterday': give an ISO date" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--records", str(store.root), "ls", "--limit", "0"])
    assert info.value.code == 2


def test_ls_json_validates_against_its_strict_schema(capsys, store, runs):
    code, out = ls(capsys, store, "--json")
    assert code == 0
    document = json.loads(out)
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    by_run = {row["run"]: row for row in document["runs"]}
    assert by_run[runs["bad"].id]["verdict"] == "diverged"
    assert by_run[runs["bad"].id]["replay_of"] == runs["sweep"].id
    assert by_run[runs["sweep"].id]["digest"] == runs["sweep"].digest
    assert by_run[runs["sweep"].id]["name"] == "sweep"
    # The schema is strict: a key it does not list is refused.
    document["runs"][0]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_show_names_a_copied_script_by_its_name_the_scripts_hash_and_the_replayed_run(
    capsys, store, tmp_path, local_experiment
):
    from precip_repro import finish_run

    script = tmp_path / "sweep.sh"
    script.write_text("#!/bin/sh\necho level $1\n")
    exp = local_experiment("named")
    exp.provision("default")
    exp.wait()
    exp.copy_and_run([], script, ["3"])
    exp.deprovision()
    run_id = exp.run_id
    finish_run()
    replay = a_replay(store, run_id, {"reproduced": 1})
    capsys.readouterr()
    assert main(["--records", str(store.root), "show", run_id]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"command\.finished +e1\.p1\.0 exit 0 in \S+: sweep\.sh 3 → stdout level 3", out
    )
    assert main(["--records", str(store.root), "show", replay.id]) == 0
    assert f"; a replay of {run_id} (digest {'0' * 64})" in capsys.readouterr().out


def test_show_names_the_scripts_hash(capsys, store, runs):
    capsys.readouterr()
    assert main(["--records", str(store.root), "show", runs["sweep"].id]) == 0
    out = capsys.readouterr().out
    assert re.search(r"run\.started .*, script \S+sweep\.py \(sha256 [0-9a-f]{64}\)", out), out


def test_only_a_replays_own_note_gives_a_verdict_and_a_short_one_is_incomplete(capsys, store):
    plain = Run.open(store, name="mimic")
    plain.append(Note(text="looks like one", fields={"replay_verdict": "reproduced"}))
    plain.finish()
    short = a_replay(store, plain.id, {"reproduced": 3}, overall="incomplete")
    rows = {line.split()[0]: line for line in ls(capsys, store)[1].splitlines()[1:]}
    assert "reproduced" not in rows[plain.id]  # a script's note is not a replay's verdict
    assert "ok, incomplete (3 reproduced of 40)" in rows[short.id]
    listed = [
        line.split()[0] for line in ls(capsys, store, "--status", "incomplete")[1].splitlines()[1:]
    ]
    assert listed == [short.id]


def test_a_since_further_back_than_any_date_is_one_line(capsys, store, runs):
    assert main(["--records", str(store.root), "ls", "--since", "99999999d"]) == 2
    assert "further back than any date can be" in capsys.readouterr().err
