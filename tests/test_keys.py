"""Keys in the precip home: created on first use, readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from precip_repro.clouds.local import LocalCloud
from precip_repro.keys import load_keys


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
