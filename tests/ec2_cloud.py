"""A real EC2 HTTP endpoint for the tests: moto in server mode on 127.0.0.1, and a
"hypervisor" that makes its instances reachable for real.

moto gives instances in a VPC of CIDR 127.N.0.0/16 sequential loopback private addresses
(127.N.0.4, .5, …; N is the test session's own, see ``ec2_network`` in conftest). For
every instance moto reports running, the hypervisor boots a machine — the local cloud's
isolated sshd — on that address (and on a loopback Elastic IP associated with it)
accepting the key pair's public key; it halts it when the instance is terminated. Images
listed in ``silent_images`` boot but never answer ssh. It runs as root (as the test suite
does).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from precip_repro import (
    EC2Experiment,
    EucalyptusExperiment,
    NimbusExperiment,
    OpenStackExperiment,
)
from tests import machines

ACCESS_KEY = "AKIDPRECIPTESTKEY01"
SECRET_KEY = "precip-test-secret-5f1c9e2b7a4d"  # the tests grep for it everywhere


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MotoEndpoint:
    """moto's server, started in this process on a free loopback port."""

    def __init__(self) -> None:
        # moto reads its settings when first imported: set them before.
        os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "1"
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def client(self, region: str = "us-east-1") -> Any:
        return boto3.client(
            "ec2",
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def forget(self, instance_id: str, region: str = "us-east-1") -> None:
        """Make the cloud forget an instance, as AWS does an hour after its termination and
        OpenStack when it deletes one: every call naming its id then answers
        ``InvalidInstanceID.NotFound``. (The server runs in this process: its backend is
        at hand.)"""
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
        for reservation in backend.reservations.values():
            reservation.instances = [i for i in reservation.instances if i.id != instance_id]

    def stop(self) -> None:
        self._server.stop()


class Hypervisor:
    """Boots a machine for every running instance, halts it at termination.

    Each machine is what the local cloud makes (its own filesystem view, hostname, process
    tree and users, sshd as PID 1 of its PID namespace) on the address moto gave the
    instance, with the key pair's public key for root and the short private DNS name as
    hostname. The hypervisor also plays the VPC's DNS: every machine's ``/etc/hosts`` names
    every instance by its private DNS name, as EC2's resolver would.
    """

    def __init__(
        self,
        client: Any,
        workdir: Path,
        *,
        silent_images: set[str],
        root_refusing_images: frozenset[str] = frozenset(),
        keyless_images: frozenset[str] = frozenset(),
        sudoless_images: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.workdir = workdir
        self.silent_images = silent_images
        # Images whose root key runs only the notice Ubuntu's and Amazon Linux's cloud-init
        # put there (`disable_root: true`), as many clouds' stock images do.
        self.root_refusing_images = root_refusing_images
        # Images that install no key for root (sshd's PermitRootLogin, no cloud-init).
        self.keyless_images = keyless_images
        # Root-refusing images whose `ubuntu` has no sudo rights (the others give it
        # passwordless sudo, as cloud-init does for an image's default user).
        self.sudoless_images = sudoless_images
        self._machines: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        # The hypervisor's thread starts and halts machines while a test asks which run:
        # iterating the dict as it changed size raised in running().
        self._machines_lock = threading.Lock()
        self._names: dict[str, str] = {}
        self._hosts = workdir / "hosts"
        workdir.mkdir(parents=True, exist_ok=True)
        self._write_hosts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="hypervisor")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self._tick()
            self._stop.wait(0.05)

    def _tick(self) -> None:
        found = self.client.describe_instances()
        live: set[tuple[str, str]] = set()
        for reservation in found["Reservations"]:
            for data in reservation["Instances"]:
                if data["State"]["Name"] != "running" or data["ImageId"] in self.silent_images:
                    continue
                if data.get("PrivateDnsName") and data.get("PrivateIpAddress"):
                    self._name(data["PrivateDnsName"], data["PrivateIpAddress"])
                addresses = [data.get("PrivateIpAddress"), data.get("PublicIpAddress")]
                for address in addresses:
                    if address and address.startswith("127."):
                        key = (data["InstanceId"], address)
                        live.add(key)
                        with self._machines_lock:
                            known = key in self._machines
                        if not known:
                            self._start(data, address)
        with self._machines_lock:
            gone = set(self._machines) - live
        for key in gone:
            self._halt(key)

    def _name(self, name: str, address: str) -> None:
        if self._names.get(name) != address:
            self._names[name] = address
            self._write_hosts()

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{address} {name} {name.split('.')[0]}" for name, address in self._names.items()]
        # Rewritten in place: the machines see this very file (bind-mounted), not a copy.
        with self._hosts.open("w") as f:
            f.write("\n".join(lines) + "\n")

    def _start(self, data: dict[str, Any], address: str) -> None:
        instance_id = data["InstanceId"]
        state = self.workdir / f"{instance_id}-{address}"
        pair = self.client.describe_key_pairs(KeyNames=[data["KeyName"]], IncludePublicKey=True)
        key = user_key = pair["KeyPairs"][0]["PublicKey"]
        refusing = data["ImageId"] in self.root_refusing_images | self.sudoless_images
        if refusing:
            key = (
                'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command="echo '
                '\'Please login as the user \\"ubuntu\\" rather than the user \\"root\\".\';'
                'echo;sleep 1;exit 142" ' + key
            )
        if data["ImageId"] in self.keyless_images:
            key = ""
        hostname = (data.get("PrivateDnsName") or instance_id).split(".")[0]
        machine = machines.start(state, address=address, hostname=hostname, authorized_keys=key)
        with self._machines_lock:
            self._machines[(instance_id, address)] = machine
        init = machines.await_ready(machine, state, hosts=self._hosts)
        if init is None:
            raise RuntimeError(
                f"machine for {instance_id} did not boot: {(state / 'boot.log').read_text()}"
            )
        if refusing:
            self._add_default_user(
                init, state, user_key, sudo=data["ImageId"] not in self.sudoless_images
            )

    @staticmethod
    def _add_default_user(init: int, state: Path, key: str, *, sudo: bool) -> None:
        """What cloud-init does for a stock image's default user: `ubuntu`, holding the key
        pair's key, with passwordless sudo (unless ``sudo`` is False)."""
        script = (
            "set -e; useradd -m -s /bin/bash ubuntu; "
            + ("echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-init-users; "
               if sudo else "")
            + "install -d -m 700 -o ubuntu /home/ubuntu/.ssh; "
            "printf '%s\\n' \"$1\" > /home/ubuntu/.ssh/authorized_keys; "
            "chown ubuntu /home/ubuntu/.ssh/authorized_keys"
        )  # fmt: skip
        subprocess.run(
            ["nsenter", "-t", str(init), "-m", "--", "chroot", str(state / "root"),
             "/bin/sh", "-c", script, "sh", key],
            check=True, capture_output=True,
        )  # fmt: skip

    def _halt(self, key: tuple[str, str]) -> None:
        with self._machines_lock:
            machine = self._machines.pop(key)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(machine.pid, signal.SIGKILL)
        machine.wait()

    def running(self) -> set[str]:
        """Instance ids with a live machine."""
        with self._machines_lock:
            machines = list(self._machines.items())
        return {instance for (instance, _), m in machines if m.poll() is None}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)  # a machine booting takes up to 20 s to be known
        with self._machines_lock:
            keys = list(self._machines)
        for key in keys:
            self._halt(key)


def wait_until(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def live(ec2: Any) -> list[str]:
    """The ids of the instances pending or running on the endpoint."""
    found = ec2.client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]


def make(kind: str, ec2: Any, store: Any, **options: Any) -> Any:
    """An experiment of ``kind``'s constructor on the endpoint, in its subnet, logging in at
    private addresses (the hypervisor's machines answer there), recorded in ``store``."""
    options.setdefault("subnet_id", ec2.subnet)
    options.setdefault("ssh_address", "private")
    options.setdefault("records", store.root)
    if kind == "ec2":
        return EC2Experiment("us-east-1", ec2.url, ACCESS_KEY, SECRET_KEY, "ec2-test", **options)
    cls = {
        "openstack": OpenStackExperiment,
        "eucalyptus": EucalyptusExperiment,
        "nimbus": NimbusExperiment,
    }[kind]
    return cls(ec2.url, ACCESS_KEY, SECRET_KEY, f"{kind}-test", **options)
