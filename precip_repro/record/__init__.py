"""The record: a hash-chained JSONL event log and a content-addressed blob store per run.

Nothing here imports the clouds, the ssh layer or the Experiment, and nothing here prints.
"""

from __future__ import annotations

from precip_repro.record.blobs import BlobSink, BlobStore
from precip_repro.record.canonical import JSON, canonical, jsonable
from precip_repro.record.events import FORMAT_VERSION, Event, payload_of
from precip_repro.record.payloads import PAYLOADS, BlobRef, Payload
from precip_repro.record.reader import LogReader
from precip_repro.record.recorder import Run
from precip_repro.record.recovery import Recovery, recover
from precip_repro.record.store import RunStore
from precip_repro.record.verify import Verdict, verify

__all__ = [
    "BlobRef",
    "BlobSink",
    "BlobStore",
    "Event",
    "FORMAT_VERSION",
    "JSON",
    "LogReader",
    "PAYLOADS",
    "Payload",
    "Recovery",
    "Run",
    "RunStore",
    "Verdict",
    "canonical",
    "jsonable",
    "payload_of",
    "recover",
    "verify",
]
