"""Signing a finished run: finding the key, and writing ``checkpoint.sig``
(:mod:`precip_repro.record.signature` says what it is and checks it).

The key is the precip key (``~/.precip``) unless ``PRECIP_SIGNING_KEY`` names another ssh
key; a passphrase-protected key (or its ``.pub`` alone) is used through ``ssh-agent``.
Signing never costs a run: when the key cannot sign, the run finishes unsigned and the
reason — the key file and what to do — is said once.

paramiko, a dependency already, loads keys, talks to the agent and signs (RSA with
``rsa-sha2-512``: OpenSSH refuses SHA-1 in an SSHSIG); the ``sshsig`` package has the
SSHSIG structures and armour but cannot sign, and securesystemslib has no SSH signer.
paramiko is imported when a run is signed, not before: reading runs must not pay for it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
from sshsig.sshsig import SshsigWrapper, ssh_enarmor_sshsig

from precip_repro.exceptions import ExperimentException, SigningFailed
from precip_repro.logs import get_logger
from precip_repro.record.files import read_bounded, write_durably
from precip_repro.record.signature import (
    HASH,
    MAX_SIGNATURE,
    NAMESPACE,
    SIGNATURE,
    Signature,
    decode_b64,
    fingerprint_of,
    key_line,
)
from precip_repro.record.store import CHECKPOINT

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "ENV_KEY",
    "Signer",
    "Signing",
    "load_signer",
    "public_key_of",
    "sign_checkpoint",
    "sign_run",
]

log = get_logger(__name__)

ENV_KEY: Final = "PRECIP_SIGNING_KEY"


def _ssh_string_bytes(message: paramiko.Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.asbytes()


@attrs.frozen(kw_only=True)
class Signer:
    """A key that signs checkpoints: loaded from a file, or held by ``ssh-agent``."""

    key: paramiko.PKey = attrs.field(repr=False)
    path: Path
    """The key file it was named by (for messages)."""
    agent: paramiko.Agent | None = attrs.field(default=None, repr=False, eq=False)
    """The agent holding the key, connected until :meth:`close`."""

    @property
    def via_agent(self) -> bool:
        return self.agent is not None

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.key.asbytes())

    def sign(self, message: bytes) -> bytes:
        """The armoured SSHSIG of ``message`` in our namespace (``ssh-keygen -Y sign``)."""
        import paramiko

        signed = SshsigWrapper(
            namespace=NAMESPACE.encode(),
            hash_algo=HASH.encode(),
            hash=hashlib.sha512(message).digest(),
        ).to_bytes()
        # RSA must sign with SHA-2 (rsa-sha2-512): OpenSSH refuses SHA-1 in an SSHSIG.
        algorithm = "rsa-sha2-512" if self.key.get_name() == "ssh-rsa" else None
        try:
            raw = _ssh_string_bytes(self.key.sign_ssh_data(signed, algorithm))
        except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
            where = "ssh-agent" if self.via_agent else "the key"
            raise SigningFailed(
                f"{where} refused to sign with {self.path}: {exc}; the run stays unsigned",
                key=self.path,
            ) from exc
        outer = paramiko.Message()
        outer.add_bytes(b"SSHSIG")
        outer.add_int(1)
        outer.add_string(self.key.asbytes())
        outer.add_string(NAMESPACE.encode())
        outer.add_string(b"")
        outer.add_string(HASH.encode())
        outer.add_string(raw)
        return ssh_enarmor_sshsig(outer.asbytes()).encode()


def public_key_of(path: Path) -> bytes | None:
    """The public key beside ``path`` (``path.pub``), or in ``path`` itself when it is a
    public key file; None when neither is one."""
    import paramiko
    from paramiko.pkey import UnknownKeyType

    for candidate in (path, path.with_name(path.name + ".pub")):
        try:
            first = candidate.read_bytes()[:16384].split(b"\n", 1)[0].split()
        except OSError:
            continue
        if len(first) >= 2 and not first[0].startswith(b"-----"):
            try:
                return paramiko.PKey.from_type_string(
                    first[0].decode(), decode_b64(first[1])
                ).asbytes()
            except (paramiko.SSHException, UnknownKeyType, ValueError, UnicodeDecodeError):
                continue
    return None


def _from_agent(path: Path, blob: bytes) -> Signer | None:
    import paramiko

    if not os.environ.get("SSH_AUTH_SOCK"):
        return None
    try:
        agent = paramiko.Agent()
    except (paramiko.SSHException, OSError):
        return None  # no agent answers there: the caller says what to do
    try:
        for key in agent.get_keys():
            if key.asbytes() == blob:
                return Signer(key=key, path=path, agent=agent)
    except paramiko.SSHException:
        pass  # an agent that does not answer as one holds nothing for us
    agent.close()
    return None


def load_signer(path: Path | None = None) -> Signer:
    """The key runs are signed with: ``path``, else ``$PRECIP_SIGNING_KEY``, else the
    precip key. A key file that needs a passphrase (or a ``.pub`` alone) is used through
    ``ssh-agent`` when the agent holds it. Raises :class:`SigningFailed`, one line naming
    the key file and what to do."""
    import paramiko
    from paramiko.pkey import UnknownKeyType

    from precip_repro.keys import load_keys, precip_home

    if path is None:
        named = os.environ.get(ENV_KEY)
        if named:
            path = Path(named).expanduser()
        else:
            try:
                path = load_keys().private_key_path
            except ExperimentException as exc:
                raise SigningFailed(
                    f"cannot sign with the precip key in {precip_home()}: {exc}",
                    key=precip_home(),
                ) from exc
    try:
        with warnings.catch_warnings():  # cryptography's for DSA: we say it below
            warnings.simplefilter("ignore")
            key = paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise SigningFailed(
            f"the signing key {path} does not exist; set {ENV_KEY} to an ssh private key "
            "file (or to its .pub, with the key in ssh-agent)",
            key=path,
        ) from None
    except (TypeError, ValueError, paramiko.SSHException, UnknownKeyType, OSError) as exc:
        # TypeError: a passphrase is needed; ValueError: not a private key (a .pub?);
        # UnknownKeyType: DSA and others paramiko cannot sign with.
        blob = public_key_of(path)
        signer = _from_agent(path, blob) if blob is not None else None
        if signer is not None:
            return signer
        if isinstance(exc, UnknownKeyType):
            raise SigningFailed(
                f"the signing key {path} is of a type precip-repro cannot sign with; use an "
                f"Ed25519, ECDSA or RSA key ({ENV_KEY})",
                key=path,
            ) from exc
        if isinstance(exc, TypeError):
            why = (
                f"is passphrase-protected and no ssh-agent holds it: `ssh-add {path}` (with "
                f"SSH_AUTH_SOCK set), or set {ENV_KEY} to a key without a passphrase"
            )
        elif blob is not None:
            why = (
                "is a public key and no ssh-agent holds its private key: `ssh-add` that key "
                f"(with SSH_AUTH_SOCK set), or set {ENV_KEY} to the private key file"
            )
        else:
            why = f"is not an ssh private key ({exc}); set {ENV_KEY} to one"
        raise SigningFailed(f"the signing key {path} {why}", key=path) from exc
    if not key.can_sign():  # pragma: no cover - from_path loads private keys only
        raise SigningFailed(f"the signing key {path} cannot sign", key=path)
    return Signer(key=key, path=path)


def sign_checkpoint(run_dir: Path, signer: Signer, *, run: str | None = None) -> Signature:
    """Sign the checkpoint's bytes as they are on disk; write ``checkpoint.sig`` atomically
    and durably (temp file, fsync, rename, fsync dir). Returns what a verifier will find."""
    message = read_bounded(run_dir / CHECKPOINT, limit=MAX_SIGNATURE, what="checkpoint", run=run)
    if message is None:
        raise SigningFailed(f"run {run or run_dir.name} has no checkpoint to sign", key=signer.path)
    armoured = signer.sign(message)
    try:
        write_durably(run_dir / SIGNATURE, armoured)
    except OSError as exc:
        raise SigningFailed(
            f"the signature of run {run or run_dir.name} could not be written to "
            f"{run_dir / SIGNATURE}: {exc.strerror or exc}; the run stays unsigned",
            key=signer.path,
        ) from exc
    blob = signer.key.asbytes()
    return Signature(key=key_line(blob), fingerprint=fingerprint_of(blob))


@attrs.frozen(kw_only=True)
class Signing:
    """How a finished run came out: its signature, or why it has none."""

    signature: Signature | None
    problem: str | None = None


def sign_run(run_dir: Path, *, run: str, signer: Signer | None = None) -> Signing:
    """Sign a finished run's checkpoint with ``signer`` (default: :func:`load_signer`).

    Never raises: the run is finished whatever becomes of its signature, so a key that
    cannot sign leaves it unsigned, said once in the log (the key file and what to do)."""
    try:
        used = signer if signer is not None else load_signer()
        try:
            signature = sign_checkpoint(run_dir, used, run=run)
        finally:
            if signer is None:  # ours: done with its agent; a caller's stays open
                used.close()
    except SigningFailed as exc:
        log.warning("the run finished unsigned", run=run, reason=str(exc))
        return Signing(signature=None, problem=str(exc))
    except Exception as exc:  # a bug in signing must not cost a run that has finished
        log.warning("the run finished unsigned", run=run, reason=repr(exc))
        return Signing(signature=None, problem=f"signing failed: {exc!r}")
    log.info("run signed", run=run, signer=signature.fingerprint)
    return Signing(signature=signature)
