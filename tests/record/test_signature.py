"""A run's signature as a verifier reads it: what OpenSSH signs is read as ours, and a
signature that does not match its checkpoint, in any byte, is never taken as good."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sshsig.sshsig import ssh_dearmor_sshsig, ssh_enarmor_sshsig

from precip_repro.record import Run, RunStore, verify
from precip_repro.record.payloads import Note
from precip_repro.record.signature import NAMESPACE, SIGNATURE
from precip_repro.record.store import CHECKPOINT
from precip_repro.record.trusted import TrustedKeys
from tests.helpers import allowed_signers, record_sample_run, rewrite_notes, ssh_keygen_verify


def test_openssh_refuses_the_signature_once_the_checkpoint_changes(tmp_path, store, signing_key):
    run = record_sample_run(store)
    signers = allowed_signers(tmp_path / "allowed", "alice@lab", signing_key)
    checkpoint = run.path / CHECKPOINT
    checkpoint.chmod(0o644)
    checkpoint.write_bytes(checkpoint.read_bytes().replace(b'"events":14', b'"events":13'))
    assert ssh_keygen_verify(run.path, signers, "alice@lab").returncode != 0


def test_a_signature_ssh_keygen_made_is_read_as_ours(tmp_path, store, signing_key):
    run = Run.open(store, name="unsigned", sign=False)
    run.finish()
    assert not (run.path / SIGNATURE).exists()
    with (run.path / CHECKPOINT).open("rb") as checkpoint:
        made = subprocess.run(
            ["ssh-keygen", "-Y", "sign", "-n", NAMESPACE, "-f", str(signing_key)],
            stdin=checkpoint, capture_output=True, check=True,
        )  # fmt: skip
    (run.path / SIGNATURE).write_bytes(made.stdout)
    verdict = verify(run.path, signers=TrustedKeys.load(signing_key.with_suffix(".pub")))
    assert verdict.state == "intact", verdict.reason
    assert "signed by alice@lab (SHA256:" in verdict.reason


def test_a_rewrite_that_keeps_the_old_signature_is_corrupt(tmp_path, store, signing_key):
    run = Run.open(store, name="result")
    run.append(Note(text="accuracy 0.71", fields={}))
    run.finish()
    rewrite_notes(run.path, "0.71", "0.93")
    verdict = verify(run.path)
    assert verdict.state == "corrupt"
    assert "does not verify against the checkpoint" in verdict.reason
    assert str(run.path / SIGNATURE) in verdict.reason


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_the_signature_is_never_intact(signed_run, tmp_path_factory, data):
    copy = tmp_path_factory.mktemp("sig") / signed_run.name
    shutil.copytree(signed_run, copy)
    sig = copy / SIGNATURE
    raw = bytearray(ssh_dearmor_sshsig(sig.read_bytes()))
    at = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    sig.chmod(0o644)
    sig.write_text(ssh_enarmor_sshsig(bytes(raw)))
    verdict = verify(copy)
    # A changed key type is a key we cannot check: no claim, so never a signer.
    uncheckable = verdict.signer is None and "cannot check" in verdict.reason
    assert verdict.state == "corrupt" or (verdict.state == "intact" and uncheckable)


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory) -> Path:
    store = RunStore(tmp_path_factory.mktemp("signed"))
    return record_sample_run(store).path
