"""Provisioning: launches of one ``provision`` overlapping vs made in turn (the peer).

Not a test: prints figures. Three clouds:

* local: ``provision("default", count=40)`` then ``deprovision()``, the cloud's own launch
  concurrency vs one launch at a time;
* EC2 through boto3 against moto's server on 127.0.0.1, with every RunInstances answer held
  back by ``--latency`` seconds (moto answers in milliseconds, EC2 itself in about a second):
  ``provision(count=16)`` then ``deprovision()``, overlapping vs in turn;
* native OpenStack through openstacksdk against the tests' OpenStack API double on
  127.0.0.1 (tests/openstack_api.py), every ``POST /servers`` answered after ``--latency``
  seconds: ``provision(count=16)`` then ``deprovision()``, overlapping vs in turn.

Targets: overlapping / in turn ≤ 0.3 on EC2 and OpenStack (waiting on the cloud overlaps
entirely);
≤ 0.7 on the local cloud, whose launches fork and boot processes on this machine's own
cores (2 here) and whose deprovisioning is timed on both sides.

Usage: PYTHONPATH=. python bench/provision.py [--local N] [--ec2 N] [--openstack N]
       [--latency S] [--rounds R]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import time
from typing import Any

from _common import interleaved, scratch  # type: ignore[import-not-found]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local", type=int, default=40)
    parser.add_argument("--ec2", type=int, default=16)
    parser.add_argument("--openstack", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = scratch()

    from moto.server import ThreadedMotoServer

    from precip_repro import EC2Experiment, LocalExperiment, finish_run
    from precip_repro.clouds.ec2 import EC2Cloud

    local = LocalExperiment("provision-bench", record=False)
    overlapping = local.cloud.launch_workers

    def local_round(workers: int) -> None:
        local.cloud.launch_workers = workers
        local.provision("default", count=args.local)
        local.deprovision()

    times = interleaved(
        {"in turn": lambda: local_round(1), "overlapping": lambda: local_round(overlapping)},
        args.rounds,
    )
    local.close()
    print(
        f"local provision+deprovision of {args.local}: overlapping ({overlapping} at once) "
        f"{times['overlapping']:.2f} s, in turn {times['in turn']:.2f} s, ratio "
        f"{times['overlapping'] / times['in turn']:.2f} (target ≤ 0.7)"
    )

    # werkzeug logs every request moto answers at INFO, verbose=False notwithstanding: the
    # figures would drown in a hundred lines of them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        exp = EC2Experiment("us-east-1", f"http://127.0.0.1:{port}", "AKIDBENCH00000000000",
                            "bench-secret-key-not-real", "provision-bench")  # fmt: skip

        def held_back(**_: Any) -> None:
            time.sleep(args.latency)  # as EC2 takes its time to answer

        cloud = exp.cloud
        assert isinstance(cloud, EC2Cloud)
        cloud.client.meta.events.register("before-call.ec2.RunInstances", held_back)
        overlapping = exp.cloud.launch_workers

        def ec2_round(workers: int) -> None:
            exp.cloud.launch_workers = workers
            exp.provision("ami-12c6146b", "t2.micro", count=args.ec2)
            exp.deprovision()

        times = interleaved(
            {"in turn": lambda: ec2_round(1), "overlapping": lambda: ec2_round(overlapping)},
            args.rounds,
        )
        exp.close()
        finish_run()
    finally:
        server.stop()
    print(
        f"EC2 (moto, RunInstances answered after {args.latency} s) provision+deprovision of "
        f"{args.ec2}: overlapping ({overlapping} at once) {times['overlapping']:.2f} s, in turn "
        f"{times['in turn']:.2f} s, ratio {times['overlapping'] / times['in turn']:.2f} "
        "(target ≤ 0.3)"
    )
    openstack_bench(args.openstack, args.latency, args.rounds, root)
    shutil.rmtree(root, ignore_errors=True)


def openstack_bench(count: int, latency: float, rounds: int, root: Any) -> None:
    """Native OpenStack: the tests' API double (no hypervisor: provisioning only)."""
    import os

    from precip_repro import OpenStackExperiment, finish_run
    from tests.openstack_api import OpenStackAPI
    from tests.openstack_cloud import CLOUD, OpenStackEndpoint, write_clouds_yaml

    api = OpenStackAPI(network_prefix="127.99", max_instances=count + 1)
    api.image.add("ubuntu-22.04")
    endpoint = OpenStackEndpoint(api)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(write_clouds_yaml(root / "clouds.yaml", endpoint))
    api.latency[("POST", "/compute/v2.1/servers")] = latency  # as Nova takes its time
    try:
        exp = OpenStackExperiment(cloud=CLOUD, name="provision-bench")
        overlapping = exp.cloud.launch_workers

        def openstack_round(workers: int) -> None:
            exp.cloud.launch_workers = workers
            exp.provision("ubuntu-22.04", "m1.small", count=count)
            exp.deprovision()

        times = interleaved(
            {"in turn": lambda: openstack_round(1),
             "overlapping": lambda: openstack_round(overlapping)},
            rounds,
        )  # fmt: skip
        exp.close()
        finish_run()
    finally:
        endpoint.stop()
    print(
        f"OpenStack (openstacksdk, POST /servers answered after {latency} s) "
        f"provision+deprovision of {count}: overlapping ({overlapping} at once) "
        f"{times['overlapping']:.2f} s, in turn {times['in turn']:.2f} s, ratio "
        f"{times['overlapping'] / times['in turn']:.2f} (target ≤ 0.3)"
    )


if __name__ == "__main__":
    main()
