"""Signed runs: what a finished run's checkpoint.sig is, who can check it, and what a
rewrite signed again by another key looks like."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sshsig.sshsig import ssh_dearmor_sshsig, ssh_enarmor_sshsig

from precip_repro.exceptions import SignersUnusable, SigningFailed
from precip_repro.record import Run, RunStore, recover, verify
from precip_repro.record.payloads import Note
from precip_repro.record.signing import (
    NAMESPACE,
    SIGNATURE,
    TrustedKeys,
    load_signer,
    sign_checkpoint,
)
from precip_repro.record.store import CHECKPOINT, EVENTS
from tests.helpers import record_sample_run


def make_key(path: Path, *, kind: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    bits = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *bits, "-N", passphrase, "-C", comment or path.name,
         "-f", str(path)],
        check=True,
    )  # fmt: skip
    return path


def allowed_signers(path: Path, principal: str, key: Path) -> Path:
    kind, encoded = (key.with_name(key.name + ".pub")).read_text().split()[:2]
    path.write_text(f'{principal} namespaces="{NAMESPACE}" {kind} {encoded}\n')
    return path


def ssh_keygen_verify(
    run_dir: Path, signers: Path, principal: str
) -> subprocess.CompletedProcess[str]:
    with (run_dir / CHECKPOINT).open("rb") as checkpoint:
        return subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE,
             "-s", str(run_dir / SIGNATURE)],
            stdin=checkpoint, capture_output=True, text=True, check=False,
        )  # fmt: skip


@pytest.fixture
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = make_key(tmp_path / "alice", comment="alice@lab")
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    return key


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


def _rewrite(run_dir: Path, old: str, new: str) -> None:
    """What an author who wants another result does, by the format's documented rules:
    edit an event, recompute every later hash, the run.finished digest and the checkpoint."""

    def dumps(obj: object) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    events = [json.loads(line) for line in (run_dir / EVENTS).read_bytes().splitlines()]
    prev, lines = "0" * 64, []
    for event in events:
        if event["type"] == "note":
            event["data"]["text"] = event["data"]["text"].replace(old, new)
        if event["type"] == "run.finished":
            event["data"]["digest"] = prev
        event["prev"] = prev
        del event["hash"]
        event["hash"] = prev = hashlib.sha256(dumps(event)).hexdigest()
        lines.append(dumps(event) + b"\n")
    log = run_dir / EVENTS
    log.chmod(0o644)
    log.write_bytes(b"".join(lines))
    checkpoint = run_dir / CHECKPOINT
    checkpoint.chmod(0o644)
    body = {"digest": prev, "events": len(events), "run": run_dir.name, "v": 1}
    checkpoint.write_bytes(dumps(body) + b"\n")


@pytest.fixture
def rewritten(tmp_path, store, signing_key) -> tuple[Run, Path, Path]:
    """Alice's signed run, rewritten (a note now says what it did not) and signed again
    with Mallory's key; and the public keys of both."""
    run = Run.open(store, name="result")
    run.append(Note(text="accuracy 0.71", fields={}))
    run.finish()
    assert run.signature is not None
    _rewrite(run.path, "0.71", "0.93")
    mallory = make_key(tmp_path / "mallory", comment="mallory@elsewhere")
    (run.path / SIGNATURE).chmod(0o644)
    sign_checkpoint(run.path, load_signer(mallory))
    return run, signing_key.with_name("alice.pub"), mallory.with_name("mallory.pub")


def test_a_consistent_rewrite_signed_again_by_another_key_is_refused_under_signer(rewritten):
    run, alice, mallory = rewritten
    bare = verify(run.path)
    # Without --signer the rewrite is a well-formed run signed by someone: that is all a
    # record can say about itself.
    assert bare.state == "intact", bare.reason
    assert bare.signer != run.signature.fingerprint
    verdict = verify(run.path, signers=TrustedKeys.load(alice))
    assert verdict.state == "untrusted" and verdict.exit_status == 1
    assert f"signed by {bare.signer}, which is no key in {alice}" in verdict.reason
    assert "rewritten and signed again by another key" in verdict.reason
    assert verify(run.path, signers=TrustedKeys.load(mallory)).state == "intact"


def test_a_rewrite_that_keeps_the_old_signature_is_corrupt(tmp_path, store, signing_key):
    run = Run.open(store, name="result")
    run.append(Note(text="accuracy 0.71", fields={}))
    run.finish()
    _rewrite(run.path, "0.71", "0.93")
    verdict = verify(run.path)
    assert verdict.state == "corrupt"
    assert "does not verify against the checkpoint" in verdict.reason
    assert str(run.path / SIGNATURE) in verdict.reason


def test_an_unsigned_run_is_refused_under_signer_with_the_reason(store, signing_key):
    run = Run.open(store, name="plain", sign=False)
    run.finish()
    assert verify(run.path).reason.endswith(", unsigned")
    verdict = verify(run.path, signers=TrustedKeys.load(signing_key.with_name("alice.pub")))
    assert verdict.state == "untrusted"
    assert "intact but unsigned (it has no checkpoint.sig)" in verdict.reason


def test_an_allowed_signers_file_names_the_principal(tmp_path, store, signing_key):
    run = record_sample_run(store)
    signers = tmp_path / "allowed"
    kind, encoded = signing_key.with_name("alice.pub").read_text().split()[:2]
    signers.write_text(
        "# the lab's keys\n\n"
        f'alice@lab,alice@home namespaces="git,precip-*" {kind} {encoded} laptop\n'
    )
    verdict = verify(run.path, signers=TrustedKeys.load(signers))
    assert verdict.state == "intact"
    assert verdict.signer_name == "alice@lab,alice@home"


def test_a_key_not_allowed_for_our_namespace_is_not_trusted(tmp_path, store, signing_key):
    record_sample_run(store)
    signers = tmp_path / "allowed"
    kind, encoded = signing_key.with_name("alice.pub").read_text().split()[:2]
    signers.write_text(f'alice@lab namespaces="git" {kind} {encoded}\n')
    with pytest.raises(SignersUnusable, match="holds no key for namespace precip-repro"):
        TrustedKeys.load(signers)


@pytest.mark.parametrize(
    "content, says",
    [
        ("", "holds no key"),
        ("alice@lab cert-authority ssh-ed25519 AAAA\n", "uses cert-authority, which"),
        ("alice@lab ssh-ed25519 !!!\n", "is not base64"),
        ("just words here\n", "line 1: neither a public key nor an allowed_signers line"),
    ],
)
def test_a_signer_file_without_a_usable_key_says_which_line(tmp_path, content, says):
    path = tmp_path / "signers"
    path.write_text(content)
    with pytest.raises(SignersUnusable, match=says):
        TrustedKeys.load(path)


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


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent of this test's own, on a socket in its tmp_path."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.01)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def ssh_add(key: Path, passphrase: str, sock: Path, tmp_path: Path) -> None:
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
           "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}  # fmt: skip
    done = subprocess.run(
        ["ssh-add", str(key)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_a_passphrase_protected_key_held_by_ssh_agent_signs(
    tmp_path, store, monkeypatch, ssh_agent, kind
):
    key = make_key(tmp_path / "alice", kind=kind, passphrase="correct horse")
    ssh_add(key, "correct horse", ssh_agent, tmp_path)
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    signer = load_signer()
    assert signer.via_agent
    signer.close()
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
