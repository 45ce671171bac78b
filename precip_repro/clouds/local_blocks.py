"""The loopback address blocks of local clouds: each cloud holds one (a /24 in
127.128.0.0/9 unless told otherwise), locked under ``$PRECIP_HOME/local/blocks`` so that two
clouds on one machine — in one process or two — never give out the same address."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from precip_repro.clouds.local_state import live_local_instances
from precip_repro.exceptions import CloudError, InvalidOption
from precip_repro.keys import ensure_home

__all__ = ["POOL", "block_full", "claim_block", "parse_block"]

POOL: Final = ipaddress.IPv4Network("127.128.0.0/9")

# Not the module-level generator: a script that seeds ``random`` for its own work must get
# the same numbers whether or not it starts a local cloud, and a seeded generator would
# send every cloud to the same first block.
_PICK: Final = random.SystemRandom()


def parse_block(block: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(block if "/" in block else f"{block}/24", strict=False)
    except ValueError as exc:
        raise InvalidOption(
            "address_block", block, ["a /24 inside 127.0.0.0/8, e.g. 127.140.3.0/24"]
        ) from exc
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(
        ipaddress.IPv4Network("127.0.0.0/8")
    ):
        raise InvalidOption("address_block", block, ["a block inside 127.0.0.0/8 (loopback)"])
    if network.prefixlen > 28:
        raise InvalidOption("address_block", block, ["a block of at least 16 addresses (/28)"])
    if network.prefixlen < 16:
        # A lock per /24 it touches: a /16 is 256 of them, and 65,533 instances enough.
        raise InvalidOption("address_block", block, ["a block of at most 65,536 addresses (/16)"])
    return network


def claim_block(home: Path, wanted: str | None) -> tuple[ipaddress.IPv4Network, list[int]]:
    """Lock ``wanted``, or a free /24 of :data:`POOL`; return it and the descriptors that
    hold its locks (closing them frees the block).

    A lock is taken on every /24 the block touches, so two blocks that overlap — a /28
    inside another cloud's /24, a /20 around it — are never held at once."""
    blocks = ensure_home(home) / "local" / "blocks"
    blocks.mkdir(parents=True, exist_ok=True)
    if wanted is not None:
        network = parse_block(wanted)
        locks = _lock_all(blocks, _touched(network))
        if locks is None:
            raise CloudError(
                f"address block {network} is in use (in whole or in part) by another local "
                "cloud on this machine; choose another address_block, or leave it out to get "
                "a free one"
            )
        return network, locks
    in_use = {ipaddress.ip_address(s.address) for s in live_local_instances(home)}
    subnets = POOL.prefixlen
    for _ in range(200):
        index = _PICK.randrange(1, 2 ** (24 - subnets))
        network = ipaddress.IPv4Network(f"{POOL.network_address + index * 256}/24")
        if any(address in network for address in in_use):
            continue
        locks = _lock_all(blocks, [network])
        if locks is not None:
            return network, locks
    raise CloudError("no free address block in 127.128.0.0/9; run `precip-repro gc`")


def _touched(network: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    if network.prefixlen >= 24:
        return [network.supernet(new_prefix=24)]
    return list(network.subnets(new_prefix=24))


def _lock_all(blocks: Path, networks: Iterable[ipaddress.IPv4Network]) -> list[int] | None:
    held: list[int] = []
    try:
        for network in networks:
            lock = _lock_block(blocks, network)
            if lock is None:
                break
            held.append(lock)
        else:
            return held
    except BaseException:
        for fd in held:
            os.close(fd)
        raise
    for fd in held:
        os.close(fd)
    return None


def _lock_block(blocks: Path, network: ipaddress.IPv4Network) -> int | None:
    fd = os.open(blocks / f"{network.network_address}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def block_full(block: ipaddress.IPv4Network, free: int) -> CloudError:
    """The error for a launch ``block`` has no address left for (``free`` of them)."""
    bigger = ipaddress.IPv4Network(f"{block.network_address}/20", False)
    total = block.num_addresses - 3
    given = (
        f"is full: this local cloud has given out all its {total} addresses"
        if free == 0
        else f"has {free} of its {total} addresses left: this local cloud gives"
    )
    return CloudError(
        f"address block {block} {given}, one per instance for the whole run "
        "(terminated ones included), so that the record tells instances apart; for "
        "more instances give a larger block, e.g. "
        f"LocalExperiment(address_block={str(bigger)!r})",
        code="AddressBlockFull",
    )
