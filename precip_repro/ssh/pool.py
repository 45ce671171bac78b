"""Connections per (instance, user), created on demand and reused, and watched.

- The socket has TCP_NODELAY (paramiko does not set it, and a round trip costs ~48 ms
  instead of ~3 without it).
- One thread per pool asks every connection for a sign of life (see ``Connection.probe``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Final

import paramiko

from precip_repro.exceptions import InstanceUnreachable, LoginRefused
from precip_repro.ssh.connection import Connection
from precip_repro.ssh.endpoint import Endpoint
from precip_repro.ssh.flow import PACKET, WINDOW
from precip_repro.ssh.hostkeys import HostKeyPins

__all__ = ["ALIVE_INTERVAL", "SshPool"]


# paramiko logs what its transport thread meets ("Socket exception: Connection reset by
# peer") through logging. In a script that configured none, logging's last-resort handler
# would print it bare on stderr, beside our own error naming the instance; a NullHandler
# keeps it out, and an application's own handlers still get it (propagation is unchanged).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


ALIVE_INTERVAL: Final = 15.0
"""Every ALIVE_INTERVAL seconds each connection asks sshd for a sign of life (as OpenSSH's
``ServerAliveInterval``); see ``ALIVE_TIMEOUT`` (connection.py) for one left unanswered."""


_PREFERRED_CIPHERS: Final = ("aes128-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


class SshPool:
    """Connections per (instance id, user), created on demand and reused. Thread-safe."""

    def __init__(
        self,
        pkey: paramiko.PKey,
        *,
        pins: HostKeyPins | None = None,
        connect_timeout: float = 10,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.pkey = pkey
        self.pins = pins or HostKeyPins()
        self.connect_timeout = connect_timeout
        self.redact = redact
        self._connections: dict[tuple[str, str, str | None], Connection] = {}
        self._lock = threading.Lock()
        self._connecting: dict[tuple[str, str, str | None], threading.Lock] = {}
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self) -> None:
        """One thread for the pool: every connection is asked for a sign of life."""
        while not self._closing.wait(ALIVE_INTERVAL):
            with self._lock:
                conns = list(self._connections.values())
            for conn in conns:
                conn.probe()

    def connection(self, endpoint: Endpoint, user: str, *, become: str | None = None) -> Connection:
        """A connection logged in as ``user`` (acting as ``become`` through sudo, if
        given)."""
        key = (endpoint.instance_id, user, become)
        with self._lock:
            gate = self._connecting.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                existing = self._connections.get(key)
            if existing is not None and existing.active and existing.endpoint == endpoint:
                return existing
            if existing is not None:
                existing.close()
            conn = self._connect(endpoint, user, become)
            with self._lock:
                self._connections[key] = conn
                if self._watcher is None and not self._closing.is_set():
                    self._watcher = threading.Thread(
                        target=self._watch, daemon=True, name="precip-alive-watch"
                    )
                    self._watcher.start()
            return conn

    def _connect(self, endpoint: Endpoint, user: str, become: str | None) -> Connection:
        where = (
            f"instance {endpoint.instance_id} ({endpoint.slot}) at {endpoint.host}:{endpoint.port}"
        )
        try:
            sock = socket.create_connection(
                (endpoint.host, endpoint.port), timeout=self.connect_timeout
            )
        except TimeoutError as exc:
            raise InstanceUnreachable(
                f"{where}: cannot connect (nothing answered within {self.connect_timeout:g} s: "
                f"the instance is not up yet, or a security group or firewall drops tcp/"
                f"{endpoint.port} from this machine)",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except OSError as exc:
            raise InstanceUnreachable(
                f"{where}: cannot connect ({exc.strerror or exc})",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(
            sock, default_window_size=WINDOW, default_max_packet_size=PACKET
        )
        transport.get_security_options().ciphers = _PREFERRED_CIPHERS
        try:
            transport.start_client(timeout=self.connect_timeout)
            self.pins.check(endpoint, transport.get_remote_server_key())
            transport.auth_publickey(user, self.pkey)
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise LoginRefused(
                f"{where}: login as {user!r} was refused ({exc}); the user may not exist "
                "there, or lacks the precip public key in its authorized_keys",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise InstanceUnreachable(
                f"{where}: ssh handshake failed ({exc or type(exc).__name__})",
                instance=endpoint.instance_id,
                slot=endpoint.slot,
            ) from exc
        except BaseException:
            transport.close()
            raise
        return Connection(transport, endpoint, user, become=become, redact=self.redact)

    def discard(self, conn: Connection) -> None:
        """Close a connection found dead and forget it (the next asks for a new one)."""
        with self._lock:
            for key, pooled in list(self._connections.items()):
                if pooled is conn:
                    del self._connections[key]
        conn.close()

    def drop(self, instance_id: str) -> None:
        """Close every connection to an instance (it is being terminated)."""
        with self._lock:
            doomed = [key for key in self._connections if key[0] == instance_id]
            conns = [self._connections.pop(key) for key in doomed]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close()
