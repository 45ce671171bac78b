"""Secrets never reach the store: registered values become ``${secret:NAME}``, and the
body of a private key in an output becomes ``${private key withheld}``.

Commands, arguments and outputs are redacted; moved files are never altered — a file that
contains a secret or a private key is kept by hash only (its blob withheld), with a warning
naming it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from precip_repro.exceptions import InvalidOption
from precip_repro.record.canonical import JSON
from precip_repro.record.walk import map_strings

__all__ = [
    "KEY_PLACEHOLDER",
    "PRIVATE_KEY",
    "SECRET_PLACEHOLDER",
    "VERBATIM",
    "Redactor",
    "SecretScanner",
    "credential_variables",
]

MIN_SECRET: Final = 4
MIN_ENV_SECRET: Final = 8
"""Shortest value of a credential variable taken as a secret: a short one (``FOO_TOKEN=1``)
is more likely a flag, and would be replaced all over the record."""
CREDENTIAL_NAMES: Final = frozenset(
    {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN", "EC2_ACCESS_KEY", "EC2_SECRET_KEY", "OS_PASSWORD", "OS_TOKEN",
        "OS_APPLICATION_CREDENTIAL_SECRET", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_KEY",
        "GOOGLE_API_KEY", "PASSWORD", "TOKEN", "SECRET", "API_KEY",
    }
)  # fmt: skip
"""Environment variables that hold cloud (and service) credentials."""
CREDENTIAL_SUFFIXES: Final = (
    "_SECRET", "_SECRET_KEY", "_SECRET_ACCESS_KEY", "_PASSWORD", "_PASSWD", "_TOKEN",
    "_API_KEY", "_APIKEY", "_ACCESS_KEY", "_PRIVATE_KEY",
)  # fmt: skip
"""…and the name endings that say so (``WANDB_API_KEY``, ``HF_TOKEN``, ``CI_JOB_TOKEN``)."""
_CHUNK: Final = 1 << 20
SECRET_PLACEHOLDER: Final = re.compile(r"\$\{secret:([A-Za-z0-9_]+)\}")
"""``${secret:NAME}``, what the record holds in place of a secret; group 1 is NAME."""
PRIVATE_KEY: Final = "a private key"
"""What the scanner says it found in a file holding a private key (PEM, OpenSSH, PGP or
PuTTY): a key is a secret nobody registers, so it is recognised by its armour."""
_KEY_HINT: Final = b"PRIVATE KEY"
"""Searched for first (one quick search per chunk): the armour is confirmed only where found."""
_PUTTY: Final = b"PuTTY-User-Key-File-"
"""How a PuTTY key file begins (it begins so, so only its start is looked at)."""
_SEAM: Final = 64
"""Bytes of a chunk kept for the next, at least: an armour line cut in two is still found."""
_KEY_ARMOUR: Final = rb"-----BEGIN ([A-Z0-9 ]*?)PRIVATE KEY((?: BLOCK)?)-----"
_PRIVATE_KEY_BLOCK: Final = re.compile(
    _KEY_ARMOUR + rb".*?(?:-----END \1PRIVATE KEY\2-----|\Z)", re.DOTALL
)
_ARMOUR: Final = re.compile(_KEY_ARMOUR)
VERBATIM: Final = frozenset(
    {
        "run", "exp", "slot", "instance_id", "method", "status", "verdict", "sha256",
        "digest", "host_key", "image_digest", "key_fingerprint", "access_key_fingerprint",
        "git_commit", "instance",
    }
)  # fmt: skip
"""Keys of event data never redacted: hashes, fingerprints and the record's own ids (a
short secret such as ``2026`` would otherwise rewrite a run id or a digest)."""
FREE_FORM: Final = frozenset({"fields", "args", "result", "facts", "recovered"})
"""Event data whose objects' keys are the user's, not the schema's: redacted too (a note's
field named after a secret)."""
KEY_PLACEHOLDER: Final = "${private key withheld}"
"""What command output holds in place of a private key's body (its armour lines stay)."""


class Redactor:
    """Holds the registered secrets of a run and replaces them. Thread-safe."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}
        """The value of each name: the latest registered (what playback reveals)."""
        self._names: dict[str, str] = {}
        """Every value ever registered, with its name: a name registered again with another
        value (a rotated token, a second cloud's credentials) still hides the first."""
        self._lock = threading.Lock()

    def add(self, name: str, value: str) -> bool:
        """Register ``value`` as secret ``name``; False when it was registered already."""
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise InvalidOption("secret name", name, ["letters, digits and _ (an env var name)"])
        if not isinstance(value, str) or len(value) < MIN_SECRET:
            raise InvalidOption(
                "secret value",
                "<hidden>",
                [
                    f"a string of at least {MIN_SECRET} characters (shorter "
                    "values would be replaced all over the record)"
                ],
            )
        with self._lock:
            known = self._names.get(value) == name
            self._secrets[name] = value
            self._names.setdefault(value, name)
        return not known

    def _pairs(self) -> list[tuple[str, str]]:
        with self._lock:
            # Longest first, so a secret that contains another is replaced whole.
            pairs = [(name, value) for value, name in self._names.items()]
        return sorted(pairs, key=lambda item: -len(item[1]))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        if "PRIVATE KEY" in value:
            value = _without_keys(value.encode("utf-8", "surrogateescape")).decode(
                "utf-8", "surrogateescape"
            )
        if not self._secrets:
            return value
        for name, secret in self._pairs():
            value = _replaced(value, secret, f"${{secret:{name}}}")
        return value

    def reveal(self, value: str) -> str:
        """The inverse of :meth:`text` for the secrets registered: ``${secret:NAME}`` back to
        the value (playback gives a script the outputs it would have seen)."""
        if not self._secrets or "${secret:" not in value:
            return value
        with self._lock:
            secrets = dict(self._secrets)
        return SECRET_PLACEHOLDER.sub(lambda m: secrets.get(m.group(1), m.group(0)), value)

    def data(self, value: bytes) -> bytes:
        if b"PRIVATE KEY" in value:
            value = _without_keys(value)
        if not self._secrets:
            return value
        for name, secret in self._pairs():
            value = _replaced_bytes(value, secret.encode(), f"${{secret:{name}}}".encode())
        return value

    def json(self, value: JSON) -> JSON:
        """``value`` with every string in it redacted: the keys of objects too (a note's
        field named after a secret)."""
        if not self._secrets:
            return value
        return map_strings(value, self.text, keys=True)

    def payload(self, data: dict[str, JSON]) -> dict[str, JSON]:
        """An event's data as the record keeps it: every string value redacted — file
        names, tags, names — and the keys of its free-form objects (a note's fields, a
        call's arguments and result, facts); never the schema's own keys, what names
        content by hash or the record's own ids (:data:`VERBATIM`); a blob reference is left
        whole, since its inline text is what its hash covers."""
        if not self._secrets:
            return data
        return {
            key: item if key in VERBATIM else self._payload_value(item, free=key in FREE_FORM)
            for key, item in data.items()
        }

    def _payload_value(self, value: JSON, *, free: bool) -> JSON:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._payload_value(item, free=free) for item in value]
        if isinstance(value, dict):
            if "sha256" in value:  # a blob reference: its bytes were redacted when stored
                return value
            if free:
                return {
                    self.text(key): self._payload_value(item, free=True)
                    for key, item in value.items()
                }
            return self.payload(value)
        return value

    def scanner(self) -> SecretScanner:
        return SecretScanner(self._pairs())


_WHOLE_PLACEHOLDER: Final = re.compile(r"(\$\{secret:[A-Za-z0-9_]+\})")
_WHOLE_PLACEHOLDER_BYTES: Final = re.compile(rb"(\$\{secret:[A-Za-z0-9_]+\})")


def _replaced(value: str, secret: str, token: str) -> str:
    """``secret`` replaced by ``token`` outside the placeholders already there: redacting
    twice (a command, then the event holding it) must not rewrite ``${secret:NAME}`` when
    a secret is part of it (``cret``), nor a secret found in a shorter one's placeholder."""
    if "${secret:" not in value:
        return value.replace(secret, token)
    parts = _WHOLE_PLACEHOLDER.split(value)
    return "".join(p if i % 2 else p.replace(secret, token) for i, p in enumerate(parts))


def _replaced_bytes(value: bytes, secret: bytes, token: bytes) -> bytes:
    if b"${secret:" not in value:
        return value.replace(secret, token)
    parts = _WHOLE_PLACEHOLDER_BYTES.split(value)
    return b"".join(p if i % 2 else p.replace(secret, token) for i, p in enumerate(parts))


def _without_keys(value: bytes) -> bytes:
    """``value`` with the body of each private key in it replaced (to its end, where the
    output was cut short of the key's last line)."""

    def withheld(found: re.Match[bytes]) -> bytes:
        kind = found.group(1) + b"PRIVATE KEY" + found.group(2)
        return b"-----BEGIN %s-----\n%s\n-----END %s-----" % (kind, KEY_PLACEHOLDER.encode(), kind)

    return _PRIVATE_KEY_BLOCK.sub(withheld, value)


class SecretScanner:
    """Watches a stream of chunks for any registered secret, or a private key, across
    chunk boundaries."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = [(name, secret.encode()) for name, secret in pairs]
        self._keep = max([_SEAM, *(len(secret) for _, secret in self._pairs)]) - 1
        self._tail = b""
        self._head: bytes | None = b""  # the stream's first bytes, until PuTTY's are seen
        self.found: str | None = None
        """The name of the secret found, or :data:`PRIVATE_KEY`."""

    @property
    def reason(self) -> str:
        """Why the blob is withheld, as ``blob.withheld`` and the blob's ref say."""
        return f"holds {PRIVATE_KEY}" if self.found == PRIVATE_KEY else f"holds secret {self.found}"

    def feed(self, chunk: bytes) -> None:
        if self.found is not None:
            return
        if self._head is not None:
            self._head += chunk[: len(_PUTTY)]
            if self._head.startswith(_PUTTY):
                self.found = PRIVATE_KEY
                return
            if len(self._head) >= len(_PUTTY):
                self._head = None
        # The chunk is searched where it lies, and only its seam with the last one is
        # copied: joining every chunk of a large file to the tail cost a fifth of get's speed.
        seam = self._tail + chunk[: self._keep]
        for window in (seam, chunk):
            if _KEY_HINT in window and _ARMOUR.search(window):
                self.found = PRIVATE_KEY
                return
            for name, secret in self._pairs:
                if secret in window:
                    self.found = name
                    return
        self._tail = (
            (self._tail + chunk)[-self._keep :] if len(chunk) < self._keep else chunk[-self._keep :]
        )

    def scan(self, path: Path) -> str | None:
        """Feed a whole file (in chunks); the name of the secret found in it, if any."""
        with path.open("rb") as f:
            while self.found is None and (chunk := f.read(_CHUNK)):
                self.feed(chunk)
        return self.found


def credential_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The credentials in an environment, by variable name: the recognisable cloud keys a
    run redacts without being told (a script that passes ``$AWS_SECRET_ACCESS_KEY`` or
    ``$WANDB_API_KEY`` into a command must not write it into the record). A replay binds
    each again from the variable of the same name."""
    return {
        name: value
        for name, value in environ.items()
        if (name in CREDENTIAL_NAMES or name.endswith(CREDENTIAL_SUFFIXES))
        and len(value) >= MIN_ENV_SECRET
        and not value.isdigit()
        and name.replace("_", "").isalnum()
    }
