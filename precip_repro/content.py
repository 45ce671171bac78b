"""What a run moved, read back: typed references to content and one way to read them.

A reference (:class:`ContentRef`) is an output, a file moved, the script or one of its
modules: inline text, or bytes in the run's blob store, or — when the run withheld them (they
held a secret or a private key) — nothing but their hash and size. :class:`ContentReader`
reads all three: the inline text, the verified blob, or for withheld content the local
file the run moved, found by its hash where it was read or written (playback and replay
need the bytes; diff and report never look there: what was withheld is not shown).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from precip_repro.exceptions import ContentWithheld
from precip_repro.record.blobs import BlobStore
from precip_repro.record.payloads import BlobRef
from precip_repro.record.store import OBJECTS

__all__ = ["TEXT_LIMIT", "ContentReader", "ContentRef"]

TEXT_LIMIT: Final = 1 << 20
"""Content up to this size is read as text to be compared or shown."""


@attrs.define(kw_only=True, eq=True)
class ContentRef:
    """A reference to content a run holds, as its views give it.

    Mutable where the record's :class:`~precip_repro.record.payloads.BlobRef` is frozen:
    one reference is shared by every event naming the same content, and a later
    ``blob.withheld`` event marks it withheld for all of them at once.
    """

    sha256: str
    size: int
    text: str | None = None
    """The content itself, when the record holds it inline."""
    withheld: str | None = None
    """Why the content was not kept, when it was not."""

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> ContentRef | None:
        """The reference a record's JSON holds (None where it holds none)."""
        if not data:
            return None
        sha, size = data.get("sha256"), data.get("size")
        text, withheld = data.get("text"), data.get("withheld")
        if type(sha) is not str:
            return None
        return cls(
            sha256=sha,
            size=size if type(size) is int else 0,
            text=text if type(text) is str else None,
            withheld=withheld if type(withheld) is str else (str(withheld) if withheld else None),
        )

    @property
    def blob(self) -> BlobRef:
        return BlobRef(sha256=self.sha256, size=self.size, text=self.text, withheld=self.withheld)

    @property
    def empty(self) -> bool:
        return self.size == 0

    def as_json(self) -> dict[str, Any]:
        """As the record holds it."""
        out: dict[str, Any] = {"sha256": self.sha256, "size": self.size}
        if self.text is not None:
            out["text"] = self.text
        if self.withheld is not None:
            out["withheld"] = self.withheld
        return out


class MovedContent(Protocol):
    """What a reader needs of a run (a :class:`~precip_repro.runview.RunView`)."""

    @property
    def run(self) -> str: ...

    @property
    def path(self) -> Path: ...

    def local_copy(self, sha256: str) -> tuple[Path | None, list[Path]]: ...


class ContentReader:
    """Reads the content a run's references name.

    ``local_copies``: read withheld content from the local file the run moved (found by its
    hash); ``stand_ins`` maps hashes to files already found (a replay looks them up first,
    once). Without either, withheld content is not read.
    """

    def __init__(
        self,
        view: MovedContent,
        *,
        local_copies: bool = False,
        stand_ins: Mapping[str, Path] | None = None,
    ) -> None:
        self.view = view
        self.blobs = BlobStore(view.path / OBJECTS, run=view.run)
        self.local_copies = local_copies
        self.stand_ins: Mapping[str, Path] = stand_ins if stand_ins is not None else {}

    def read(self, ref: ContentRef, *, what: str = "the content") -> bytes:
        """The bytes; raises :class:`ContentWithheld` naming ``what`` and every place looked
        at when the run withheld them and no local copy holds them any more."""
        if ref.text is not None:
            return ref.text.encode("utf-8")
        if ref.withheld is None or not (self.local_copies or ref.sha256 in self.stand_ins):
            return self.blobs.read_bytes(ref.blob)
        stand_in = self.stand_ins.get(ref.sha256)
        if stand_in is not None:
            content = stand_in.read_bytes()
            if hashlib.sha256(content).hexdigest() != ref.sha256:
                raise ContentWithheld(
                    f"{stand_in} changed: it no longer has the recorded sha256 {ref.sha256} "
                    f"of {what}",
                    run=self.view.run,
                    blob=ref.sha256,
                    reason=ref.withheld,
                )
            return content
        copy, looked = self.view.local_copy(ref.sha256)
        if copy is not None:
            return copy.read_bytes()
        places = " or ".join(str(place) for place in looked)
        where = f" (nor is it at {places} any more)" if looked else ""
        raise ContentWithheld(
            f"the run keeps {what} by hash only ({ref.withheld}){where}",
            run=self.view.run,
            blob=ref.sha256,
            reason=ref.withheld,
        )

    def chunks(self, ref: ContentRef) -> Iterator[bytes]:
        """The stored bytes in verified chunks (nothing for inline or withheld content)."""
        if ref.text is None and ref.withheld is None and ref.size:
            yield from self.blobs.iter_verified(ref.blob)

    def text(self, ref: ContentRef | None, *, limit: int = TEXT_LIMIT) -> str | None:
        """The content as text when it is UTF-8 of at most ``limit`` bytes and can be read;
        else None (binary, large, or withheld)."""
        if ref is None:
            return None
        if ref.text is not None:
            return ref.text
        if ref.size > limit:
            return None
        try:
            return self.read(ref).decode("utf-8")
        except (UnicodeDecodeError, OSError, ValueError, ContentWithheld):
            return None
