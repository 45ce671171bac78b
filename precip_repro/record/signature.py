"""A run's signature: ``checkpoint.sig``, an OpenSSH ``SSHSIG`` over the checkpoint's bytes,
and how it is checked.

The checkpoint names the run, its event count and its digest (the hash of its last event,
which chains every event before it, and every blob by its hash), so a signature of those
few bytes signs the whole run. It is exactly what ``ssh-keygen -Y sign -n precip-repro``
writes, so a reviewer checks it with OpenSSH alone::

    ssh-keygen -Y verify -f allowed_signers -I alice@lab -n precip-repro \\
        -s RUN/checkpoint.sig < RUN/checkpoint

The SSHSIG structures and armour, and the checking of Ed25519 and RSA signatures, come from
the ``sshsig`` package; ECDSA signatures (which it does not know) are checked with paramiko,
imported only then: reading runs must not pay for it. Signing is
:mod:`precip_repro.record.signing`; the keys a reviewer trusts :mod:`precip_repro.record.trusted`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Final

import attrs
from sshsig.binary_io import SshReader, SshWriter, ssh_read_string_pair
from sshsig.ssh_public_key import PublicKey
from sshsig.sshsig import SshsigSignature, SshsigWrapper, ssh_dearmor_sshsig

from precip_repro.exceptions import RecordCorrupted
from precip_repro.record.files import read_bounded
from precip_repro.record.store import CHECKPOINT, Checkpoint

__all__ = [
    "HASH",
    "MAX_SIGNATURE",
    "NAMESPACE",
    "SIGNATURE",
    "Signature",
    "decode_b64",
    "fingerprint_of",
    "is_key_type",
    "key_line",
    "key_type",
    "read_signature",
]

SIGNATURE: Final = "checkpoint.sig"
NAMESPACE: Final = "precip-repro"
HASH: Final = "sha512"
MAX_SIGNATURE: Final = 64 * 1024
"""An SSHSIG of a 16384-bit RSA key is about 3 KiB armoured: anything larger is not one."""
_HASHES: Final = ("sha256", "sha512")  # what PROTOCOL.sshsig allows


@attrs.frozen(kw_only=True)
class Signature:
    """A checked signature: the signer's public key (OpenSSH's one-line form) and its
    ``SHA256:`` fingerprint. ``checked`` is False for a key type we cannot check (its
    signature is neither accepted nor called bad; ``ssh-keygen -Y verify`` may know it)."""

    key: str
    fingerprint: str
    checked: bool = True

    @property
    def blob(self) -> bytes:
        return decode_b64(self.key.split()[1].encode())


def read_signature(run_dir: Path, checkpoint: Checkpoint, *, run: str | None = None) -> (
    Signature | None
):  # fmt: skip
    """The run's signature checked against its checkpoint's bytes; None when it has none.

    Raises :class:`RecordCorrupted` when it is not an SSHSIG of ours or does not verify:
    the checkpoint or the signature was altered after signing."""
    path = run_dir / SIGNATURE
    raw = read_bounded(path, limit=MAX_SIGNATURE, what="signature", run=run)
    if raw is None:
        return None
    message = read_bounded(run_dir / CHECKPOINT, limit=MAX_SIGNATURE, what="checkpoint", run=run)

    def bad(reason: str) -> RecordCorrupted:
        return RecordCorrupted(f"signature {path}: {reason}", run=run, path=path)

    if message is None or not _same_checkpoint(message, checkpoint):
        raise bad("the checkpoint changed while it was being verified")
    try:
        decoded = ssh_dearmor_sshsig(raw)
        outer = SshsigSignature(decoded)
        # sshsig reads leniently (a length past the end reads what is there): only the
        # one encoding of what it read is accepted, so no byte of a signature is slack.
        canonical = bytes(outer) == decoded and _canonical_pair(outer.signature)
    except (ValueError, NotImplementedError, UnicodeDecodeError, IndexError, struct.error) as exc:
        raise bad(f"is not an OpenSSH SSHSIG signature ({exc})") from None
    if not canonical:
        raise bad("is not an OpenSSH SSHSIG signature (its fields are not encoded as SSH strings)")
    if outer.namespace != NAMESPACE.encode():
        raise bad(f"is for namespace {outer.namespace!r}, not {NAMESPACE!r}")
    hash_name = outer.hash_algo.decode("ascii", "replace")
    if hash_name not in _HASHES:
        raise bad(f"uses hash {hash_name!r}, not one of {', '.join(_HASHES)}")
    signed = SshsigWrapper(
        namespace=outer.namespace,
        hash_algo=outer.hash_algo,
        hash=hashlib.new(hash_name, message).digest(),
    ).to_bytes()
    blob = outer.public_key
    signer = Signature(key=key_line(blob), fingerprint=fingerprint_of(blob))
    key = PublicKey.do_from_ssh_encoding(blob)
    if isinstance(key, PublicKey) and decode_b64(key.openssh_str().split()[1].encode()) != blob:
        raise bad(f"holds a malformed {key_type(blob)} public key")
    if isinstance(key, PublicKey):
        try:
            good = key.do_verify(outer.signature, signed) is None
        except (ValueError, AssertionError, IndexError, struct.error):
            good = False  # a signature of another key type inside: not one of this key
    elif isinstance(key, NotImplementedError):
        checked = _check_other(blob, outer.signature, signed)
        if checked is None:
            return attrs.evolve(signer, checked=False)
        good = checked
    else:
        raise bad(f"holds a public key that cannot be read ({key})")
    if not good:
        raise bad(
            f"does not verify against the checkpoint (signed by {signer.fingerprint}): the "
            "checkpoint or its signature was altered after signing"
        )
    return signer


def _check_other(blob: bytes, signature: bytes, signed: bytes) -> bool | None:
    """Whether ``signature`` of ``signed`` checks with the key ``blob`` of a type ``sshsig``
    does not know (ECDSA); None when paramiko does not know it either."""
    import paramiko
    from paramiko.pkey import UnknownKeyType

    try:
        key = paramiko.PKey.from_type_string(key_type(blob), blob)
    except (paramiko.SSHException, UnknownKeyType, ValueError, TypeError):
        return None
    if key.asbytes() != blob:
        return False  # malformed: not the key it reads as
    try:
        return bool(key.verify_ssh_sig(signed, paramiko.Message(signature)))
    except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error):
        return False


def _canonical_pair(signature: bytes) -> bool:
    """Whether an SSH signature blob is exactly two SSH strings (its algorithm, its bytes)."""
    algorithm, raw = ssh_read_string_pair(signature)
    again = SshWriter(io.BytesIO())
    again.write_string(algorithm)
    again.write_string(raw)
    return again.output_fh.getvalue() == signature


def _same_checkpoint(message: bytes, checkpoint: Checkpoint) -> bool:
    try:
        body = json.loads(message)
    except ValueError:
        return False
    return isinstance(body, dict) and (body.get("run"), body.get("events"), body.get("digest")) == (
        checkpoint.run,
        checkpoint.events,
        checkpoint.digest,
    )


def key_type(blob: bytes) -> str:
    """The type an SSH public key blob names in its first string (``ssh-ed25519`` …)."""
    try:
        return SshReader(blob).read_string().decode("ascii")
    except (ValueError, UnicodeDecodeError, struct.error):
        return "unknown"


def key_line(blob: bytes) -> str:
    return f"{key_type(blob)} {base64.b64encode(blob).decode()}"


def fingerprint_of(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def decode_b64(text: bytes) -> bytes:
    return base64.b64decode(text, validate=True)


def is_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"))
