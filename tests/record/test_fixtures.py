"""Sample records of every format version stay readable, with the digests they had."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from precip_repro.record import LogReader, RunStore, payload_of, recover, verify
from precip_repro.record import events as events_module
from precip_repro.record import lines as lines_module
from precip_repro.record.events import upgraded
from precip_repro.record.payloads import PAYLOADS
from precip_repro.record.store import EVENTS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "records"


def digests(version: str) -> dict[str, str]:
    lines = (FIXTURES / version / "DIGESTS").read_text().splitlines()
    return dict(line.split() for line in lines)


@pytest.mark.parametrize("run_id, digest", sorted(digests("v1").items()))
def test_a_v1_sample_verifies_with_the_digest_it_was_written_with(run_id, digest):
    run_dir = FIXTURES / "v1" / run_id
    verdict = verify(run_dir, digest=digest)
    assert verdict.state == "intact", verdict.reason
    for event in LogReader(run_dir / EVENTS):
        assert event.line()  # re-serialises to the same canonical bytes
        payload = payload_of(event)
        assert type(payload) is PAYLOADS[event.type]


def test_a_torn_v1_sample_is_abandoned_and_recovers(tmp_path):
    (torn,) = (FIXTURES / "v1").glob("*-torn-v1-*")
    copy = tmp_path / torn.name
    shutil.copytree(torn, copy)
    assert verify(copy).state == "abandoned"
    assert recover(copy).action == "finished"
    assert verify(copy).state == "intact"


def test_the_fixture_store_resolves_runs_by_prefix():
    store = RunStore(FIXTURES / "v1")
    (sample,) = (run_id for run_id in digests("v1") if "-sample-" in run_id)
    assert store.resolve(sample[:-5]).name == sample


def test_a_v1_sample_with_a_blob_withheld_later_verifies_without_it():
    (withheld,) = (run_id for run_id in digests("v1") if "-withheld-" in run_id)
    run_dir = FIXTURES / "v1" / withheld
    removed = [e.data["sha256"] for e in LogReader(run_dir / EVENTS) if e.type == "blob.withheld"]
    assert len(removed) == 2  # the script and the file, both holding the secret
    assert not any((run_dir / "objects" / sha[:2] / sha[2:]).exists() for sha in removed)
    assert verify(run_dir).state == "intact"


def test_a_signed_v1_sample_verifies_under_its_signer_with_openssh_and_with_us(tmp_path):
    import subprocess

    from precip_repro.record.trusted import TrustedKeys

    (signed,) = (run_id for run_id in digests("v1") if "-signed-" in run_id)
    run_dir, signer = FIXTURES / "v1" / signed, FIXTURES / "v1" / "SIGNER.pub"
    verdict = verify(run_dir, digest=digests("v1")[signed], signers=TrustedKeys.load(signer))
    assert verdict.state == "intact", verdict.reason
    assert verdict.signer_name == "fixture@precip-repro"
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("fixture@precip-repro " + signer.read_text())
    with (run_dir / "checkpoint").open("rb") as checkpoint:
        done = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "fixture@precip-repro",
             "-n", "precip-repro", "-s", str(run_dir / "checkpoint.sig")],
            stdin=checkpoint, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_older_versions_are_lifted_through_the_upgrade_chain(monkeypatch):
    # v1 is the first version; pretend a v2 exists to prove the chain is applied in order.
    # The line parser holds its own binding of the version: it must pretend too, so that it
    # reads the v1 line as an older version to lift, not as the current one.
    monkeypatch.setattr(events_module, "FORMAT_VERSION", 2)
    monkeypatch.setattr(lines_module, "FORMAT_VERSION", 2)
    monkeypatch.setitem(
        events_module.UPGRADES, 1, lambda kind, data: (kind, {**data, "lifted_from": 1})
    )
    run_id = min(digests("v1"))
    first = next(iter(LogReader(FIXTURES / "v1" / run_id / EVENTS)))
    kind, data = upgraded(first)
    assert kind == "run.started"
    assert data["lifted_from"] == 1
