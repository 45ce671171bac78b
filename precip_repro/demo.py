"""The demo run behind ``make demo``.

Until the local cloud lands, the demo records what the record core can show on its own:
the hello-world experiment's steps as ``note`` events, an output kept as a blob, and a
finished, verifiable run.
"""

from __future__ import annotations

import platform
import time

from precip_repro.record.events import Note, converter
from precip_repro.record.recorder import Run
from precip_repro.record.store import RunStore

__all__ = ["record_demo"]


def record_demo(store: RunStore) -> Run:
    """Record the demo run in ``store`` and finish it; return the finished run."""
    with Run.open(store, name="demo-hello-world", argv=["precip-repro", "demo"]) as run:
        run.append(Note(text="demo: the local cloud arrives with the next issue; notes only"))
        started = time.monotonic_ns()
        greeting = f"Hello from {platform.node()}\n".encode()
        ref = run.add_blob(greeting, inline=True)
        run.append(
            Note(
                text="hello world",
                fields={
                    "output": ref.text,
                    "sha256": ref.sha256,
                    "elapsed_ns": time.monotonic_ns() - started,
                },
            )
        )
        listing = run.add_blob(b"".join(f"line {i}\n".encode() for i in range(2000)))
        run.append(
            Note(
                text="a larger output, kept as a blob",
                fields={"blob": converter.unstructure(listing)},
            )
        )
    return run
