"""SFTP put and get of 200 MB: ours (recording off and on) vs OpenSSH ``scp``, same sshd.

Not a test: prints throughputs and ratios (medians of interleaved rounds). Targets: ours
≥ 1.0 x scp with recording off, ≥ 0.85 x with recording on (which hashes every byte and
stores it in the run's blob store in the same pass).

Usage: python bench/sftp.py [--mb MB] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess

from _common import interleaved, scratch  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = scratch()

    from precip_repro import LocalExperiment, finish_run

    source = root / "payload.bin"
    with source.open("wb") as f:
        block = os.urandom(1 << 20)
        for i in range(args.mb):
            f.write(bytes([i % 256]) + block[1:])
    size = source.stat().st_size
    recorded = LocalExperiment("sftp-recorded")
    bare = LocalExperiment("sftp-bare", record=False)
    try:
        for exp in (recorded, bare):
            exp.provision("default", tags=["bench"])
            exp.wait()
        item = bare.list()[0]
        key = str(bare.keys.private_key_path)
        scp = [
            "scp", "-q", "-i", key, "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        target = f"root@{item['public_address']}"

        def scp_put() -> None:
            subprocess.run([*scp, str(source), f"{target}:/tmp/scp.bin"], check=True)

        def scp_get() -> None:
            subprocess.run([*scp, f"{target}:/tmp/scp.bin", str(root / "scp-back.bin")], check=True)

        def put(exp: LocalExperiment) -> None:
            exp.put(["bench"], source, "/tmp/ours.bin")

        def get(exp: LocalExperiment) -> None:
            exp.get(["bench"], "/tmp/ours.bin", root / "ours-back.bin")

        scp_put()
        put(bare)
        put(recorded)
        puts = interleaved(
            {"scp": scp_put, "off": lambda: put(bare), "on": lambda: put(recorded)}, args.rounds
        )
        gets = interleaved(
            {"scp": scp_get, "off": lambda: get(bare), "on": lambda: get(recorded)}, args.rounds
        )
    finally:
        recorded.deprovision()
        bare.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)
    mb = size / 1e6
    print(f"SFTP of {mb:.0f} MB over loopback, median of {args.rounds} interleaved rounds:")
    for label, table in (("put", puts), ("get", gets)):
        print(
            f"  {label}: scp {mb / table['scp']:6.0f} MB/s | ours, recording off "
            f"{mb / table['off']:6.0f} MB/s ({table['scp'] / table['off']:.2f} x scp, target ≥ 1.0)"
            f" | recording on {mb / table['on']:6.0f} MB/s "
            f"({table['scp'] / table['on']:.2f} x scp, target ≥ 0.85)"
        )


if __name__ == "__main__":
    main()
