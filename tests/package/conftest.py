"""Fixtures of the package tests: the pool example recorded on the local cloud and replayed
there (once per module: each takes seconds), and roc-validator's seeded HTTP cache."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from precip_repro.package.info import PackageInfo
from precip_repro.record import RunStore
from tests.package.validator import seeded_cache

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@attrs.frozen(kw_only=True)
class PoolRuns:
    store: RunStore
    source: str
    replay: str

    @property
    def source_dir(self) -> Path:
        return self.store.root / self.source

    @property
    def replay_dir(self) -> Path:
        return self.store.root / self.replay


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolRuns]:
    """The pool example, recorded as a user records it, and its replay on the local cloud."""
    store = RunStore(tmp_path_factory.mktemp("pool") / "records")
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "condor_pool.py")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (source,) = [path.name for path in store.run_dirs()]
    done = subprocess.run(
        [sys.executable, "-m", "replay.cli", source, "--records", str(store.root),
         "--to", "local", "--max-gap", "1"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (replay,) = [path.name for path in store.run_dirs() if path.name != source]
    yield PoolRuns(store=store, source=source, replay=replay)


@pytest.fixture(scope="session")
def rocv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_cache(tmp_path_factory.mktemp("rocv"))


@pytest.fixture
def info() -> PackageInfo:
    from precip_repro.package.info import Author

    return PackageInfo(
        license="CC-BY-4.0",
        authors=(Author(name="Alice Lab", id="https://orcid.org/0000-0002-1825-0097"),),
    )
