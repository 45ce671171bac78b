"""The recorded content a replay reads: files and scripts come from the recorded blobs,
or from the user's own copy where the recording kept one by hash only; what a put or
copy_and_run sends is written under the replay's own directory."""

from __future__ import annotations

from pathlib import Path

from precip_repro import (
    BlobStore,
    CallView,
    ContentReader,
    ContentRef,
    ContentWithheld,
    FileView,
    RunView,
)
from replay.exceptions import ReplayFailed
from replay.plan import Step
from replay.remap import Remapper

__all__ = ["RecordedContent"]


def _local_file(path: Path, content: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode or 0o644)
    return path


class RecordedContent(Remapper):
    """The recorded blobs and the user's stand-ins for withheld ones, for
    :class:`replay.engine.Engine` (mixed in); text files sent are remapped."""

    source: RunView
    blobs: BlobStore
    stand_ins: dict[str, Path]
    sent_dir: Path

    def _find_withheld_content(self, steps: list[Step]) -> None:
        """Files and scripts the recording keeps by hash only (they held a secret or a
        private key) come from the user's own copy, found by its hash where the run moved
        it; else stop here."""
        for step in steps:
            call = step.call
            moved = self._content_to_send(call)
            if moved is None or moved.content is None or not moved.content.withheld:
                continue
            sha = moved.content.sha256
            if sha in self.stand_ins:
                continue
            recorded = Path(moved.local_path)
            place, looked = self.source.local_copy(sha)
            if place is not None:
                self.stand_ins[sha] = place
            else:
                where = " or ".join(str(place) for place in looked)
                raise ReplayFailed(
                    f"call #{call.number} {call.exp}.{call.method}: the recording keeps "
                    f"{recorded} by hash only ({moved.content.withheld}), and no file "
                    f"with its sha256 {sha} is at {where}. Put the original file back there "
                    "(or replay from the directory the run was recorded in) and try again",
                    usage=True,
                )

    def _file_to_send(self, call: CallView, recorded_path: str) -> Path:
        """The replay's own copy of what a ``put`` or ``copy_and_run`` sent, from the
        recorded blob. When it sent nothing, what it found: no file where the recorded call
        failed for the want of one (the replay fails the same way), else an empty one (no
        instance matched: nothing is sent)."""
        local = self.sent_dir / str(call.number) / Path(recorded_path).name
        moved = self._content_to_send(call)
        if moved is not None and moved.content is not None:
            return _local_file(local, self._remapped(self._blob(moved.content)), moved.mode)
        if call.error_type == "LocalFileMissing":
            return local  # never written: missing here as it was then
        return _local_file(local, b"", 0o644)

    @staticmethod
    def _content_to_send(call: CallView) -> FileView | None:
        """The recorded file a ``put`` or ``copy_and_run`` sends, if it got that far."""
        if call.method == "put":
            return call.files[0] if call.files else None
        if call.method == "copy_and_run":
            return next((f for f in call.files if f.temporary), None)
        return None

    def _blob(self, ref: ContentRef) -> bytes:
        reader = ContentReader(self.source, stand_ins=self.stand_ins)
        try:
            return reader.read(ref, what="a recorded file")
        except ContentWithheld as exc:
            raise ReplayFailed(str(exc), usage=True) from None
