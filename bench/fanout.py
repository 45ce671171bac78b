"""Fan-out: ``sleep 0.2; echo hi`` on 20 local instances. Not a test: prints figures.

Contenders, on the same 20 sshd instances, medians of interleaved rounds:
- ours, serial (the seed's default) and with ``parallel=True`` (recorded, as shipped);
- Fabric's ``ThreadingGroup``; parallel-ssh's ``ParallelSSHClient``.
Each is measured warm (connections already open, as after ``wait()``) and cold (connecting
in the round). Target: ours ≤ 1.1 x the fastest peer.

Usage: python bench/fanout.py [--instances N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil

from _common import interleaved, scratch  # type: ignore[import-not-found]

CMD = "sleep 0.2; echo hi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = scratch()

    from fabric import ThreadingGroup
    from pssh.clients import ParallelSSHClient

    from precip_repro import LocalExperiment, finish_run

    exp = LocalExperiment("fanout", parallel=True)
    try:
        exp.provision("default", count=args.instances)
        exp.wait()
        hosts = [item["public_address"] for item in exp.list()]
        key = str(exp.keys.private_key_path)
        expected = ["hi\n"] * args.instances

        def ours() -> None:
            assert exp.run([], CMD)[1] == expected

        def ours_serial() -> None:
            assert exp.run([], CMD, parallel=False)[1] == expected

        def ours_cold() -> None:
            exp._pool.close()
            ours()

        fabric_group = ThreadingGroup(*hosts, user="root", connect_kwargs={"key_filename": key})

        def fabric_warm() -> None:
            results = fabric_group.run(CMD, hide=True)
            assert [results[c].stdout for c in fabric_group] == expected

        def fabric_cold() -> None:
            group = ThreadingGroup(*hosts, user="root", connect_kwargs={"key_filename": key})
            try:
                results = group.run(CMD, hide=True)
                assert len(results) == args.instances
            finally:
                group.close()

        pssh_client = ParallelSSHClient(hosts, user="root", pkey=key, pool_size=args.instances)

        def pssh_warm() -> None:
            output = pssh_client.run_command(CMD)
            pssh_client.join(output)
            assert ["".join(out.stdout) + "\n" for out in output] == expected

        def pssh_cold() -> None:
            client = ParallelSSHClient(hosts, user="root", pkey=key, pool_size=args.instances)
            output = client.run_command(CMD)
            client.join(output)
            assert len(output) == args.instances

        fabric_warm()
        pssh_warm()  # open the peers' connections before the warm rounds
        warm = interleaved(
            {"ours": ours, "fabric": fabric_warm, "parallel-ssh": pssh_warm}, args.rounds
        )
        cold = interleaved(
            {"ours": ours_cold, "fabric": fabric_cold, "parallel-ssh": pssh_cold}, args.rounds
        )
        serial = interleaved({"serial": ours_serial}, max(1, args.rounds // 2))["serial"]
        fabric_group.close()
    finally:
        exp.deprovision()
        finish_run()
        shutil.rmtree(root, ignore_errors=True)

    print(f"fan-out of {CMD!r} to {args.instances} local instances (median of {args.rounds}):")
    print(f"  ours, serial (the seed's default)   {serial:6.3f} s")
    for label, table in (("warm (open connections)", warm), ("cold (connect each round)", cold)):
        fastest_peer = min(table["fabric"], table["parallel-ssh"])
        print(f"  {label}:")
        for name, seconds in table.items():
            print(f"    {name:<13} {seconds:6.3f} s")
        print(f"    ours / fastest peer = {table['ours'] / fastest_peer:.2f} (target ≤ 1.1)")


if __name__ == "__main__":
    main()
