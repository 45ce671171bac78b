"""How data flows over a connection: in chunks, each handed to the caller's :data:`Sink`
(to hash and store in the same pass), through windows, packets and SFTP requests sized
for throughput (bench/sftp.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["CHUNK", "PACKET", "PREFETCH", "REQUEST", "SFTP_WINDOW", "WINDOW", "Sink"]


Sink = Callable[[bytes], None]


CHUNK: Final = 1 << 20
WINDOW: Final = 16 << 20
PACKET: Final = 255 << 10
REQUEST: Final = 255 << 10
"""SFTP read/write request size: OpenSSH's sftp-server accepts 255 KiB (paramiko asks for
32 KiB by default, which makes a download four times slower)."""
PREFETCH: Final = 64
SFTP_WINDOW: Final = 1 << 20
"""The SFTP channel's receive window. Small on purpose: paramiko buffers what arrives in an
array it trims from the front, so a download through a 16 MiB window spends its time moving
megabytes of buffer; through 1 MiB (with 64 requests in flight) it runs at ~500 MB/s on
loopback instead of ~350 (bench/sftp.py)."""
