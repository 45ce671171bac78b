"""Fixtures of the record's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_key


@pytest.fixture
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = make_key(tmp_path / "alice", comment="alice@lab")
    monkeypatch.setenv("PRECIP_SIGNING_KEY", str(key))
    return key
