"""The keys a reviewer trusts (verify --signer): a run rewritten and signed again by another
key, or unsigned, is refused; public key and allowed_signers files, and their bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from precip_repro.exceptions import SignersUnusable
from precip_repro.record import Run, verify
from precip_repro.record.payloads import Note
from precip_repro.record.signature import SIGNATURE
from precip_repro.record.signing import load_signer, sign_checkpoint
from precip_repro.record.trusted import TrustedKeys
from tests.helpers import make_key, record_sample_run, rewrite_notes


@pytest.fixture
def rewritten(tmp_path, store, signing_key) -> tuple[Run, Path, Path]:
    """Alice's signed run, rewritten (a note now says what it did not) and signed again
    with Mallory's key; and the public keys of both."""
    run = Run.open(store, name="result")
    run.append(Note(text="accuracy 0.71", fields={}))
    run.finish()
    assert run.signature is not None
    rewrite_notes(run.path, "0.71", "0.93")
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
