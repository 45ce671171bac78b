"""export: the pool example and its replay, recorded on the local cloud, become packages
that tools we did not write accept — roc-validator (Process Run Crate, offline), rocrate,
securesystemslib — the same bytes every time, with nothing withheld let in."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from rocrate.rocrate import ROCrate
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from precip_repro.exceptions import PackageRefused
from precip_repro.loading import load_run
from precip_repro.package.archive import FIXED_TIME
from precip_repro.package.exporting import export_run
from precip_repro.package.info import PackageInfo
from precip_repro.package.layout import ATTESTATION
from tests.helpers import assert_nowhere_in, make_key, record_sample_run
from tests.package.validator import validate_json, validate_text


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("which", ["source", "replay"])
def test_the_pool_and_its_replay_are_valid_process_run_crates_offline(
    pool, rocv_cache, info, tmp_path, which
):
    run_dir = pool.source_dir if which == "source" else pool.replay_dir
    export_run(run_dir, tmp_path / "pkg", info=info)
    export_run(run_dir, tmp_path / "pkg.zip", info=info)
    report = validate_json(tmp_path / "pkg", rocv_cache, tmp_path / "report.json")
    stats = report["statistics"]
    assert report["passed"] is True, report["issues"]
    assert report["issues"] == []
    assert "process-run-crate-0.5" in stats["profiles"]
    # Every check of the profile (and of RO-Crate 1.1 it builds on) ran: a context the
    # cache lacked would have skipped them, offline.
    assert report["skipped_checks"] == 0 and stats["total_skipped_checks"] == 0
    assert stats["total_checks"] == stats["total_passed_checks"] > 30
    assert stats["total_checks_by_severity"]["REQUIRED"] == stats["total_checks"]
    assert "cache miss" not in report["log"]
    zipped = validate_text(tmp_path / "pkg.zip", rocv_cache)
    assert zipped.returncode == 0, zipped.stdout + zipped.stderr
    assert "RO-Crate is a valid process-run-crate-0.5" in zipped.stdout
    assert "cache miss" not in zipped.stdout + zipped.stderr
    # The zip holds the directory's files, byte for byte.
    with zipfile.ZipFile(tmp_path / "pkg.zip") as zf:
        assert {name: zf.read(name) for name in zf.namelist()} == files_of(tmp_path / "pkg")


def test_the_crate_reads_back_with_rocrate_and_holds_every_command_and_transfer(
    pool, info, tmp_path
):
    export_run(pool.source_dir, tmp_path / "pkg.zip", info=info)
    crate = ROCrate(tmp_path / "pkg.zip")
    view = load_run(pool.source_dir)
    root = crate.root_dataset
    assert root["license"].id == "https://spdx.org/licenses/CC-BY-4.0"
    assert [a["name"] for a in root["author"]] == ["Alice Lab"]
    assert root["datePublished"] and root["identifier"] == pool.source
    actions = crate.get_by_type("CreateAction")
    commands = [c for call in view.calls for c in call.commands]
    moved = [f for call in view.calls for f in call.files]
    assert len(actions) == len(commands) + len(moved) > 0
    assert sorted(a["description"] for a in actions if "-command-" in a.id) == sorted(
        c.cmd for c in commands
    )
    (instrument,) = {a["instrument"].id for a in actions}
    app = crate.dereference(instrument)
    assert "SoftwareApplication" in app.type
    assert [p.id for p in app["hasPart"]] == ["experiment/condor_pool.py"]
    statuses = {a.properties()["actionStatus"]["@id"] for a in actions}
    assert statuses == {"http://schema.org/CompletedActionStatus"}
    for action in actions:
        assert action["location"].id.startswith("#instance-")
        assert action["startTime"] <= action["endTime"]
    # Each result, file or not, carries the sha256 of what it holds.
    for action in actions:
        for result in action.get("result") or []:
            assert len(result["sha256"]) == 64
    with zipfile.ZipFile(tmp_path / "pkg.zip") as zf:
        names = set(zf.namelist())
        for entity in crate.data_entities:
            assert entity.id in names
            if entity.id != ATTESTATION:
                assert entity["sha256"] == hashlib.sha256(zf.read(entity.id)).hexdigest()
    assert {e.id for e in crate.data_entities} == names - {"ro-crate-metadata.json"}


def test_the_same_run_gives_the_same_zip_bytes_wherever_it_is(pool, info, tmp_path):
    export_run(pool.source_dir, tmp_path / "a.zip", info=info)
    elsewhere = tmp_path / "elsewhere" / pool.source
    shutil.copytree(pool.source_dir, elsewhere)
    export_run(elsewhere, tmp_path / "b.zip", info=info)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {FIXED_TIME}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def test_the_attestation_verifies_with_securesystemslib_and_names_every_other_file(
    pool, info, tmp_path, precip_home
):
    export_run(pool.source_dir, tmp_path / "pkg", info=info)
    files = files_of(tmp_path / "pkg")
    document = json.loads(files[ATTESTATION])
    (published,) = precip_home.glob("precip_*.pub")
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(published)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    key = SSlibKey.from_crypto(
        load_ssh_public_key(published.read_bytes()), keyid=fingerprint, scheme="ed25519"
    )
    envelope = Envelope.from_dict(document)
    assert envelope.payload_type == "application/vnd.in-toto+json"
    assert set(envelope.verify([key], 1)) == {fingerprint}
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {
        name: hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name != ATTESTATION
    }
    predicate = statement["predicate"]
    external = predicate["buildDefinition"]["externalParameters"]
    assert external["script"]["path"].endswith("condor_pool.py")
    view = load_run(pool.source_dir)
    assert view.script is not None and external["script"]["sha256"] == view.script.sha256
    deps = predicate["buildDefinition"]["resolvedDependencies"]
    assert {"experiment/condor_pool.py", "default"} <= {d["name"] for d in deps}
    details = predicate["runDetails"]
    assert details["metadata"]["invocationId"] == pool.source
    assert details["metadata"]["startedOn"] < details["metadata"]["finishedOn"]
    checkpoint = json.loads(files["run/checkpoint"])
    assert details["byproducts"][0]["digest"] == {"sha256": checkpoint["digest"]}


def test_a_registered_secret_and_a_private_key_stay_out_of_the_package(
    local_experiment, store, tmp_path, info
):
    from precip_repro import finish_run

    secret = "s3cr3t-token-value-42"
    private = tmp_path / "id_test"
    make_key(private)
    settings = tmp_path / "settings.txt"
    settings.write_text(f"token={secret}\n")
    exp = local_experiment("secretive")
    exp.secret("TOKEN", secret)
    exp.provision("default", tags=["a"])
    exp.wait()
    exp.put(["a"], settings, "/root/settings.txt")
    exp.put(["a"], private, "/root/id_test")
    exp.run(["a"], "cat /root/settings.txt; echo done")
    exp.get(["a"], "/root/settings.txt", tmp_path / "back.txt")
    exp.deprovision()
    finish_run()
    (run_dir,) = list(store.run_dirs())
    export_run(run_dir, tmp_path / "pkg", info=info)
    body = private.read_text().splitlines()[1]
    assert_nowhere_in(tmp_path / "pkg", secret, body)
    got = [f for call in load_run(run_dir).calls for f in call.files if f.kind == "got"]
    assert got and got[0].content is not None and got[0].content.withheld


def test_an_unsigned_run_is_refused(store, tmp_path, info, monkeypatch):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(tmp_path / "no-such-key"))
    run = record_sample_run(store)
    assert run.signature is None
    with pytest.raises(PackageRefused, match="not signed"):
        export_run(run.path, tmp_path / "pkg", info=info)


def test_a_run_signed_by_another_key_than_the_one_at_hand_is_refused_naming_both(
    store, tmp_path, info, monkeypatch
):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "alice")))
    run = record_sample_run(store)
    assert run.signature is not None
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "bob")))
    with pytest.raises(PackageRefused, match=run.signature.fingerprint.replace("+", r"\+")):
        export_run(run.path, tmp_path / "pkg", info=info)
    assert not (tmp_path / "pkg").exists()


def test_a_damaged_run_is_refused(store, tmp_path, info, monkeypatch):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "alice")))
    run = record_sample_run(store)
    log = run.path / "events.jsonl"
    log.chmod(0o644)
    log.write_bytes(log.read_bytes().replace(b"hello", b"hellO", 1))
    with pytest.raises(PackageRefused, match="not intact"):
        export_run(run.path, tmp_path / "pkg.zip", info=info)
    assert not (tmp_path / "pkg.zip").exists()


def test_an_existing_directory_is_never_written_into(store, tmp_path, info, monkeypatch):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "alice")))
    run = record_sample_run(store)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mine.txt").write_text("keep me\n")
    with pytest.raises(PackageRefused, match="exists"):
        export_run(run.path, tmp_path / "pkg", info=info)
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["mine.txt"]


def test_the_package_info_names_the_license_the_authors_and_the_date(store, tmp_path, monkeypatch):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "alice")))
    run = record_sample_run(store)
    chosen = PackageInfo(
        license="https://example.org/my-license", name="Pool", date_published="2027-01-02"
    )
    export_run(run.path, tmp_path / "pkg", info=chosen)
    crate = ROCrate(tmp_path / "pkg")
    assert crate.root_dataset["license"].id == "https://example.org/my-license"
    assert crate.root_dataset["name"] == "Pool"
    assert crate.root_dataset["datePublished"] == "2027-01-02"
