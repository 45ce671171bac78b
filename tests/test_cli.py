"""precip-repro CLI: each command, its exit statuses, and one clear line on bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from precip_repro.cli import main
from precip_repro.record import LogReader, Run, RunStore
from precip_repro.record.payloads import Note
from precip_repro.record.store import EVENTS
from tests.documents import valid
from tests.helpers import assert_nowhere_in, read_only, record_sample_run, record_script


def cli(capsys, store: RunStore, *args: str) -> tuple[int, str, str]:
    """The command's exit status and output: what was printed before it is not its own."""
    capsys.readouterr()
    code = main(["--records", str(store.root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_records_a_verified_run_and_prints_its_id_and_digest(capsys, store):
    code, out, _ = cli(capsys, store, "demo")
    assert code == 0
    (run_dir,) = list(store.run_dirs())
    assert f"recorded run {run_dir.name}" in out
    code, verify_out, _ = cli(capsys, store, "verify", run_dir.name)
    digest = verify_out.split("digest: ")[1].strip()
    assert f"digest  {digest}" in out
    assert "verify  intact" in out


def test_ls_lists_runs_newest_first_with_status_and_events(capsys, store):
    first = record_sample_run(store, name="first")
    second = Run.open(store, name="second")
    second.close()  # abandoned
    code, out, _ = cli(capsys, store, "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "RUN", "STATUS", "EVENTS", "DURATION", "SCRIPT", "DIGEST", "SIGNER", "REPLAY", "OF",
    ]  # fmt: skip
    assert lines[1].split()[:3] == [second.id, "abandoned", "1"]
    assert lines[2].split()[:3] == [first.id, "ok", "14"]
    assert lines[3] == "`precip-repro recover RUN` finishes an abandoned run as interrupted"


def test_ls_puts_a_foreign_directory_by_age_and_calls_a_non_event_log_unreadable(capsys, store):
    import os

    old = store.root / "copied-in"
    old.mkdir(parents=True)
    (old / EVENTS).write_text("not an event\n")
    os.utime(old / EVENTS, (0, 0))  # 1970: older than any run
    run = record_sample_run(store, name="fresh")
    code, out, _ = cli(capsys, store, "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:2] == [run.id, "ok"]
    assert lines[2].split()[:3] == ["copied-in", "unreadable", "?"]
    assert "`precip-repro verify RUN` says what is wrong" in out
    assert store.resolve("latest") == run.path


def test_latest_is_the_run_started_last_even_within_the_same_second(capsys, store):
    first = Run.open(store, name="zzz-first")  # its name sorts after the second's
    second = Run.open(store, name="aaa-second")
    for run in (first, second):
        run.finish()
    assert store.resolve("latest") == second.path
    lines = cli(capsys, store, "ls")[1].splitlines()
    assert [line.split()[0] for line in lines[1:3]] == [second.id, first.id]


def test_ls_of_an_empty_store_says_so(capsys, store):
    assert cli(capsys, store, "ls")[:2] == (0, f"no runs in {store.root}\n")


def test_show_prints_one_line_per_event(capsys, store):
    run = record_sample_run(store)
    code, out, _ = cli(capsys, store, "show", "latest")
    assert code == 0
    assert out.splitlines()[1].startswith("signature: SHA256:")
    body = out.splitlines()[2:]
    assert len(body) == 14
    assert "e1.p1.0 exit 0" in out and "/tmp/hello.sh" in out
    assert "run finished: ok" in body[-1]
    assert run.id in out


def test_show_stops_at_a_corrupt_line_and_says_where(capsys, store):
    run = record_sample_run(store)
    log = run.path / EVENTS
    lines = log.read_bytes().splitlines(keepends=True)
    log.chmod(0o644)
    log.write_bytes(b"".join([*lines[:4], b"garbage\n", *lines[5:]]))
    code, out, _ = cli(capsys, store, "show", run.id)
    assert code == 1
    assert "line 5: is not valid JSON" in out


def test_verify_exit_statuses_follow_the_states(capsys, store):
    ok = record_sample_run(store, name="ok")
    assert cli(capsys, store, "verify", ok.id)[0] == 0
    open_run = Run.open(store, name="open")
    code, out, _ = cli(capsys, store, "verify", open_run.id)
    assert (code, "open" in out) == (3, True)
    open_run.close()
    code, out, _ = cli(capsys, store, "verify", open_run.id)
    assert code == 3
    assert f"precip-repro recover {open_run.id}" in out
    log = ok.path / EVENTS
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    # inside a string value, so the line stays JSON and only its hash breaks (an offset
    # fixed in bytes lands elsewhere as the temp path's length changes)
    data[data.index(b"sample.py")] ^= 1
    log.write_bytes(bytes(data))
    code, out, _ = cli(capsys, store, "verify", ok.id)
    assert code == 1
    assert "corrupt" in out and "event seq 0 (line 1)" in out
    assert "what to do: " in out and str(ok.path) in out


def test_verify_checks_a_given_digest(capsys, store):
    run = record_sample_run(store)
    assert cli(capsys, store, "verify", run.id, "--digest", run.digest)[0] == 0
    assert cli(capsys, store, "verify", run.id, "--digest", "0" * 64)[0] == 1
    code, _, err = cli(capsys, store, "verify", run.id, "--digest", "abc")
    assert code == 2 and "64 hex digits" in err


def test_verify_signer_says_intact_and_signed_by_that_key_or_refuses(
    capsys, store, tmp_path, monkeypatch
):
    for name in ("alice", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@lab",
                        "-f", str(tmp_path / name)], check=True)  # fmt: skip
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(tmp_path / "alice"))
    signed = record_sample_run(store, name="signed")
    assert signed.signature is not None
    unsigned = Run.open(store, name="unsigned", sign=False)
    unsigned.finish()
    alice, mallory = str(tmp_path / "alice.pub"), str(tmp_path / "mallory.pub")
    code, out, _ = cli(capsys, store, "verify", signed.id, "--signer", alice)
    assert code == 0 and f"{signed.id}: intact" in out
    assert f"signed by alice@lab ({signed.signature.fingerprint}), a key in {alice}" in out
    code, out, _ = cli(capsys, store, "verify", signed.id, "--signer", mallory)
    assert code == 1 and f"{signed.id}: untrusted" in out
    assert f"signed by {signed.signature.fingerprint}, which is no key in {mallory}" in out
    code, out, _ = cli(capsys, store, "verify", unsigned.id, "--signer", alice)
    assert code == 1 and "intact but unsigned (it has no checkpoint.sig)" in out
    code, _, err = cli(capsys, store, "verify", signed.id, "--signer", str(tmp_path / "none"))
    assert code == 2 and f"--signer: cannot read the signer file {tmp_path / 'none'}" in err


def test_show_names_the_signers_fingerprint_or_unsigned(capsys, store):
    signed = record_sample_run(store, name="signed")
    assert signed.signature is not None
    unsigned = Run.open(store, name="unsigned", sign=False)
    unsigned.finish()
    out = cli(capsys, store, "show", signed.id)[1]
    assert f"signature: {signed.signature.fingerprint} (ssh-ed25519)" in out
    assert "signature: unsigned" in cli(capsys, store, "show", unsigned.id)[1]


def test_a_run_whose_key_cannot_sign_finishes_and_says_so_in_one_line(
    capsys, store, tmp_path, monkeypatch
):
    missing = tmp_path / "gone"
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(missing))
    script = tmp_path / "exp.py"
    script.write_text(
        "from precip_repro import LocalExperiment\n"
        "with LocalExperiment(name='unsigned') as exp:\n"
        "    exp.note('no instance needed')\n"
    )
    done = record_script(store, script)  # in a process of its own, as a user runs it
    assert done.returncode == 0, done.stderr
    says = f"the signing key {missing} does not exist; set PRECIP_SIGNING_KEY"
    assert f"  unsigned  {says}" in done.stdout
    assert sum(says in line for line in done.stderr.splitlines()) == 1  # the log says it once
    (run_dir,) = store.run_dirs()
    assert cli(capsys, store, "verify", run_dir.name)[1].splitlines()[1].endswith(", unsigned")


def test_verify_says_a_digest_read_mid_run_names_a_prefix_the_run_continues_past(capsys, store):
    run = Run.open(store, name="mid")
    run.append(Note(text="first"))
    mid_run = run.digest  # what `exp.digest` prints inside a script
    run.append(Note(text="second"))
    run.finish()
    code, out, _ = cli(capsys, store, "verify", run.id, "--digest", mid_run)
    assert code == 0, out
    assert f"{run.id}: intact" in out
    assert "names event seq 1 (note)" in out and "continues past it" in out
    assert "a prefix of this run" in out
    assert f"digest: {run.digest}" in out
    assert "corrupt" not in out and "restore" not in out


def test_ls_and_verify_call_a_finished_run_without_checkpoint_unsealed(capsys, store):
    run = record_sample_run(store, name="unsealed")
    (run.path / "checkpoint").unlink()
    code, out, _ = cli(capsys, store, "verify", run.id)
    assert code == 3 and f"{run.id}: unsealed" in out
    assert f"precip-repro recover {run.id}" in out
    code, out, _ = cli(capsys, store, "ls")
    assert out.splitlines()[1].split()[:2] == [run.id, "unsealed"]
    assert "writes the checkpoint" in out


def test_recover_finishes_an_abandoned_run(capsys, store):
    run = Run.open(store, name="crashed")
    run.append(Note(text="before the crash"))
    run.close()
    with (run.path / EVENTS).open("ab") as f:
        f.write(b'{"data":')
    code, out, _ = cli(capsys, store, "recover", run.id)
    assert code == 0
    assert "finished as interrupted after 2 intact events" in out
    assert "  signed by SHA256:" in out
    assert "torn tail (8 bytes)" in out
    assert cli(capsys, store, "verify", run.id)[0] == 0
    code, out, _ = cli(capsys, store, "recover", run.id)
    assert code == 0 and "nothing to do" in out


def test_recover_of_a_read_only_run_says_so_and_changes_nothing(capsys, store):
    finished = record_sample_run(store, name="finished")
    torn = Run.open(store, name="torn")
    torn.append(Note(text="before the crash"))
    torn.close()
    with (torn.path / EVENTS).open("ab") as f:
        f.write(b'{"data":')
    before = (torn.path / EVENTS).read_bytes()
    with read_only(store.root):
        code, out, _ = cli(capsys, store, "recover", finished.id)
        assert code == 0 and "already finished and intact; nothing to do" in out
        code, _, err = cli(capsys, store, "recover", torn.id)
    assert code == 3
    assert f"cannot open {torn.path / EVENTS} for writing to recover run {torn.id}" in err
    assert "nothing was changed" in err and "recover the copy" in err
    assert (torn.path / EVENTS).read_bytes() == before
    assert cli(capsys, store, "recover", torn.id)[0] == 0  # writable again: it recovers


def test_a_report_that_cannot_be_written_says_where_and_how_to_choose(capsys, store, tmp_path):
    run = record_sample_run(store)
    with read_only(store.root):
        code, _, err = cli(capsys, store, "report", run.id)
        assert code == 1
        default = store.root / "reports" / f"{run.id}.html"
        assert f"cannot write the report to {default}: Read-only file system" in err
        assert "choose where, with -o FILE" in err and "Errno" not in err
        code, out, _ = cli(capsys, store, "report", run.id, "-o", str(tmp_path / "r.html"))
    assert code == 0 and str(tmp_path / "r.html") in out


def test_cat_writes_a_blob_and_refuses_a_corrupted_one(capsysbinary, store):
    run = record_sample_run(store)
    content = b"#!/bin/sh\necho hello\n" * 300
    sha = hashlib.sha256(content).hexdigest()
    assert main(["--records", str(store.root), "cat", run.id, sha]) == 0
    assert capsysbinary.readouterr().out == content
    assert main(["--records", str(store.root), "cat", run.id, sha[:10]]) == 0
    assert capsysbinary.readouterr().out == content
    assert (
        main(["--records", str(store.root), "cat", run.id, hashlib.sha256(b"hello\n").hexdigest()])
        == 0
    )
    assert capsysbinary.readouterr().out == b"hello\n"  # inline output
    blob = run.path / "objects" / sha[:2] / sha[2:]
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    assert main(["--records", str(store.root), "cat", run.id, sha]) == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b""  # nothing unverified reaches stdout
    assert sha.encode() in captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "nope"], "no run 'nope'"),
        (["verify", "2026"], "matches 2 runs"),
        (["cat", "latest", "zz"], "not a sha256"),
        (["cat", "latest", "0000"], "refers to no blob 0000"),
        (["diff", "latest", "latest", "--tolerance", "nan"], "--tolerance must be a percentage"),
        (["diff", "latest", "latest", "--tolerance", "-1"], "--tolerance must be a percentage"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(capsys, store, args, message):
    record_sample_run(store, name="a")
    record_sample_run(store, name="b")
    code, _, err = cli(capsys, store, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_unknown_version_is_a_usage_error_naming_the_line(capsys, store):
    run = Run.open(store, name="future")
    run.close()
    import json

    from precip_repro.record.canonical import canonical

    last = json.loads((run.path / EVENTS).read_bytes())
    body = {k: v for k, v in last.items() if k != "hash"} | {"v": 9, "seq": 1, "prev": last["hash"]}
    body["hash"] = hashlib.sha256(canonical(body)).hexdigest()
    with (run.path / EVENTS).open("ab") as f:
        f.write(canonical(body) + b"\n")
    code, _, err = cli(capsys, store, "verify", run.id)
    assert code == 2
    assert "line 2: record format version 9" in err and "upgrade precip-repro" in err


def test_a_directory_that_is_not_a_run_is_named(capsys, store, tmp_path):
    code, _, err = cli(capsys, store, "show", str(tmp_path))
    assert code == 2 and "not a run" in err


def test_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for status in ("0  success", "1  corrupt", "2  usage", "3  incomplete"):
        assert status in out


def test_the_installed_console_script_runs(store):
    script = Path(sys.executable).parent / "precip-repro"
    done = subprocess.run(
        [str(script), "--records", str(store.root), "demo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "digest" in done.stdout
    done = subprocess.run(
        [str(script), "--records", str(store.root), "verify", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("precip-repro verify: error: no run 'nope'")


def test_a_secret_written_into_the_script_keeps_the_script_by_hash_only(capsys, store, tmp_path):
    secret = "literal-token-5150"
    script = tmp_path / "literal.py"
    script.write_text(
        "from precip_repro import LocalExperiment\n"
        "with LocalExperiment('literal') as exp:\n"
        f"    exp.secret('TOKEN', {secret!r})\n"
        "    exp.note('registered')\n"
    )
    done = record_script(store, script)
    assert done.returncode == 0, done.stderr
    assert "the record keeps its hash only" in done.stderr
    (run_dir,) = store.run_dirs()
    assert_nowhere_in(run_dir, secret)
    sha = hashlib.sha256(script.read_bytes()).hexdigest()
    assert cli(capsys, store, "verify", run_dir.name)[0] == 0
    code, out, err = cli(capsys, store, "cat", run_dir.name, sha[:12])
    assert code == 1 and out == ""
    assert f"keeps blob {sha} by hash only (holds secret TOKEN)" in err
    code, out, _ = cli(capsys, store, "report", run_dir.name, "--format", "md", "-o", str(tmp_path))
    assert "kept by hash only: holds secret TOKEN" in (tmp_path / f"{run_dir.name}.md").read_text()


def test_run_shows_a_failing_scripts_traceback_from_the_script_on(store, tmp_path):
    script = tmp_path / "fails.py"
    script.write_text(
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('fails')\n"
        "raise ValueError('boom')\n"
    )
    done = record_script(store, script)
    assert done.returncode == 1
    assert f'File "{script}", line 3, in <module>' in done.stderr
    assert "ValueError: boom" in done.stderr
    assert "runpy" not in done.stderr and "cli.py" not in done.stderr
    assert "(failed)" in done.stdout


def only_notes(store: RunStore) -> list[dict[str, Any]]:
    (run_dir,) = store.run_dirs()
    return [event.data for event in LogReader(run_dir / EVENTS) if event.type == "note"]


@pytest.mark.parametrize(
    "ending, code, text, fields",
    [
        ("raise ValueError('boom ' + token)", 1,
         "the script ended with an uncaught ValueError (at ends.py:5): boom ${secret:TOKEN}",
         {"ended": "failed", "error": {"type": "ValueError", "message": "boom ${secret:TOKEN}"},
          "at": "ends.py:5"}),
        ("sys.exit(3)", 3, "the script exited with status 3",
         {"ended": "failed", "exit_status": 3}),
        ("sys.exit('gave up')", 1, "the script exited: gave up",
         {"ended": "failed", "exit_status": 1, "message": "gave up"}),
        ("os.kill(os.getpid(), signal.SIGTERM)", 143, "interrupted by SIGTERM",
         {"ended": "interrupted", "signal": "SIGTERM"}),
    ],
)  # fmt: skip
def test_a_run_that_does_not_end_ok_records_why(store, tmp_path, ending, code, text, fields):
    script = tmp_path / "ends.py"
    script.write_text(
        "import os, signal, sys\n"
        "from precip_repro import LocalExperiment\n"
        "exp = LocalExperiment('ends')\n"
        "token = 'tok-' + '1234'; exp.secret('TOKEN', token)\n"
        f"{ending}\n"
    )
    done = record_script(store, script)
    assert done.returncode == code, done.stderr
    assert only_notes(store) == [{"text": text, "fields": fields}]
    assert main(["--records", str(store.root), "report", "latest", "--format", "md",
                 "-o", str(tmp_path / "r.md")]) == 0  # fmt: skip
    assert f"{fields['ended']}: {text}" in (tmp_path / "r.md").read_text()
    if code == 1 and "exit" in ending:
        assert "gave up" in done.stderr  # printed as Python prints it


def test_run_of_a_missing_script_or_a_directory_says_which_is_wrong(capsys, store, tmp_path):
    code, _, err = cli(capsys, store, "run", str(tmp_path / "gone.py"))
    assert code == 2 and f"script {tmp_path / 'gone.py'} does not exist" in err
    code, _, err = cli(capsys, store, "run", str(tmp_path))
    assert code == 2 and f"script {tmp_path} is a directory, not a Python file" in err
    assert not store.root.exists() or store.run_dirs() == []


def test_a_store_that_is_a_file_is_one_clear_line_for_every_reader(capsys, tmp_path):
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0::/root:/bin/sh\n")
    for command in (["ls"], ["show", "latest"], ["verify", "latest"]):
        capsys.readouterr()
        code = main(["--records", str(a_file), *command])
        _, err = capsys.readouterr()
        assert code == 2, command
        assert f"the store {a_file} is not a directory of runs (it is a file)" in err
        assert err.count("\n") == 1


def test_after_a_bad_blob_verify_names_the_last_event_before_the_one_that_refers_to_it(
    capsys, store
):
    import json

    run = record_sample_run(store, name="bad-blob")
    blob = min(p for p in (run.path / "objects").rglob("*") if p.is_file())
    sha = blob.parent.name + blob.name
    raw = (run.path / EVENTS).read_text().splitlines()
    first = json.loads(next(line for line in raw if sha in line))
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    code, out, _ = cli(capsys, store, "verify", run.id)
    assert code == 1 and f"{run.id}: corrupt" in out
    assert f"event seq {first['seq']} (line {first['seq'] + 1}) refers to a bad blob" in out
    assert f"last intact event: seq {first['seq'] - 1}, hash {first['prev']}" in out


def test_verify_signer_refuses_what_is_not_a_bounded_regular_file(capsys, store):
    run = record_sample_run(store, name="signed")
    code, _, err = cli(capsys, store, "verify", run.id, "--signer", "/dev/zero")
    assert code == 2 and "cannot use the signer file /dev/zero" in err


def test_diff_json_is_strict_json_whatever_numbers_the_runs_hold(capsys, store):
    import json

    from precip_repro.record.payloads import Note

    runs = []
    for best in (float("inf"), 1.5):
        run = Run.open(store, name=f"best-{best}")
        run.append(Note(text="result", fields={"best": best}))
        run.finish()
        runs.append(run)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    code, out, _ = cli(capsys, store, "diff", runs[0].id, runs[1].id, "--json")
    assert code == 1
    document = json.loads(out, parse_constant=refuse)
    assert valid("diff", out) == document  # its strict schema (docs/json/diff.v1.schema.json)
    (note,) = document["run"]
    assert note["a"]["fields"]["best"] == {"$float": "Infinity"}
    assert note["b"]["fields"]["best"] == 1.5


def test_a_damaged_copy_given_by_its_path_is_named_by_that_path(capsys, store, tmp_path):
    import shutil

    run = record_sample_run(store, name="original")
    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    (copy / "checkpoint").chmod(0o644)
    (copy / "checkpoint").write_text("{}\n")
    code, _, err = cli(capsys, store, "diff", str(copy), run.id)
    assert code == 3
    assert f"{copy} (run {run.id}) is corrupt, not intact" in err
    assert f"`precip-repro verify {copy}` says more" in err
