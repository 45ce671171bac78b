"""DSSE envelopes signed with the run's ssh key, checked with securesystemslib.

The run's checkpoint is signed with an ssh key (the precip key, ``PRECIP_SIGNING_KEY``, or
a key ``ssh-agent`` holds); the attestation's envelope is signed with the same key, through
paramiko as the checkpoint is (so agent-held keys work). An ssh signature is the raw
signature in an SSH wrapping: unwrapped, it is what DSSE and securesystemslib expect —
Ed25519's 64 bytes, RSA PKCS#1 v1.5 over SHA-256, ECDSA's (r, s) as DER. The envelope's
``keyid`` is the key's OpenSSH fingerprint (``SHA256:…``), as ``ssh-keygen -l`` prints it.

securesystemslib builds the pre-authentication encoding, the envelope and checks it:
:func:`verify_envelope` is what any in-toto tool would do with the public key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import Key, Signature, SSlibKey
from securesystemslib.signer import Signer as SSlibSigner

from precip_repro.exceptions import PackageTampered, SigningFailed
from precip_repro.record.signature import fingerprint_of, key_line, key_type

if TYPE_CHECKING:
    from precip_repro.record.signing import Signer

__all__ = [
    "PAYLOAD_TYPE",
    "SshKeySigner",
    "public_key",
    "sign_payload",
    "verify_envelope",
]

PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"

_SCHEMES: Final = {
    "ssh-ed25519": "ed25519",
    "ssh-rsa": "rsa-pkcs1v15-sha256",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
}


def public_key(line: str) -> SSlibKey:
    """An OpenSSH public key line (``ssh-ed25519 AAAA…``) as securesystemslib's key, whose
    keyid is its OpenSSH fingerprint. Raises ValueError for a type DSSE has no scheme for."""
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    kind = line.split()[0]
    scheme = _SCHEMES.get(kind)
    if scheme is None:
        raise ValueError(f"a {kind} key cannot sign a DSSE envelope ({', '.join(_SCHEMES)})")
    from precip_repro.record.signature import decode_b64

    blob = decode_b64(line.split()[1].encode())
    crypto_key = load_ssh_public_key(line.encode())
    return SSlibKey.from_crypto(crypto_key, keyid=fingerprint_of(blob), scheme=scheme)


class SshKeySigner(SSlibSigner):
    """securesystemslib's signer interface over the key that signs runs (a key file or
    ``ssh-agent``)."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.blob = signer.key.asbytes()
        self.kind = key_type(self.blob)
        self._public = public_key(key_line(self.blob))

    @property
    def public_key(self) -> Key:
        return self._public

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None
    ) -> SshKeySigner:
        raise NotImplementedError("an ssh key is loaded by precip_repro.record.signing")

    def sign(self, payload: bytes) -> Signature:
        import paramiko

        algorithm = "rsa-sha2-256" if self.kind == "ssh-rsa" else None
        try:
            signed = self.signer.key.sign_ssh_data(payload, algorithm)
        except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
            where = "ssh-agent" if self.signer.via_agent else "the key"
            raise SigningFailed(
                f"{where} refused to sign the attestation with {self.signer.path}: {exc}",
                key=self.signer.path,
            ) from exc
        message = paramiko.Message(signed if isinstance(signed, bytes) else signed.asbytes())
        message.get_text()  # the algorithm
        raw = message.get_binary()
        if self.kind.startswith("ecdsa-"):
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

            inner = paramiko.Message(raw)
            raw = encode_dss_signature(inner.get_mpint(), inner.get_mpint())
        return Signature(keyid=self._public.keyid, sig=raw.hex())


def sign_payload(payload: bytes, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` (an in-toto statement) signed by ``signer``."""
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(SshKeySigner(signer))
    return envelope.to_dict()


def verify_envelope(document: dict[str, Any], key: str, *, path: str) -> bytes:
    """The payload of a DSSE envelope once its signature by ``key`` (an OpenSSH public key
    line) checks; raises :class:`PackageTampered` naming ``path`` otherwise."""
    try:
        envelope = Envelope.from_dict(
            dict(document, signatures=[dict(s) for s in document["signatures"]])
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PackageTampered(f"{path} is not a DSSE envelope ({exc})", path=path) from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise PackageTampered(
            f"{path} holds {envelope.payload_type!r}, not an in-toto statement", path=path
        )
    try:
        verifier = public_key(key)
    except ValueError as exc:
        raise PackageTampered(f"{path}: {exc}", path=path) from None
    try:
        envelope.verify([verifier], 1)
    except VerificationError:
        raise PackageTampered(
            f"{path}: its signature does not check with the key that signed the run "
            f"({verifier.keyid}): the attestation was altered, or signed by another key",
            path=path,
        ) from None
    return envelope.payload
