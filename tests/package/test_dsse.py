"""The attestation's DSSE envelope is signed with the run's own ssh key — a key file of any
type precip-repro signs with, or one only ssh-agent holds — and checks with
securesystemslib given nothing but the public key OpenSSH publishes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from precip_repro.exceptions import PackageTampered
from precip_repro.package.dsse import verify_envelope
from precip_repro.package.exporting import attest_run
from tests.helpers import make_key, record_sample_run, sign_through_agent

SCHEMES = {"ed25519": "ed25519", "rsa": "rsa-pkcs1v15-sha256", "ecdsa": "ecdsa-sha2-nistp256"}


def their_key(public: Path, kind: str) -> SSlibKey:
    """The key as a reviewer builds it: from the .pub file, its id as ssh-keygen prints it."""
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    crypto = load_ssh_public_key(public.read_bytes())
    return SSlibKey.from_crypto(crypto, keyid=fingerprint, scheme=SCHEMES[kind])


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_an_attestation_signed_with_a_key_file_verifies_with_securesystemslib(
    store, tmp_path, monkeypatch, kind
):
    key = make_key(tmp_path / "alice", kind=kind)
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    run = record_sample_run(store)
    document = json.loads(attest_run(run.path))
    envelope = Envelope.from_dict(document)
    public = key.with_name("alice.pub")
    assert list(envelope.verify([their_key(public, kind)], 1))
    statement = json.loads(envelope.payload)
    names = {subject["name"] for subject in statement["subject"]}
    assert {"events.jsonl", "checkpoint", "checkpoint.sig"} <= names
    assert any(name.startswith("objects/") for name in names)


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_an_attestation_signed_through_ssh_agent_verifies(
    store, tmp_path, monkeypatch, ssh_agent, kind
):
    key = sign_through_agent(tmp_path, ssh_agent, monkeypatch, kind)
    run = record_sample_run(store)
    envelope = Envelope.from_dict(json.loads(attest_run(run.path)))
    assert list(envelope.verify([their_key(key.with_name("alice.pub"), kind)], 1))


def test_a_changed_statement_does_not_verify(store, tmp_path, monkeypatch):
    key = make_key(tmp_path / "alice")
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    run = record_sample_run(store)
    document = json.loads(attest_run(run.path))
    import base64

    payload = base64.b64decode(document["payload"]).replace(b"events.jsonl", b"events.jsonX")
    forged = dict(document, payload=base64.b64encode(payload).decode())
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(json.dumps(forged))).verify(
            [their_key(key.with_name("alice.pub"), "ed25519")], 1
        )
    line = key.with_name("alice.pub").read_text()
    with pytest.raises(PackageTampered, match="does not check"):
        verify_envelope(forged, line, path="attestation.intoto.jsonl")
    assert verify_envelope(document, line, path="attestation.intoto.jsonl")
