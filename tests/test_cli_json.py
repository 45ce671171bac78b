"""``--json`` of verify, recover, gc and run: real outputs validated against their strict
schemas (docs/json/), the exit status unchanged, and run's document apart from the script's
own output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from precip_repro.cli import main
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import Run, RunStore
from precip_repro.record.payloads import Note
from precip_repro.record.store import EVENTS
from tests.documents import schema, valid
from tests.helpers import make_key, record_sample_run
from tests.test_leaks import LOCAL, killed

CONSOLE = Path(sys.executable).parent / "precip-repro"


def cli(capsys, store: RunStore, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--records", str(store.root), *args])
    return code, capsys.readouterr().out


def test_verify_json_of_an_intact_signed_run_with_a_prefix_claim(capsys, store):
    run = Run.open(store, name="mid")
    run.append(Note(text="first"))
    mid_run = run.digest
    run.append(Note(text="second"))
    run.finish()
    code, out = cli(capsys, store, "verify", run.id, "--digest", mid_run, "--json")
    assert code == 0
    document = valid("verify", out)
    assert document["state"] == "intact" and document["exit_status"] == 0
    assert document["digest"] == run.digest and document["last_intact_digest"] is None
    assert document["claim"] == {"digest": mid_run, "seq": 1, "prefix": True}
    assert document["signer"]["fingerprint"] == run.signature.fingerprint  # type: ignore[union-attr]
    assert document["events"] == 4 and document["status"] == "ok"
    assert document["fault"] is None


def test_verify_json_keeps_the_exit_status_of_corrupt_open_and_untrusted_runs(
    capsys, store, tmp_path
):
    damaged = record_sample_run(store, name="damaged")
    log = damaged.path / EVENTS
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    data[data.index(b"sample.py")] ^= 1
    log.write_bytes(bytes(data))
    code, out = cli(capsys, store, "verify", damaged.id, "--json")
    document = valid("verify", out)
    assert code == 1 == document["exit_status"]
    assert document["state"] == "corrupt" and document["digest"] is None
    assert document["fault"]["seq"] == 0 and document["fault"]["line"] == 1

    open_run = Run.open(store, name="open")
    code, out = cli(capsys, store, "verify", open_run.id, "--json")
    document = valid("verify", out)
    assert code == 3 == document["exit_status"] and document["state"] == "open"
    open_run.finish()

    signed = record_sample_run(store, name="signed")
    other = make_key(tmp_path / "mallory")
    code, out = cli(capsys, store, "verify", signed.id, "--signer", f"{other}.pub", "--json")
    document = valid("verify", out)
    assert code == 1 and document["state"] == "untrusted"
    assert document["digest"] == signed.digest


def test_recover_json_says_what_it_did(capsys, store):
    run = Run.open(store, name="crashed")
    run.append(Note(text="before the crash"))
    run.close()
    with (run.path / EVENTS).open("ab") as f:
        f.write(b'{"data":')
    code, out = cli(capsys, store, "recover", run.id, "--json")
    assert code == 0
    document = valid("recover", out)
    assert document["action"] == "finished" and document["events"] == 3
    assert document["torn_tail"]["size"] == 8
    assert document["signer"].startswith("SHA256:")
    code, out = cli(capsys, store, "recover", run.id, "--json")
    assert code == 0 and valid("recover", out)["action"] == "nothing"
    recovered = valid("recover", out)["digest"]
    assert recovered == valid("verify", cli(capsys, store, "verify", run.id, "--json")[1])["digest"]


def test_gc_json_lists_what_leaks_then_what_it_ended(capsys, store, tmp_path):
    code, out = cli(capsys, store, "gc", "--json")
    assert code == 0
    assert valid("gc", out) == {
        "version": 1, "store": str(store.root), "exit_status": 0, "unchecked": [],
        "leaks": [], "terminated": None,
    }  # fmt: skip
    run_id = killed(tmp_path, LOCAL, str(store.root))
    code, out = cli(capsys, store, "gc", "--json")
    document = valid("gc", out)
    assert code == 1 == document["exit_status"]
    assert [leak["run"] for leak in document["leaks"]] == [run_id, run_id]
    assert all(leak["actionable"] and leak["kind"] == "instance" for leak in document["leaks"])
    assert document["terminated"] is None
    code, out = cli(capsys, store, "gc", "--terminate", "--json")
    document = valid("gc", out)
    assert code == 0 == document["exit_status"]
    ended = document["terminated"]
    assert sorted(ended["ended"]) == sorted(leak["id"] for leak in document["leaks"])
    assert ended["failed"] == [] and "-gc-" in ended["run"]
    assert len(ended["digest"]) == 64
    assert [s for s in live_local_instances() if s.run == run_id] == []


SCRIPT = """
import subprocess, sys
from precip_repro import LocalExperiment
print("the script's own line")
subprocess.run(["echo", "a child's line"], check=True)
with LocalExperiment(name="reported") as exp:
    exp.note("done")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 4])
def test_run_json_file_leaves_the_scripts_output_alone(store, tmp_path, status):
    script = tmp_path / "reported.py"
    script.write_text(SCRIPT)
    report = tmp_path / "run.json"
    done = subprocess.run(
        [str(CONSOLE), "--records", str(store.root), "run", "--json", str(report),
         str(script), str(status)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == status, done.stderr
    assert done.stdout == "the script's own line\na child's line\n"
    document = valid("run", report.read_text())
    (run_dir,) = store.run_dirs()
    assert document["run"] == run_dir.name and document["path"] == str(run_dir)
    assert document["exit_status"] == status
    assert document["status"] == ("ok" if status == 0 else "failed")
    assert document["checkpointed"] and document["signer"].startswith("SHA256:")
    verified = valid("verify", cli_out(store, "verify", run_dir.name, "--json"))
    assert document["digest"] == verified["digest"]
    assert f"recorded run {run_dir.name}" in done.stderr  # for a person, beside the document


def cli_out(store: RunStore, *args: str) -> str:
    return subprocess.run(
        [str(CONSOLE), "--records", str(store.root), *args],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip


def test_run_json_to_stdout_moves_the_scripts_output_and_its_childrens_to_stderr(store, tmp_path):
    script = tmp_path / "reported.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [str(CONSOLE), "--records", str(store.root), "run", "--json", "-", str(script), "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = valid("run", done.stdout)  # stdout is the document alone
    assert document["status"] == "ok"
    assert "the script's own line\na child's line\n" in done.stderr


def test_run_json_to_a_file_that_cannot_be_written_fails_before_the_script_runs(
    capsys, store, tmp_path
):
    script = tmp_path / "reported.py"
    script.write_text(SCRIPT)
    where = tmp_path / "missing" / "run.json"
    code = main(["--records", str(store.root), "run", "--json", str(where), str(script), "0"])
    assert code == 2
    assert f"--json {where}: cannot write there" in capsys.readouterr().err
    assert list(store.run_dirs()) == []


def test_a_document_with_a_key_its_schema_does_not_list_is_refused(capsys, store):
    run = record_sample_run(store)
    document = json.loads(cli(capsys, store, "verify", run.id, "--json")[1])
    document["surprise"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema("verify"))


def test_ls_json_of_an_unsealed_run_validates(capsys, store):
    run = record_sample_run(store, name="unsealed")
    (run.path / "checkpoint").unlink()
    code, out = cli(capsys, store, "ls", "--json")
    assert code == 0
    assert [row["status"] for row in valid("ls", out)["runs"]] == ["unsealed"]
