"""The zip is the same bytes for the same files, whatever order they come in."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from precip_repro.package.archive import FIXED_TIME, PackageReader, write_zip
from precip_repro.package.layout import Member

names = st.from_regex(r"[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}\.txt", fullmatch=True)


@settings(max_examples=30, deadline=None)
@given(
    files=st.dictionaries(names, st.binary(max_size=2000), min_size=1, max_size=8),
    seed=st.randoms(),
)
def test_the_same_files_in_any_order_give_the_same_zip(files, seed):
    members = [Member.of_bytes(name, data) for name, data in files.items()]
    shuffled = list(members)
    seed.shuffle(shuffled)
    with tempfile.TemporaryDirectory() as where:
        a, b = Path(where) / "a.zip", Path(where) / "b.zip"
        write_zip(a, members)
        write_zip(b, shuffled)
        assert a.read_bytes() == b.read_bytes()
        with zipfile.ZipFile(a) as zf:
            assert {i.date_time for i in zf.infolist()} == {FIXED_TIME}
            assert {n: zf.read(n) for n in zf.namelist()} == files
        reader = PackageReader(a)
        assert reader.names == sorted(files)
        reader.close()
