"""Signed runs: an OpenSSH ``SSHSIG`` signature over a finished run's checkpoint.

The checkpoint names the run, its event count and its digest (the hash of its last event,
which chains every event before it, and every blob by its hash), so signing those few
bytes signs the whole run. The signature is ``checkpoint.sig`` beside it, exactly what
``ssh-keygen -Y sign -n precip-repro`` writes, so a reviewer checks it with OpenSSH alone::

    ssh-keygen -Y verify -f allowed_signers -I alice@lab -n precip-repro \\
        -s RUN/checkpoint.sig < RUN/checkpoint

The key is the precip key (``~/.precip``) unless ``PRECIP_SIGNING_KEY`` names another ssh
key; a passphrase-protected key is used through ``ssh-agent``. Signing never costs a run:
when the key cannot sign, the run finishes unsigned and the reason is said once.

The SSHSIG structures and armour, the ``allowed_signers`` format and the checking of
Ed25519 and RSA signatures come from the ``sshsig`` package; paramiko (imported only when a
run is signed, or a signature of another key type is checked: reading runs must not pay for
it) loads keys, talks to ``ssh-agent``, signs, and checks ECDSA signatures.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs
from sshsig.allowed_signers import AllowedSigner
from sshsig.binary_io import SshReader, SshWriter, ssh_read_string_pair
from sshsig.ssh_public_key import PublicKey
from sshsig.sshsig import (
    SshsigSignature,
    SshsigWrapper,
    ssh_dearmor_sshsig,
    ssh_enarmor_sshsig,
)

from precip_repro.exceptions import (
    ExperimentException,
    RecordCorrupted,
    SignersUnusable,
    SigningFailed,
)
from precip_repro.logs import get_logger
from precip_repro.record.files import read_bounded
from precip_repro.record.store import CHECKPOINT, Checkpoint

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "HASH",
    "NAMESPACE",
    "SIGNATURE",
    "Signature",
    "Signer",
    "Signing",
    "Trusted",
    "TrustedKeys",
    "load_signer",
    "read_signature",
    "sign_checkpoint",
    "sign_run",
]

log = get_logger(__name__)

SIGNATURE: Final = "checkpoint.sig"
NAMESPACE: Final = "precip-repro"
HASH: Final = "sha512"
ENV_KEY: Final = "PRECIP_SIGNING_KEY"
MAX_SIGNATURE: Final = 64 * 1024
"""An SSHSIG of a 16384-bit RSA key is about 3 KiB armoured: anything larger is not one."""
_HASHES: Final = ("sha256", "sha512")  # what PROTOCOL.sshsig allows


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
        return _fingerprint(self.key.asbytes())

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


def _public_blob(path: Path) -> bytes | None:
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
                return paramiko.PKey.from_type_string(first[0].decode(), _b64(first[1])).asbytes()
            except (paramiko.SSHException, UnknownKeyType, ValueError, UnicodeDecodeError):
                continue
    return None


def _b64(text: bytes) -> bytes:
    return base64.b64decode(text, validate=True)


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
        blob = _public_blob(path)
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
    tmp = run_dir / f".{SIGNATURE}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
        try:
            os.write(fd, armoured)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(run_dir / SIGNATURE)
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise SigningFailed(
            f"the signature of run {run or run_dir.name} could not be written to "
            f"{run_dir / SIGNATURE}: {exc.strerror or exc}; the run stays unsigned",
            key=signer.path,
        ) from exc
    blob = signer.key.asbytes()
    return Signature(key=_key_line(blob), fingerprint=_fingerprint(blob))


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
        return _b64(self.key.split()[1].encode())


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
    signer = Signature(key=_key_line(blob), fingerprint=_fingerprint(blob))
    key = PublicKey.do_from_ssh_encoding(blob)
    if isinstance(key, PublicKey) and _b64(key.openssh_str().split()[1].encode()) != blob:
        raise bad(f"holds a malformed {_key_type(blob)} public key")
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
        key = paramiko.PKey.from_type_string(_key_type(blob), blob)
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


def _key_type(blob: bytes) -> str:
    """The type an SSH public key blob names in its first string (``ssh-ed25519`` …)."""
    try:
        return SshReader(blob).read_string().decode("ascii")
    except (ValueError, UnicodeDecodeError, struct.error):
        return "unknown"


def _key_line(blob: bytes) -> str:
    return f"{_key_type(blob)} {base64.b64encode(blob).decode()}"


def _fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@attrs.frozen(kw_only=True)
class Trusted:
    """One key a reviewer trusts, and the name it goes by (an allowed_signers principal,
    or a public key's comment)."""

    blob: bytes = attrs.field(repr=False)
    name: str | None
    fingerprint: str


@attrs.frozen(kw_only=True)
class TrustedKeys:
    """The keys ``verify --signer`` accepts: read from a public (or private) key file or
    an OpenSSH ``allowed_signers`` file."""

    source: Path
    keys: tuple[Trusted, ...]

    def find(self, signature: Signature) -> Trusted | None:
        return next((key for key in self.keys if key.blob == signature.blob), None)

    @classmethod
    def load(cls, path: Path) -> TrustedKeys:
        """Raises :class:`SignersUnusable` naming the file and line when it holds no key."""
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise SignersUnusable(
                f"cannot read the signer file {path}: {exc.strerror or exc}; give a public "
                "key file (alice.pub) or an OpenSSH allowed_signers file",
                path=path,
            ) from None
        if text.startswith(b"-----BEGIN"):
            return cls(source=path, keys=(_private_as_trusted(path),))
        try:
            lines = text.decode("ascii").splitlines()
        except UnicodeDecodeError:
            raise SignersUnusable(
                f"the signer file {path} is not a public key or allowed_signers file (it is "
                "not text)",
                path=path,
            ) from None
        return cls(source=path, keys=tuple(_trusted_lines(path, lines)))


def _private_as_trusted(path: Path) -> Trusted:
    import paramiko
    from paramiko.pkey import UnknownKeyType

    blob = _public_blob(path)
    if blob is None:
        try:
            key = paramiko.PKey.from_path(path)
        except (
            TypeError,
            ValueError,
            paramiko.SSHException,
            UnknownKeyType,
            OSError,
        ) as exc:
            raise SignersUnusable(
                f"cannot read a key from the signer file {path} ({exc}); give its public key "
                "(the .pub file) instead",
                path=path,
            ) from exc
        blob = key.asbytes()
    return Trusted(blob=blob, name=path.name, fingerprint=_fingerprint(blob))


def _trusted_lines(path: Path, lines: Iterable[str]) -> list[Trusted]:
    found: list[Trusted] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue

        def unusable(why: str, line_number: int = number) -> SignersUnusable:
            return SignersUnusable(f"{path} line {line_number}: {why}", path=path)

        first = line.split(maxsplit=1)[0]
        if _is_key_type(first):  # a public key file (or an authorized_keys-like line)
            parts = line.split(maxsplit=2)
            name: str | None = parts[2] if len(parts) > 2 else None
            key_type, encoded = parts[0], parts[1] if len(parts) > 1 else ""
        else:
            try:
                allowed = AllowedSigner.parse(line)
            except (ValueError, IndexError) as exc:
                raise unusable(
                    f"neither a public key nor an allowed_signers line ({exc})"
                ) from None
            options = allowed.options or {}
            unsupported = sorted(set(options) - {"namespaces"})
            if unsupported:
                raise unusable(
                    f"uses {', '.join(unsupported)}, which precip-repro does not check; "
                    "check with ssh-keygen -Y verify instead, or remove the option"
                )
            patterns = options.get("namespaces")
            if patterns is not None and not _matches(NAMESPACE, patterns):
                continue  # that key may sign other things, not runs
            name, key_type, encoded = allowed.principals, allowed.key_type, allowed.base64_key
            if not _is_key_type(key_type):
                raise unusable(
                    f"neither a public key nor an allowed_signers line ({key_type!r} is no "
                    "key type)"
                )
        try:
            blob = _b64(encoded.encode())
        except ValueError as exc:
            raise unusable(f"its {key_type} key is not base64 ({exc})") from None
        if _key_type(blob) != key_type:
            raise unusable(f"its key is not the {key_type} key the line says it is")
        found.append(Trusted(blob=blob, name=name, fingerprint=_fingerprint(blob)))
    if not found:
        raise SignersUnusable(
            f"the signer file {path} holds no key for namespace {NAMESPACE}: give a public key "
            "file (alice.pub) or an allowed_signers file (`alice@lab ssh-ed25519 AAAA…`)",
            path=path,
        )
    return found


def _is_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"))


def _matches(namespace: str, patterns: str) -> bool:
    """OpenSSH's pattern list: comma-separated, ``*`` and ``?``, ``!`` negates."""
    allowed = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(namespace, pattern.lstrip("!")):
            if negated:
                return False
            allowed = True
    return allowed


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
