"""A real OpenStack HTTP endpoint for the tests — :class:`tests.openstack_api.OpenStackAPI`
served on 127.0.0.1 — and a "hypervisor" that makes its servers reachable for real.

For every server Nova makes ACTIVE, and every floating address Neutron associates with one,
the hypervisor boots a machine — the local cloud's isolated sshd — on that address,
accepting the key pair's public key for root; it halts them when the server is deleted or
the address taken away. Images added ``silent`` boot but never answer ssh; images added
with a ``fault`` go to ERROR. It runs as root (as the test suite does).

:func:`write_clouds_yaml` writes the ``clouds.yaml`` a user would have: an entry with a
password and one with an application credential.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests import machines
from tests.openstack_api import (
    APP_CREDENTIAL_ID,
    APP_CREDENTIAL_SECRET,
    PASSWORD,
    PROJECT,
    REGION,
    USER,
    USER_DOMAIN,
    OpenStackAPI,
)
from tests.openstack_network import DNS_DOMAIN, hostname_of

CLOUD = "precip-test"
APP_CLOUD = "precip-test-app"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # 16 launches at once and their describes


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # the request log is the API's own


class OpenStackEndpoint:
    """The API on a free loopback port, in a thread of this process."""

    def __init__(self, api: OpenStackAPI) -> None:
        self.api = api
        self._server = make_server(
            "127.0.0.1", 0, api, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        api.base = self.url
        self.auth_url = f"{self.url}/identity/v3"
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="openstack-api"
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def write_clouds_yaml(path: Path, endpoint: OpenStackEndpoint) -> Path:
    """A ``clouds.yaml`` with :data:`CLOUD` (a password) and :data:`APP_CLOUD` (an
    application credential), as Horizon hands them out."""
    text = f"""\
clouds:
  {CLOUD}:
    auth:
      auth_url: {endpoint.auth_url}
      username: {USER}
      password: {PASSWORD}
      project_name: {PROJECT}
      user_domain_name: {USER_DOMAIN}
      project_domain_name: {USER_DOMAIN}
    region_name: {REGION}
    interface: public
    identity_api_version: 3
  {APP_CLOUD}:
    auth_type: v3applicationcredential
    auth:
      auth_url: {endpoint.auth_url}
      application_credential_id: {APP_CREDENTIAL_ID}
      application_credential_secret: {APP_CREDENTIAL_SECRET}
    region_name: {REGION}
    interface: public
    identity_api_version: 3
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def openrc_environment(endpoint: OpenStackEndpoint) -> dict[str, str]:
    """What sourcing the project's openrc file sets."""
    return {
        "OS_AUTH_URL": endpoint.auth_url,
        "OS_USERNAME": USER,
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": PROJECT,
        "OS_USER_DOMAIN_NAME": USER_DOMAIN,
        "OS_PROJECT_DOMAIN_NAME": USER_DOMAIN,
        "OS_REGION_NAME": REGION,
        "OS_INTERFACE": "public",
        "OS_IDENTITY_API_VERSION": "3",
    }


class Hypervisor:
    """Boots a machine per (server, address); the API calls it (see
    :class:`tests.openstack_api.Hypervisor`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._machines: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._hosts = workdir / "hosts"
        self._names: dict[str, str] = {}
        self._gone: set[str] = set()
        """Servers halted for good: a boot still under way for one (its floating address
        associated as it was deleted) must not leave a machine behind."""
        self._write_hosts()

    def _write_hosts(self) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{address} {name}.{DNS_DOMAIN} {name}" for name, address in self._names.items()]
        with self._hosts.open("w") as f:  # in place: the machines see this very file
            f.write("\n".join(lines) + "\n")

    def boot(self, server: dict[str, Any], address: str, public_key: str) -> bool:
        server_id = server["id"]
        with self._lock:
            if server_id in self._gone:
                return False
        hostname = hostname_of(server["name"])
        with self._lock:  # the server's name resolves to its first (fixed) address
            if hostname not in self._names:
                self._names[hostname] = address
                self._write_hosts()
        state = self.workdir / f"{server_id}-{address}"
        machine = machines.start(
            state, address=address, hostname=hostname, authorized_keys=public_key
        )
        with self._lock:
            self._machines[(server_id, address)] = machine
            halted = server_id in self._gone
        if halted:
            self.halt(server_id)
            return False
        return machines.await_ready(machine, state, hosts=self._hosts) is not None

    def halt(self, server_id: str, address: str | None = None) -> None:
        """Halt the server's machine at ``address``, or (None) all of them for good."""
        with self._lock:
            if address is None:
                self._gone.add(server_id)
            keys = [
                key
                for key in self._machines
                if key[0] == server_id and (address is None or key[1] == address)
            ]
            machines = [self._machines.pop(key) for key in keys]
        for machine in machines:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(machine.pid, signal.SIGKILL)
            machine.wait()

    def running(self) -> set[str]:
        """Server ids with a live machine."""
        with self._lock:
            machines = list(self._machines.items())
        return {server for (server, _), m in machines if m.poll() is None}

    def stop(self) -> None:
        with self._lock:
            servers = {server for server, _ in self._machines}
        for server in servers:
            self.halt(server)
