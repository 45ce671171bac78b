"""``~/.precip``: the keypair precip-repro logs in with, and the account id.

Created on first use (``PRECIP_HOME`` relocates it; tests use a temporary one). The private
key is mode 0600 in a directory of mode 0700. On EC2-like clouds the public key is
registered as ``precip_<account id>``, as the original precip did.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path

import attrs
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from precip_repro.exceptions import ExperimentException
from precip_repro.logs import get_logger

__all__ = ["Keys", "ensure_home", "fingerprint", "load_keys", "precip_home"]

log = get_logger(__name__)


def precip_home() -> Path:
    """``PRECIP_HOME`` if set, else ``~/.precip``."""
    env = os.environ.get("PRECIP_HOME")
    return Path(env) if env else Path.home() / ".precip"


def ensure_home(home: Path) -> Path:
    """Create the precip home, readable by its owner only: it holds the private key and
    the local instances' host keys. One others could list (made by hand, or by an older
    version) is closed, said in the log."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = home.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        home.chmod(0o700)
        log.warning("precip home was open to others; now only its owner may enter it",
                    path=str(home), was=oct(status.st_mode & 0o777))  # fmt: skip
    return home


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@attrs.frozen(kw_only=True)
class Keys:
    """The account id and the keypair in a precip home."""

    home: Path
    account_id: str
    private_key_path: Path
    public_key: str = attrs.field(repr=False)
    pkey: paramiko.PKey = attrs.field(repr=False, eq=False)

    @property
    def key_name(self) -> str:
        return f"precip_{self.account_id}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pkey)


def load_keys(home: Path | None = None) -> Keys:
    """Load the keys in ``home`` (default :func:`precip_home`), creating them if missing."""
    home = home or precip_home()
    try:
        ensure_home(home)
        account_file = home / "account_id"
        if not account_file.exists():
            _write_private(account_file, uuid.uuid4().hex.encode() + b"\n", mode=0o644)
        account_id = account_file.read_text().strip()
        private = home / f"precip_{account_id}"
        public = home / f"precip_{account_id}.pub"
        if not private.exists():
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            _write_private(private, pem, mode=0o600)
        if private.stat().st_mode & 0o077:
            private.chmod(0o600)
        pkey = _private_key(private)
        if not public.exists():
            line = f"{pkey.get_name()} {pkey.get_base64()}".encode()
            _write_private(public, line + f" precip_{account_id}\n".encode(), mode=0o644)
            log.info("keypair created", path=str(private))
    except OSError as exc:
        raise ExperimentException(
            f"cannot use the precip keys in {home}: {exc}; fix the permissions or point "
            "PRECIP_HOME at a writable directory"
        ) from exc
    return Keys(
        home=home,
        account_id=account_id,
        private_key_path=private,
        public_key=f"{pkey.get_name()} {pkey.get_base64()}",
        pkey=pkey,
    )


def _private_key(path: Path) -> paramiko.PKey:
    """The private key in ``path``, of whatever type: ours are Ed25519, but a home made by
    the original precip holds an RSA key (from ssh-keygen) that its clouds already know."""
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        # An encrypted key: cryptography's TypeError; an unknown format: SSHException.
        raise ExperimentException(
            f"cannot use the private key {path}: {exc}; precip-repro logs in with an RSA, "
            "ECDSA or Ed25519 key without a passphrase. Move that file away (with its .pub) "
            "to have a new key made, or point PRECIP_HOME elsewhere"
        ) from exc


def _write_private(path: Path, content: bytes, *, mode: int) -> None:
    """Create ``path`` whole or not at all; if another process created it first, keep theirs."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
