"""Signing a finished run: which key signs (a file, the precip key, one ssh-agent holds),
that OpenSSH accepts what it signs, and that a key that cannot sign never costs the run."""

from __future__ import annotations

import shutil

import pytest

from precip_repro.exceptions import SigningFailed
from precip_repro.record import recover, verify
from precip_repro.record.signature import NAMESPACE, SIGNATURE
from precip_repro.record.signing import load_signer
from precip_repro.record.store import CHECKPOINT
from precip_repro.record.trusted import TrustedKeys
from tests.helpers import (
    allowed_signers,
    make_key,
    record_sample_run,
    sign_through_agent,
    ssh_add,
    ssh_keygen_verify,
)


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_openssh_alone_verifies_a_finished_runs_signature(tmp_path, store, monkeypatch, kind):
    key = make_key(tmp_path / f"alice-{kind}", kind=kind)
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    run = record_sample_run(store)
    assert run.signature is not None and run.signing_problem is None
    done = ssh_keygen_verify(
        run.path, allowed_signers(tmp_path / "allowed", "alice@lab", key), "alice@lab"
    )
    assert done.returncode == 0, done.stderr
    assert f'Good "{NAMESPACE}" signature for alice@lab' in done.stdout
    assert run.signature.fingerprint in done.stdout
    verdict = verify(run.path)
    assert verdict.state == "intact" and verdict.signer == run.signature.fingerprint


def test_the_precip_key_signs_by_default(store, precip_home, monkeypatch):
    from precip_repro.keys import load_keys

    monkeypatch.delenv("PRECIP_SIGNING_KEY", raising=False)
    run = record_sample_run(store)
    assert run.signature is not None
    assert run.signature.fingerprint == load_keys(precip_home).fingerprint


def test_a_missing_key_leaves_the_run_finished_intact_and_unsigned(store, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "id_ed25519"
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(missing))
    run = record_sample_run(store)
    assert run.checkpointed and run.signature is None
    assert run.signing_problem == (
        f"the signing key {missing} does not exist; set PRECIP_SIGNING_KEY to an ssh private "
        "key file (or to its .pub, with the key in ssh-agent)"
    )
    verdict = verify(run.path, digest=run.digest)
    assert verdict.state == "intact" and verdict.reason.endswith(", unsigned")


@pytest.mark.parametrize(
    "kind, passphrase, says",
    [
        ("ed25519", "secret words", "is passphrase-protected and no ssh-agent holds it: `ssh-add"),
        ("dsa", "", "is of a type precip-repro cannot sign with; use an Ed25519, ECDSA or RSA"),
    ],
)
def test_a_key_that_cannot_sign_is_one_line_naming_it(
    tmp_path, monkeypatch, kind, passphrase, says
):
    key = make_key(tmp_path / "key", kind=kind, passphrase=passphrase)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(SigningFailed) as info:
        load_signer(key)
    assert says in str(info.value) and str(key) in str(info.value)
    assert "\n" not in str(info.value) and info.value.key == key


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_a_passphrase_protected_key_held_by_ssh_agent_signs(
    tmp_path, store, monkeypatch, ssh_agent, kind
):
    key = sign_through_agent(tmp_path, ssh_agent, monkeypatch, kind)
    run = record_sample_run(store)
    assert run.signature is not None, run.signing_problem
    done = ssh_keygen_verify(
        run.path, allowed_signers(tmp_path / "allowed", "alice@lab", key), "alice@lab"
    )
    assert done.returncode == 0, done.stderr
    trusted = TrustedKeys.load(key.with_name("alice.pub"))
    assert verify(run.path, signers=trusted).state == "intact"


def test_a_public_key_alone_signs_through_the_agent(tmp_path, store, monkeypatch, ssh_agent):
    key = make_key(tmp_path / "alice", passphrase="pw")
    ssh_add(key, "pw", ssh_agent, tmp_path)
    public = tmp_path / "published.pub"
    shutil.copy(key.with_name("alice.pub"), public)
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(public))
    run = record_sample_run(store)
    assert run.signature is not None, run.signing_problem
    assert verify(run.path, signers=TrustedKeys.load(public)).state == "intact"


def test_recover_signs_the_run_it_finishes(store, signing_key):
    run = record_sample_run(store, finish=False)
    run.close()
    done = recover(run.path)
    assert done.action == "finished" and done.signature is not None
    verdict = verify(run.path, signers=TrustedKeys.load(signing_key.with_name("alice.pub")))
    assert verdict.state == "intact", verdict.reason
    assert "status interrupted" in verdict.reason


def test_recover_signs_a_checkpoint_it_writes_again(store, signing_key):
    run = record_sample_run(store)
    (run.path / CHECKPOINT).unlink()
    (run.path / SIGNATURE).unlink()
    done = recover(run.path)
    assert done.action == "checkpoint" and done.signature is not None
    assert verify(run.path).signer == done.signature.fingerprint
