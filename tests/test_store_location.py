"""Where a store is: ``s3://bucket/prefix`` parsed, refused when it is not one, and each
S3 store's local cache a directory of its own."""

from __future__ import annotations

import pytest

from precip_repro import StoreError
from precip_repro.stores import LocalStore, open_store
from precip_repro.stores.location import S3Location


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [("s3://lab-runs", "lab-runs", ""), ("s3://lab-runs/", "lab-runs", ""),
     ("s3://lab.runs/team/2026/", "lab.runs", "team/2026")],
)  # fmt: skip
def test_an_s3_url_names_a_bucket_and_a_prefix(url, bucket, prefix):
    where = S3Location.parse(url)
    assert (where.bucket, where.prefix) == (bucket, prefix)
    assert S3Location.parse(where.url) == where


@pytest.mark.parametrize(
    ("url", "why"),
    [("gs://lab/runs", "gs:// is not one"), ("s3://Lab/runs", "is not a bucket name"),
     ("s3://ab/runs", "is not a bucket name"), ("s3://lab-runs/a//b", "empty, . or .. part"),
     ("s3://lab-runs/a/../b", "empty, . or .. part")],
)  # fmt: skip
def test_what_is_not_an_s3_store_is_refused_saying_why(url, why):
    with pytest.raises(StoreError, match=why):
        S3Location.parse(url)


def test_each_endpoint_bucket_and_prefix_has_a_cache_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("PRECIP_CACHE", str(tmp_path))
    caches = {
        S3Location.parse(url).cache_dir(endpoint)
        for url, endpoint in [
            ("s3://lab-runs", None), ("s3://lab-runs/a", None), ("s3://lab-runs/a/runs", None),
            ("s3://lab-runs", "http://127.0.0.1:9000"), ("s3://other-runs", None),
        ]
    }  # fmt: skip
    assert len(caches) == 5 and all(path.is_relative_to(tmp_path) for path in caches)


def test_a_path_is_a_directory_store_whatever_it_is_called(tmp_path):
    store = open_store(tmp_path / "s3:")
    assert isinstance(store, LocalStore) and store.root == tmp_path / "s3:"
