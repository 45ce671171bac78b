"""import: a package enters a store only whole and as signed — a byte changed in any file
is refused naming that file — and then show, diff, report and precip-replay work on it."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precip_repro.cli import main as precip_repro
from precip_repro.exceptions import PackageTampered, PackageUntrusted, RunConflict
from precip_repro.package.exporting import export_run
from precip_repro.package.importing import import_package
from precip_repro.record import RunStore
from precip_repro.record.trusted import TrustedKeys
from replay.cli import main as replay
from tests.helpers import make_key, record_sample_run


@pytest.fixture(scope="module")
def package(pool, tmp_path_factory) -> Path:
    from precip_repro.package.info import PackageInfo

    out = tmp_path_factory.mktemp("package") / "pkg"
    export_run(pool.source_dir, out, info=PackageInfo(license="CC-BY-4.0"))
    return out


def package_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_an_imported_package_is_shown_diffed_reported_and_replayed(pool, package, tmp_path, capsys):
    other = RunStore(tmp_path / "theirs")
    done = import_package(package, other)
    assert done.verdict.state == "intact" and not done.already
    assert done.path == other.root / pool.source
    records = ["--records", str(other.root)]
    assert precip_repro(["show", pool.source, *records]) == 0
    assert "bootstrap.sh" in capsys.readouterr().out
    assert precip_repro(["report", pool.source, *records, "-o", str(tmp_path / "r.html")]) == 0
    shutil.copytree(pool.replay_dir, other.root / pool.replay)
    assert precip_repro(["diff", pool.source, pool.replay, *records]) in (0, 1)
    capsys.readouterr()
    assert replay([pool.source, *records, "--to", "local", "--dry-run"]) == 0
    assert "copy_and_run" in capsys.readouterr().out


def test_the_zip_imports_as_the_directory_does_and_again_changes_nothing(pool, package, tmp_path):
    from precip_repro.package.archive import write_zip
    from precip_repro.package.layout import Member

    members = [
        Member.of_bytes(name, (package / name).read_bytes()) for name in package_files(package)
    ]
    write_zip(tmp_path / "pkg.zip", members)
    store = RunStore(tmp_path / "records")
    first = import_package(tmp_path / "pkg.zip", store)
    again = import_package(package, store)
    assert not first.already and again.already and again.path == first.path


# One byte of any file of the package (hypothesis picks the file, the byte and its new
# value): import refuses, naming that file, and the store stays empty.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_one_byte_changed_in_any_file_is_refused_naming_the_file(package, tmp_path, data):
    names = package_files(package)
    name = data.draw(st.sampled_from(names))
    copy = Path(tempfile.mkdtemp(dir=tmp_path)) / "pkg"  # tmp_path is shared by the examples
    shutil.copytree(package, copy)
    target = copy / name
    raw = bytearray(target.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    target.write_bytes(bytes(raw))
    store = RunStore(copy.parent / "store")
    with pytest.raises(PackageTampered) as refused:
        import_package(copy, store)
    assert refused.value.path == Path(name), str(refused.value)
    assert name in str(refused.value)
    assert list(store.run_dirs()) == []


def test_every_file_of_the_package_is_covered(package, tmp_path):
    # The loop hypothesis samples from, walked whole once: the last byte of each file.
    for name in package_files(package):
        copy = tmp_path / name.replace("/", "_")
        shutil.copytree(package, copy)
        target = copy / name
        raw = bytearray(target.read_bytes())
        raw[-1] ^= 0x01
        target.write_bytes(bytes(raw))
        with pytest.raises(PackageTampered) as refused:
            import_package(copy, RunStore(tmp_path / "store"))
        assert refused.value.path == Path(name), str(refused.value)


def test_a_file_added_or_removed_is_refused_naming_it(package, tmp_path):
    added = tmp_path / "added"
    shutil.copytree(package, added)
    (added / "run" / "objects" / "ab").mkdir(exist_ok=True)
    (added / "notes.txt").write_text("unsigned\n")
    with pytest.raises(PackageTampered, match=r"notes\.txt") as refused:
        import_package(added, RunStore(tmp_path / "store"))
    assert refused.value.path == Path("notes.txt")
    removed = tmp_path / "removed"
    shutil.copytree(package, removed)
    (removed / "report.html").unlink()
    with pytest.raises(PackageTampered, match=r"report\.html"):
        import_package(removed, RunStore(tmp_path / "store"))


def test_a_changed_zip_member_and_a_hostile_name_are_refused(package, tmp_path):
    with zipfile.ZipFile(tmp_path / "changed.zip", "w") as zf:
        for name in package_files(package):
            data = (package / name).read_bytes()
            zf.writestr(name, data.replace(b"ok", b"OK") if name == "run/events.jsonl" else data)
    with pytest.raises(PackageTampered, match=r"run/events\.jsonl"):
        import_package(tmp_path / "changed.zip", RunStore(tmp_path / "store"))
    with zipfile.ZipFile(tmp_path / "climbs.zip", "w") as zf:
        zf.writestr("../outside", b"x")
    with pytest.raises(PackageTampered, match=r"\.\./outside"):
        import_package(tmp_path / "climbs.zip", RunStore(tmp_path / "store"))
    assert not (tmp_path / "outside").exists()


def test_another_run_by_the_same_id_is_refused(package, pool, tmp_path):
    store = RunStore(tmp_path / "records")
    shutil.copytree(pool.replay_dir, store.root / pool.source)
    with pytest.raises(RunConflict, match=pool.source):
        import_package(package, store)


def test_import_with_signer_refuses_a_run_another_key_signed(package, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    with pytest.raises(PackageUntrusted, match="signed"):
        import_package(
            package,
            RunStore(tmp_path / "records"),
            signers=TrustedKeys.load(stranger.with_name("stranger.pub")),
        )


def test_the_cli_exports_and_imports_with_one_line_errors(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(make_key(tmp_path / "alice")))
    run = record_sample_run(store)
    capsys.readouterr()  # the recording's log lines
    records = ["--records", str(store.root)]
    out = tmp_path / "pkg.zip"
    assert precip_repro(["export", run.id, *records, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "license" in err and len(err.strip().splitlines()) == 1
    code = precip_repro(
        ["export", run.id, *records, "-o", str(out), "--license", "MIT",
         "--author", "Alice Lab <alice@example.org>"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert f"exported {run.id}" in capsys.readouterr().out
    theirs = ["--records", str(tmp_path / "theirs")]
    signer = ["--signer", str(tmp_path / "alice.pub")]
    assert precip_repro(["import", str(out), *theirs, *signer]) == 0
    shown = capsys.readouterr().out
    assert "intact" in shown and "signed by" in shown
    stranger = make_key(tmp_path / "stranger")
    code = precip_repro(["import", str(out), "--records", str(tmp_path / "y"),
                         "--signer", str(stranger.with_name("stranger.pub"))])  # fmt: skip
    assert code == 1 and "untrusted" not in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf, zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for name in zf.namelist():
            data = zf.read(name)
            bad.writestr(name, data.replace(b"<html", b"<HTML") if name == "report.html" else data)
    assert (
        precip_repro(["import", str(tmp_path / "bad.zip"), "--records", str(tmp_path / "x")]) == 1
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "report.html" in err and "altered after signing" in err
    assert precip_repro(["attest", run.id, *records, "-o", str(tmp_path / "a.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes().count(b"\n") == 1
