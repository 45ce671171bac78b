"""Content references read back: inline, stored, or withheld with the run's local copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from precip_repro import ContentReader, ContentRef, ContentWithheld, GrowingView
from precip_repro.loading import ViewBuilder
from precip_repro.record.blobs import BlobStore
from precip_repro.runview import RunView

TS = "2026-12-04T00:00:00.000000Z"


def run_with_put(run_dir: Path, local: Path, content: bytes, *, withheld: str | None) -> RunView:
    """A run that put ``local`` (``content``), stored or kept by hash only."""
    blobs = BlobStore(run_dir / "objects", run=run_dir.name)
    ref = blobs.put_bytes(content)
    data = {"sha256": ref.sha256, "size": ref.size}
    if withheld:
        blobs.remove(ref.sha256)
        data["withheld"] = withheld
    builder = ViewBuilder(run_dir)
    builder.add_parts("run.started", TS, {"run": run_dir.name, "cwd": str(run_dir.parent)})
    builder.add_parts("call.started", TS, {"call": 1, "exp": "e1", "method": "put", "args": {}})
    builder.add_parts(
        "file.put", TS,
        {"call": 1, "slot": "e1.p1.0", "instance_id": "i-1", "user": "root",
         "local_path": str(local), "remote_path": "/etc/app.conf", "mode": 0o600, "content": data},
    )  # fmt: skip
    return builder.build()


def test_inline_and_stored_content_read_back(tmp_path):
    view = run_with_put(tmp_path / "run", tmp_path / "a.conf", b"\xff" * 5000, withheld=None)
    ref = view.calls[0].files[0].content
    assert ref is not None and ref.text is None
    reader = ContentReader(view)
    assert reader.read(ref) == b"\xff" * 5000
    assert reader.text(ref) is None  # not UTF-8: no text to compare or show
    assert reader.text(ContentRef.of({"sha256": "0" * 64, "size": 2, "text": "hi"})) == "hi"


def test_withheld_content_is_read_only_from_the_local_copy_with_its_hash(tmp_path):
    local = tmp_path / "secret.conf"
    local.write_bytes(b"token=abc\n")
    view = run_with_put(tmp_path / "run", local, b"token=abc\n", withheld="holds secret T")
    ref = view.calls[0].files[0].content
    assert ref is not None and ref.withheld == "holds secret T"
    with pytest.raises(ContentWithheld):
        ContentReader(view).read(ref)  # diff and report never look outside the record
    assert ContentReader(view).text(ref) is None
    assert ContentReader(view, local_copies=True).read(ref) == b"token=abc\n"
    local.write_bytes(b"token=xyz\n")  # changed since: not the recorded content
    with pytest.raises(ContentWithheld, match=f"by hash only.*nor is it at {local}"):
        ContentReader(view, local_copies=True).read(ref, what="the file /etc/app.conf")


def test_a_stand_in_that_changed_is_refused(tmp_path):
    stand_in = tmp_path / "copy"
    stand_in.write_bytes(b"v1")
    view = run_with_put(tmp_path / "run", tmp_path / "gone", b"v1", withheld="holds secret T")
    ref = view.calls[0].files[0].content
    assert ref is not None
    reader = ContentReader(view, stand_ins={ref.sha256: stand_in})
    assert reader.read(ref) == b"v1"
    stand_in.write_bytes(b"v2")
    with pytest.raises(ContentWithheld, match="changed"):
        reader.read(ref)


def test_a_growing_view_reads_complete_lines_only(tmp_path):
    import orjson

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    line = orjson.dumps(
        {
            "v": 2,
            "type": "call.started",
            "ts": TS,
            "data": {"call": 1, "exp": "e1", "method": "list"},
        }
    )
    (run_dir / "events.jsonl").write_bytes(line + b"\n" + line[:10])
    growing = GrowingView(run_dir)
    assert list(growing.refresh().calls) == [1]
    second = orjson.dumps(
        {
            "v": 2,
            "type": "call.started",
            "ts": TS,
            "data": {"call": 2, "exp": "e1", "method": "list"},
        }
    )
    (run_dir / "events.jsonl").write_bytes(line + b"\n" + second + b"\n")
    assert [c.number for c in growing.view().calls] == [1, 2]
