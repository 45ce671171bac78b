from __future__ import annotations

import errno
import hashlib
import io
import tracemalloc

import pytest

from precip_repro.exceptions import BlobCorrupted, ContentWithheld, RecordWriteFailed
from precip_repro.record.blobs import BlobStore
from precip_repro.record.payloads import BlobRef
from tests.helpers import file_size_limit


@pytest.fixture
def blobs(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "objects", run="r")


def test_blobs_are_named_by_their_sha256(blobs):
    ref = blobs.put_bytes(b"content")
    assert ref.sha256 == hashlib.sha256(b"content").hexdigest()
    path = blobs.path_for(ref.sha256)
    assert path.parent.name == ref.sha256[:2] and path.name == ref.sha256[2:]
    assert path.read_bytes() == b"content"
    assert path.stat().st_mode & 0o222 == 0  # read-only once stored


def test_the_same_bytes_are_stored_once(blobs):
    first = blobs.put_bytes(b"x" * 10_000)
    second = blobs.put_stream(io.BytesIO(b"x" * 10_000))
    assert first == second
    files = [p for p in blobs.root.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_no_temporary_file_is_left_after_writing(blobs):
    blobs.put_bytes(b"a" * 100_000)
    with blobs.sink() as sink:
        sink.write(b"abandoned half")  # never committed
    assert list((blobs.root / "tmp").iterdir()) == []


def test_large_streams_are_hashed_in_bounded_memory(blobs):
    chunk = b"\x5a" * (1 << 20)

    class Source(io.RawIOBase):
        left = 64

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            if not self.left:
                return 0
            self.left -= 1
            buffer[: len(chunk)] = chunk
            return len(chunk)

    tracemalloc.start()
    ref = blobs.put_stream(io.BufferedReader(Source(), buffer_size=1 << 20))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ref.size == 64 << 20
    assert peak < 8 << 20, f"peak {peak} bytes for a 64 MiB blob"
    blobs.check(ref)


def test_inline_text_writes_no_object_file_and_binary_does(blobs):
    text = blobs.put_bytes(b"hello\n", inline=True)
    assert text.text == "hello\n"
    assert not blobs.has(text.sha256)
    binary = blobs.put_bytes(b"\x00\xff", inline=True)
    assert binary.text is None and blobs.has(binary.sha256)
    assert blobs.read_bytes(text) == b"hello\n"


def test_reading_a_corrupted_blob_raises_naming_it(blobs):
    ref = blobs.put_bytes(b"precious data")
    path = blobs.path_for(ref.sha256)
    path.chmod(0o644)
    path.write_bytes(b"precious dat4")
    with pytest.raises(BlobCorrupted) as info:
        blobs.read_bytes(ref)
    assert info.value.blob == ref.sha256
    assert str(path) in str(info.value)


def test_a_missing_blob_raises_naming_the_expected_path(blobs):
    ref = blobs.put_bytes(b"gone")
    blobs.path_for(ref.sha256).unlink()
    with pytest.raises(BlobCorrupted, match="missing"):
        blobs.check(ref)


def test_chunks_crossing_the_inline_limit_are_stored_whole(blobs):
    with blobs.sink(inline=True) as sink:
        for _ in range(10):
            sink.write(b"0123456789" * 50)  # 500 bytes at a time, 5000 in all
        ref = sink.commit()
    assert ref.text is None and ref.size == 5000
    assert blobs.read_bytes(ref) == b"0123456789" * 500


def test_a_refused_blob_write_names_the_run_and_leaves_nothing_partial(tmp_path):
    blobs = BlobStore(tmp_path / "objects", run="r-1")
    with file_size_limit(10_000), pytest.raises(RecordWriteFailed) as refused:
        blobs.put_bytes(b"\x00" * 50_000)
    assert refused.value.errno == errno.EFBIG and refused.value.run == "r-1"
    assert "could not store a blob of run r-1" in str(refused.value)
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    assert blobs.put_bytes(b"\x00" * 50_000).size == 50_000  # room again: it works


def test_reading_a_blob_kept_by_hash_only_says_so(tmp_path):
    store = BlobStore(tmp_path / "objects", run="r1")
    ref = BlobRef.of(b"x" * 5000, inline=False)
    withheld = BlobRef(sha256=ref.sha256, size=ref.size, withheld="holds secret TOKEN")
    with pytest.raises(ContentWithheld) as info:
        store.read_bytes(withheld)
    assert info.value.blob == ref.sha256 and info.value.reason == "holds secret TOKEN"
    assert "run r1 keeps blob" in str(info.value) and "by hash only" in str(info.value)
