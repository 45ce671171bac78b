"""The keys a reviewer trusts, for ``verify --signer``: a public (or private) key file, or
an OpenSSH ``allowed_signers`` file, parsed by the ``sshsig`` package."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs
from sshsig.allowed_signers import AllowedSigner

from precip_repro.exceptions import RecordCorrupted, SignersUnusable
from precip_repro.record.files import read_bounded
from precip_repro.record.signature import (
    NAMESPACE,
    Signature,
    decode_b64,
    fingerprint_of,
    is_key_type,
    key_type,
)
from precip_repro.record.signing import public_key_of

__all__ = ["Trusted", "TrustedKeys"]


SIGNERS_LIMIT: Final = 1 << 20
"""The largest signer file ``--signer`` reads (an allowed_signers file of thousands of keys)."""


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
        give = "give a public key file (alice.pub) or an OpenSSH allowed_signers file"
        try:
            # A regular file of bounded size: /dev/zero or a FIFO must not hang verify.
            found = read_bounded(path, limit=SIGNERS_LIMIT, what="signer file", run=None)
        except OSError as exc:
            raise SignersUnusable(
                f"cannot read the signer file {path}: {exc.strerror or exc}; {give}", path=path
            ) from None
        except RecordCorrupted as exc:
            raise SignersUnusable(f"cannot use the signer file {path}: {exc}; {give}",
                                  path=path) from None  # fmt: skip
        if found is None:
            raise SignersUnusable(
                f"cannot read the signer file {path}: it does not exist; {give}", path=path
            )
        text = found
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

    blob = public_key_of(path)
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
    return Trusted(blob=blob, name=path.name, fingerprint=fingerprint_of(blob))


def _trusted_lines(path: Path, lines: Iterable[str]) -> list[Trusted]:
    found: list[Trusted] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue

        def unusable(why: str, line_number: int = number) -> SignersUnusable:
            return SignersUnusable(f"{path} line {line_number}: {why}", path=path)

        first = line.split(maxsplit=1)[0]
        if is_key_type(first):  # a public key file (or an authorized_keys-like line)
            parts = line.split(maxsplit=2)
            name: str | None = parts[2] if len(parts) > 2 else None
            kind, encoded = parts[0], parts[1] if len(parts) > 1 else ""
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
            name, kind, encoded = allowed.principals, allowed.key_type, allowed.base64_key
            if not is_key_type(kind):
                raise unusable(
                    f"neither a public key nor an allowed_signers line ({kind!r} is no key type)"
                )
        try:
            blob = decode_b64(encoded.encode())
        except ValueError as exc:
            raise unusable(f"its {kind} key is not base64 ({exc})") from None
        if key_type(blob) != kind:
            raise unusable(f"its key is not the {kind} key the line says it is")
        found.append(Trusted(blob=blob, name=name, fingerprint=fingerprint_of(blob)))
    if not found:
        raise SignersUnusable(
            f"the signer file {path} holds no key for namespace {NAMESPACE}: give a public key "
            "file (alice.pub) or an allowed_signers file (`alice@lab ssh-ed25519 AAAA…`)",
            path=path,
        )
    return found


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
