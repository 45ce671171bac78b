from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from precip_repro.record import RunStore


@pytest.fixture(autouse=True, scope="session")
def precip_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test uses a temporary ~/.precip: never the developer's keys."""
    home = tmp_path_factory.mktemp("precip-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("PRECIP_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "records")


@pytest.fixture
def local_experiment(store: RunStore) -> Iterator[Callable[..., Any]]:
    """Make LocalExperiments recording into ``store``; deprovision and finish at the end."""
    from precip_repro import LocalExperiment, finish_run

    made: list[Any] = []

    def make(name: str = "test", **options: Any) -> Any:
        options.setdefault("records", store.root)
        exp = LocalExperiment(name, **options)
        made.append(exp)
        return exp

    yield make
    finish_run()
