"""records/README.md is a specification: a verifier written from its rules alone — the
standard library, and the ``rfc8785`` library for the canonical form — reaches the same
verdict as ``verify`` on the v2 samples and on every tampering tried here (357 over the five
samples: lines dropped, swapped, re-spaced, edited and re-hashed, consistent rewrites,
tails cut and added, blobs deleted, grown and linked, checkpoints edited or removed)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from precip_repro.record import verify

FIXTURES = Path(__file__).parent.parent / "fixtures" / "records" / "v2"
HEX = set("0123456789abcdef")
ENVELOPE = {"v", "seq", "ts", "type", "data", "prev", "hash"}
# The fields the README's table marks (blob), per type.
REF_FIELDS = {
    "run.started": ("script", "mapping"),
    "command.finished": ("stdout", "stderr"),
    "file.put": ("content",),
    "file.got": ("content",),
    "module.loaded": ("content",),
    "blob.added": ("content",),
}
KNOWN = {
    "run.started", "experiment.created", "call.started", "instance.launched",
    "instance.ready", "command.finished", "file.put", "file.got", "instance.terminating",
    "instance.terminated", "call.finished", "call.failed", "note", "module.loaded",
    "blob.withheld", "replay.step", "run.finished", "blob.added",
}  # fmt: skip


def hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def shaped_refs(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [ref for item in value for ref in shaped_refs(item)]
    if not isinstance(value, dict):
        return []
    if {"sha256", "size"} <= value.keys() <= {"sha256", "size", "text", "withheld"}:
        ok = hex64(value["sha256"]) and type(value["size"]) is int
        return [value] if ok else []
    return [ref for item in value.values() for ref in shaped_refs(item)]


def refs_of(event: dict[str, Any]) -> list[dict[str, Any]]:
    data = event["data"]
    if event["type"] not in KNOWN:
        return shaped_refs(data)
    found = [data[name] for name in REF_FIELDS.get(event["type"], ()) if data.get(name)]
    if event["type"] == "run.finished" and (data.get("recovered") or {}).get("torn_tail"):
        found.append(data["recovered"]["torn_tail"])
    return found


def readme_verdict(run: Path) -> str:
    """intact, corrupt or unfinished (open/abandoned/unsealed), by the README's rules."""
    raw = (run / "events.jsonl").read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop() != b""
    events: list[dict[str, Any]] = []
    for seq, line in enumerate(lines):
        try:
            event = json.loads(line)
            if rfc8785.dumps(event) != line:
                return "corrupt"
        except (ValueError, rfc8785.CanonicalizationError):
            return "corrupt"
        if not isinstance(event, dict) or event.keys() != ENVELOPE:
            return "corrupt"
        body = {k: v for k, v in event.items() if k != "hash"}
        if hashlib.sha256(rfc8785.dumps(body)).hexdigest() != event["hash"]:
            return "corrupt"
        previous = events[-1]["hash"] if events else "0" * 64
        if event["seq"] != seq or event["prev"] != previous or event["v"] != 2:
            return "corrupt"
        if seq == 0 and event["type"] != "run.started":
            return "corrupt"
        if events and events[-1]["type"] == "run.finished":
            return "corrupt"
        if event["type"] == "run.finished":
            data = event["data"]
            if data.get("events") != seq + 1 or data.get("digest") != event["prev"]:
                return "corrupt"
        events.append(event)
    removed = {e["data"]["sha256"] for e in events if e["type"] == "blob.withheld"}
    for event in events:
        for ref in refs_of(event):
            if "withheld" in ref or ref["sha256"] in removed:
                continue
            if "text" in ref:
                content = ref["text"].encode()
            else:
                path = run / "objects" / ref["sha256"][:2] / ref["sha256"][2:]
                if not path.is_file() or path.is_symlink():
                    return "corrupt"
                content = path.read_bytes()
            if len(content) != ref["size"] or hashlib.sha256(content).hexdigest() != ref["sha256"]:
                return "corrupt"
    checkpoint = run / "checkpoint"
    if not checkpoint.exists():
        return "unfinished"
    try:
        point = json.loads(checkpoint.read_bytes())
        exact = rfc8785.dumps(point) + b"\n" == checkpoint.read_bytes()
    except (ValueError, rfc8785.CanonicalizationError):
        return "corrupt"
    finished = bool(events) and events[-1]["type"] == "run.finished"
    if (
        not exact
        or torn
        or not finished
        or point != {"digest": events[-1]["hash"], "events": len(events),
                     "run": events[0]["data"]["run"], "v": 2}
    ):  # fmt: skip
        return "corrupt"
    return "intact"


def ours(run: Path) -> str:
    state = verify(run).state
    return state if state in ("intact", "corrupt") else "unfinished"


Tamper = Any  # a function of a run directory that alters it


def _lines(run: Path) -> list[bytes]:
    return (run / "events.jsonl").read_bytes().splitlines(keepends=True)


def _write(run: Path, lines: list[bytes]) -> None:
    (run / "events.jsonl").write_bytes(b"".join(lines))


def _sealed(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k != "hash"}
    return rfc8785.dumps({**body, "hash": hashlib.sha256(rfc8785.dumps(body)).hexdigest()})


def _edit(run: Path, i: int, *, rechain: bool) -> None:
    """Change event i's data and hash it again; with ``rechain``, every later event and
    the checkpoint too (a consistent rewrite, which only a signature or a cited digest
    catches)."""
    events = [json.loads(line) for line in _lines(run) if line.endswith(b"\n")]
    events[i]["data"]["edited"] = True
    for j in range(i, len(events) if rechain else i + 1):
        if j:
            events[j]["prev"] = json.loads(_sealed(events[j - 1]))["hash"]
        if events[j]["type"] == "run.finished":
            events[j]["data"]["digest"] = events[j]["prev"]
        events[j]["hash"] = json.loads(_sealed(events[j]))["hash"]
    _write(run, [_sealed(e) + b"\n" for e in events])
    point = run / "checkpoint"
    if rechain and point.exists():
        body = {**json.loads(point.read_bytes()), "digest": events[-1]["hash"]}
        point.write_bytes(rfc8785.dumps(body) + b"\n")


def tamperings(sample: Path) -> list[tuple[str, Tamper]]:
    count = len(_lines(sample))
    objects = sorted(p.relative_to(sample) for p in (sample / "objects").rglob("*") if p.is_file())
    found: list[tuple[str, Tamper]] = [("nothing", lambda run: None)]
    for i in range(count):
        found += [
            (
                f"drop line {i}",
                lambda run, i=i: _write(run, _lines(run)[:i] + _lines(run)[i + 1 :]),
            ),
            (
                f"space in line {i}",
                lambda run, i=i: _write(
                    run,
                    [
                        x.replace(b'"seq"', b'"seq" ', 1) if n == i else x
                        for n, x in enumerate(_lines(run))
                    ],
                ),
            ),
            (
                f"swap lines {i} and {i + 1}",
                lambda run, i=i: _write(
                    run, _lines(run)[:i] + _lines(run)[i : i + 2][::-1] + _lines(run)[i + 2 :]
                ),
            ),
        ]
        if b'"data":{' in _lines(sample)[i] and _lines(sample)[i].endswith(b"\n"):
            found += [
                (f"edit and re-hash line {i}", lambda run, i=i: _edit(run, i, rechain=False)),
                (f"rewrite from line {i} on", lambda run, i=i: _edit(run, i, rechain=True)),
            ]
    found += [
        ("cut the tail", lambda run: _write(run, [b"".join(_lines(run))[:-5]])),
        ("append a line", lambda run: _write(run, [*_lines(run), _lines(run)[-1]])),
    ]
    for rel in objects:
        found += [
            (f"delete {rel.name[:8]}", lambda run, rel=rel: (run / rel).unlink()),
            (
                f"grow {rel.name[:8]}",
                lambda run, rel=rel: (run / rel).write_bytes((run / rel).read_bytes() + b"x"),
            ),
            (f"link {rel.name[:8]}", lambda run, rel=rel: _linked(run / rel)),
        ]
    if (sample / "checkpoint").exists():
        found += [
            (
                "checkpoint without its newline",
                lambda run: (run / "checkpoint").write_bytes(
                    (run / "checkpoint").read_bytes()[:-1]
                ),
            ),
            (
                "checkpoint spaced",
                lambda run: (run / "checkpoint").write_bytes(
                    (run / "checkpoint").read_bytes().replace(b",", b", ")
                ),
            ),
            ("checkpoint removed", lambda run: (run / "checkpoint").unlink()),
        ]
    return found  # fmt: skip


def _linked(path: Path) -> None:
    good = path.with_name("good-copy")
    path.rename(good)
    path.symlink_to(good)


SAMPLES = sorted(FIXTURES.glob("*-v2-*"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name.split("-")[1])
def test_a_verifier_from_the_readme_alone_agrees_with_verify(sample, tmp_path):
    disagree = []
    for index, (what, tamper) in enumerate(tamperings(sample)):
        copy = tmp_path / str(index) / sample.name
        shutil.copytree(sample, copy)
        for path in copy.rglob("*"):
            path.chmod(0o644 if path.is_file() else 0o755)
        tamper(copy)
        if readme_verdict(copy) != ours(copy):
            disagree.append((what, readme_verdict(copy), ours(copy)))
    assert not disagree
