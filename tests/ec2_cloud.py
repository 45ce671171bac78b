"""A real EC2 HTTP endpoint for the tests: moto in server mode on 127.0.0.1, and a
"hypervisor" that makes its instances reachable for real.

moto gives instances in a VPC of CIDR 127.0.0.0/16 sequential loopback private addresses
(127.0.0.4, .5, …). For every instance moto reports running, the hypervisor starts an
OpenSSH sshd on that address (and on a loopback Elastic IP associated with it) accepting
the key pair's public key; it stops it when the instance is terminated. Images listed in
``silent_images`` boot but never answer ssh.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

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

    def stop(self) -> None:
        self._server.stop()


class Hypervisor:
    """Starts an sshd for every running instance, stops it at termination."""

    def __init__(self, client: Any, workdir: Path, *, silent_images: set[str]) -> None:
        self.client = client
        self.workdir = workdir
        self.silent_images = silent_images
        self._sshd: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="hypervisor")
        Path("/run/sshd").mkdir(exist_ok=True)
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
                addresses = [data.get("PrivateIpAddress"), data.get("PublicIpAddress")]
                for address in addresses:
                    if address and address.startswith("127."):
                        key = (data["InstanceId"], address)
                        live.add(key)
                        if key not in self._sshd:
                            self._start(data, address)
        for key in set(self._sshd) - live:
            self._halt(key)

    def _start(self, data: dict[str, Any], address: str) -> None:
        instance_id = data["InstanceId"]
        home = self.workdir / instance_id
        home.mkdir(parents=True, exist_ok=True)
        host_key = home / "host_key"
        if not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
            )
        pair = self.client.describe_key_pairs(KeyNames=[data["KeyName"]], IncludePublicKey=True)[
            "KeyPairs"
        ][0]
        (home / "authorized_keys").write_text(pair["PublicKey"] + "\n")
        config = home / f"sshd_config.{address}"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}:22",
                    f"HostKey {host_key}",
                    f"PidFile {home}/sshd.{address}.pid",
                    f"AuthorizedKeysFile {home}/authorized_keys",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 200",
                    "UseDNS no",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        self._sshd[(instance_id, address)] = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _halt(self, key: tuple[str, str]) -> None:
        proc = self._sshd.pop(key)
        proc.kill()
        proc.wait()

    def running(self) -> set[str]:
        """Instance ids with a live sshd."""
        return {instance for (instance, _), proc in self._sshd.items() if proc.poll() is None}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._sshd):
            self._halt(key)


def wait_until(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
