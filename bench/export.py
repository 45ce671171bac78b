"""``precip-repro export`` of a large run. Not a test: it prints figures and a ratio.

A run of 10,000 commands (two instances; most outputs inline, every tenth a 2 KB blob; one
file put) is exported as a zip, as the command does it — verified, read, its report drawn,
its RO-Crate metadata and signed in-toto attestation written, every file zipped — against a
floor measured in the same run: a plain ``zipfile`` copy of the same package files (what
``zip -r`` of the package directory would cost). Medians of interleaved rounds. Goal: the
export in under 10 s.

Usage: python bench/export.py [--commands N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import zipfile
from pathlib import Path

from _common import command_call, interleaved, provisioned_run, scratch  # type: ignore[import-not-found]


def record(store: Path, commands: int) -> Path:
    from precip_repro.record.payloads import (
        CallFinished,
        CallStarted,
        FilePut,
    )

    ids = ["i-000000000001", "i-000000000002"]
    run = provisioned_run(store, "big-export", ids, block=131, argv=["pipeline.py"])
    script = run.add_blob(b"#!/bin/sh\necho step\n" * 200)
    run.append(CallStarted(call=2, exp="e1", method="put", args={"tags": []}))
    run.append(
        FilePut(
            call=2, slot="e1.p1.0", instance_id=ids[0], user="root", local_path="step.sh",
            remote_path="/root/step.sh", mode=0o755, content=script,
        )
    )  # fmt: skip
    run.append(CallFinished(call=2, result=None, duration_ns=1_000_000))
    for n in range(commands):
        call = n + 3
        text = f"{ids[call % 2]} did step {call}\n".encode()
        out = (
            run.add_blob(text * 64, inline=False)
            if n % 10 == 0
            else run.add_blob(text, inline=True)
        )
        command_call(run, call, ids, out)
    run.finish()
    if run.signature is None:
        raise SystemExit(f"the run was not signed: {run.signing_problem}")
    return run.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = scratch()
    try:
        from precip_repro.package.exporting import export_run
        from precip_repro.package.info import PackageInfo

        run_dir = record(root / "records", args.commands)
        info = PackageInfo(license="CC-BY-4.0")
        export_run(run_dir, root / "unpacked", info=info)  # the floor's files
        files = sorted(p for p in (root / "unpacked").rglob("*") if p.is_file())

        def export() -> None:
            export_run(run_dir, root / "pkg.zip", info=info)

        def plain_zip() -> None:
            with zipfile.ZipFile(root / "plain.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for path in files:
                    zf.write(path, path.relative_to(root / "unpacked").as_posix())

        medians = interleaved({"export": export, "zip": plain_zip}, args.rounds)
        size = (root / "pkg.zip").stat().st_size
        print(
            f"export of a run of {args.commands:,} commands ({len(files):,} files, "
            f"{size / 1e6:.1f} MB zipped; median of {args.rounds} on {os.cpu_count()} cores): "
            f"{medians['export']:.2f} s (goal < 10 s); a plain zipfile copy of the same "
            f"files {medians['zip']:.2f} s: x{medians['export'] / medians['zip']:.1f}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
