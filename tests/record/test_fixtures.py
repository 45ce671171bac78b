"""Sample records of every format version stay readable, with the digests they had."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import attrs
import pytest
import rfc8785

from precip_repro.record import LogReader, RunStore, payload_of, recover, verify
from precip_repro.record import events as events_module
from precip_repro.record.events import upgraded
from precip_repro.record.payloads import PAYLOADS, Note
from precip_repro.record.store import CHECKPOINT, EVENTS

FIXTURES = Path(__file__).parent.parent / "fixtures" / "records"


def digests(version: str) -> dict[str, str]:
    lines = (FIXTURES / version / "DIGESTS").read_text().splitlines()
    return dict(line.split() for line in lines)


@pytest.mark.parametrize(
    "version, run_id, digest",
    [(v, run_id, digest) for v in ("v1", "v2") for run_id, digest in sorted(digests(v).items())],
)
def test_a_sample_verifies_with_the_digest_it_was_written_with(version, run_id, digest):
    run_dir = FIXTURES / version / run_id
    verdict = verify(run_dir, digest=digest)
    assert verdict.state == "intact", verdict.reason
    assert verdict.version == int(version[1:])
    for event in LogReader(run_dir / EVENTS):
        assert event.line()  # re-serialises to the same canonical bytes
        payload = payload_of(event)
        assert type(payload) is PAYLOADS[event.type]


@pytest.mark.parametrize("run_dir", sorted((FIXTURES / "v2").glob("*-v2-*")), ids=lambda p: p.name)
def test_every_v2_line_and_checkpoint_re_derives_with_an_rfc8785_library(run_dir):
    lines = (run_dir / EVENTS).read_bytes().split(b"\n")
    for raw in lines[:-1]:  # the last is empty, or a torn tail
        event = json.loads(raw)
        assert rfc8785.dumps(event) == raw
        claimed = event.pop("hash")
        assert hashlib.sha256(rfc8785.dumps(event)).hexdigest() == claimed
    if (run_dir / CHECKPOINT).exists():
        checkpoint = (run_dir / CHECKPOINT).read_bytes()
        assert rfc8785.dumps(json.loads(checkpoint)) + b"\n" == checkpoint


def test_the_v2_sample_gives_numbers_back_as_numbers():
    (sample,) = (FIXTURES / "v2").glob("*-sample-v2-*")
    (note,) = (payload_of(e) for e in LogReader(sample / EVENTS) if e.data.get("text") == "numbers")
    assert isinstance(note, Note)
    fields = note.fields
    assert fields["mean"] == 4.919 and fields["count"] == 3 and fields["big"] == 2**60 + 1
    assert type(fields["whole"]) is float and math.copysign(1, fields["negative_zero"]) < 0
    assert math.isnan(fields["worst"]) and fields["best"] == math.inf and fields["huge"] == 1e21
    assert fields["looks_typed"] == {"$float": "1"}
    assert list(fields["keys"]) == ["a", "\U0001d11e", "\ufb01"]  # UTF-16 order


def test_the_v2_states_a_sample_shows():
    states = {path.name.split("-")[1]: verify(path) for path in (FIXTURES / "v2").glob("*-v2-*")}
    assert {name: v.state for name, v in states.items()} == {
        "sample": "intact", "torn": "abandoned", "recovered": "intact", "unsealed": "unsealed",
        "withheld": "intact", "parameters": "intact",
    }  # fmt: skip
    assert states["recovered"].blobs_checked == 4  # the torn tail's blob among them


def test_a_v1_run_is_recovered_in_v1(tmp_path):
    (torn,) = (FIXTURES / "v1").glob("*-torn-v1-*")
    copy = tmp_path / torn.name
    shutil.copytree(torn, copy)
    recover(copy)
    assert {event.v for event in LogReader(copy / EVENTS)} == {1}
    assert json.loads((copy / CHECKPOINT).read_bytes())["v"] == 1
    assert verify(copy).state == "intact"


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
    # Pretend a v3 exists to prove the chain is applied in order, from the version written.
    monkeypatch.setattr(events_module, "FORMAT_VERSION", 3)
    monkeypatch.setitem(
        events_module.UPGRADES, 2, lambda kind, data: (kind, {**data, "lifted_from": 2})
    )
    run_id = min(digests("v1"))
    first = next(iter(LogReader(FIXTURES / "v1" / run_id / EVENTS)))
    assert first.v == 1
    kind, data = upgraded(first)
    assert kind == "run.started"
    assert data["lifted_from"] == 2


def test_v1_data_shaped_like_a_typed_value_stays_the_users_through_the_upgrade():
    run_id = min(digests("v1"))
    first = next(iter(LogReader(FIXTURES / "v1" / run_id / EVENTS)))
    looks = attrs.evolve(first, data={**first.data, "argv": [], "x": {"$int": "1"}})
    assert upgraded(looks)[1]["x"] == {"$object": {"$int": "1"}}


def test_the_v2_parameters_sample_gives_each_parameter_back_typed_with_its_last_value():
    from precip_repro.loading import load_run

    (sample,) = (FIXTURES / "v2").glob("*-parameters-v2-*")
    view = load_run(sample)
    found = {p.name: (p.value, p.source) for p in view.parameters.values()}
    assert found == {
        "RATE": (2.0, "default"), "LABEL": ("fast", "default"), "WARM": (True, "environment"),
        "SORT_N": (500000, "environment"),  # declared twice: the last
    }  # fmt: skip
    assert type(found["RATE"][0]) is float and type(found["SORT_N"][0]) is int
    assert view.arguments == ["1", "9"]
