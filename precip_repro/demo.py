"""The demo behind ``make demo``: the hello-world experiment on the local cloud, recorded.

The same experiment as ``examples/hello_world.py``, shipped inside the package so that
``precip-repro demo`` works wherever precip-repro is installed.
"""

from __future__ import annotations

from pathlib import Path

from precip_repro.experiment.kinds import LocalExperiment
from precip_repro.session import finish_run, session

__all__ = ["record_demo"]


def record_demo(records: Path) -> tuple[str, Path, str]:
    """Record the hello-world run in ``records``; return its id, path and digest."""
    session.argv = ["precip-repro", "demo"]
    session.detect_script = False
    exp = LocalExperiment("hello-world", records=records)
    try:
        exp.provision("default", tags=["test1"], count=1)
        exp.wait()
        exp.list()
        exp.run(["test1"], "echo 'Hello world from an experiment instance'")
        exp.note("demo finished its commands")
    finally:
        exp.deprovision()
    run_id, path = exp.run_id, exp.run_path
    digest = finish_run()
    assert run_id is not None and path is not None and digest is not None
    return run_id, path, digest
