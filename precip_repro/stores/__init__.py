"""Stores of runs behind one interface (:class:`Store`): a directory, or S3 with a local
cache. :func:`open_store` opens the one a user names (``--records``, ``PRECIP_RECORDS``)."""

from __future__ import annotations

import os
from pathlib import Path

from precip_repro.record.store import RunStore
from precip_repro.stores.base import PushResult, Removal, Store, StoreCapability
from precip_repro.stores.local import LocalStore
from precip_repro.stores.location import is_url

__all__ = [
    "LocalStore",
    "PushResult",
    "Removal",
    "Store",
    "StoreCapability",
    "open_store",
]


def open_store(where: Store | RunStore | Path | str | None = None) -> Store:
    """The store ``where`` names: ``s3://bucket/prefix`` (an S3 store, cached locally) or
    a directory; None: ``$PRECIP_RECORDS``, else ``./records``."""
    if isinstance(where, LocalStore) or (where is not None and hasattr(where, "capabilities")):
        return where  # type: ignore[return-value]
    if isinstance(where, RunStore):
        return LocalStore(where)
    text = os.fspath(where) if where is not None else os.environ.get("PRECIP_RECORDS") or "records"
    if is_url(text):
        from precip_repro.stores.s3 import S3Store  # boto3 is loaded only for an S3 store

        return S3Store(text)
    return LocalStore(Path(text))
