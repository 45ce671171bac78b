"""Keys in the precip home: created on first use, readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from precip_repro import ExperimentException, finish_run
from precip_repro.clouds.local import LocalCloud
from precip_repro.keys import load_keys
from tests.helpers import original_precip_home


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_created_once_private_and_in_a_home_only_their_owner_enters(tmp_path):
    home = tmp_path / "home"
    keys = load_keys(home)
    assert mode(home) == 0o700
    assert mode(keys.private_key_path) == 0o600
    assert keys.key_name == f"precip_{keys.account_id}"
    assert load_keys(home).fingerprint == keys.fingerprint  # the same keypair, not a new one


def test_a_home_the_local_cloud_creates_first_is_private_too(tmp_path):
    home = tmp_path / "home"
    LocalCloud(home=home).close()  # a LocalExperiment makes its cloud before loading keys
    assert mode(home) == 0o700


def test_a_home_others_could_enter_is_closed_and_a_loose_key_tightened(tmp_path):
    home = tmp_path / "home"
    keys = load_keys(home)
    home.chmod(0o755)
    keys.private_key_path.chmod(0o644)
    load_keys(home)
    assert mode(home) == 0o700
    assert mode(keys.private_key_path) == 0o600


def test_a_home_made_by_the_original_precip_keeps_its_rsa_key_and_logs_in_with_it(
    tmp_path, monkeypatch, store
):
    from precip_repro import LocalExperiment

    home = tmp_path / "old-home"
    pem = original_precip_home(home)
    keys = load_keys(home)
    assert keys.public_key.startswith("ssh-rsa ")
    assert keys.private_key_path.read_text() == pem  # its key, not a new one
    monkeypatch.setenv("PRECIP_HOME", str(home))
    exp = LocalExperiment("old-home", records=store.root)
    exp.provision("default")
    exp.wait()
    assert exp.run([], "echo in")[1] == ["in\n"]
    finish_run()


def test_an_encrypted_or_unreadable_key_is_named_with_what_to_do(tmp_path):
    home = tmp_path / "locked"
    original_precip_home(home, encrypted=True)
    with pytest.raises(ExperimentException, match=r"precip_0123.*without a passphrase.*Move"):
        load_keys(home)
    (home / "precip_0123456789abcdef0123456789abcdef").write_text("not a key\n")
    with pytest.raises(ExperimentException, match=r"cannot use the private key .*precip_0123"):
        load_keys(home)


def test_an_ecdsa_key_works_too(tmp_path):
    home = tmp_path / "ecdsa"
    original_precip_home(home)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    (home / "precip_0123456789abcdef0123456789abcdef").write_bytes(pem)
    assert load_keys(home).public_key.startswith("ecdsa-sha2-nistp256 ")
