"""The line of an event in ``events.jsonl``: sealing a new event into it, parsing one back.

:func:`seal` hashes and serialises an event as the journal appends it; :func:`parse_line`
checks a line as readers meet it — canonical form, envelope, hash — hand-tuned, since
reading and verifying a large run spends most of its time there (``bench/journal.py``,
``bench/diff.py``). The event model it reads into is :mod:`precip_repro.record.events`,
which does not import this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any, Final

import orjson

from precip_repro.exceptions import RecordCorrupted, UnrecordableValue, UnsupportedVersion
from precip_repro.record.canonical import (
    JSON,
    canonical_v1,
    dumps_fast,
    dumps_unchecked,
    floatish,
    holds_float,
)
from precip_repro.record.events import FORMAT_VERSION, READABLE, TS_RE, Event
from precip_repro.record.jcs import jcs, jcs_fast, plain
from precip_repro.record.numbers import NOTHING, NUMBER, TYPED_LOOKING, scan
from precip_repro.record.payloads import FREE_FORM, PAYLOADS, is_hex64

__all__ = ["parse_line", "seal"]

_TYPE_RE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_ENVELOPE_KEYS: Final = frozenset({"v", "seq", "ts", "type", "data", "prev", "hash"})
_HASH_KEY: Final = b',"hash":"'
_HASH_MEMBER: Final = len(_HASH_KEY) + 65
"""Bytes of the top-level ``,"hash":"<64 hex>"`` member."""
_TYPED: Final = b'{"$'
"""What every typed value (and ``$object`` wrapper) starts with in a line's bytes; a string
holding these characters is written ``{\\"$``."""


def seal(
    *, seq: int, ts: str, type: str, data: dict[str, JSON], prev: str, v: int = FORMAT_VERSION
) -> tuple[Event, bytes]:
    """Hash and serialise a new event of format ``v``; return it and its line (newline
    included). ``v`` is 1 only to finish a v1 run (``recover``)."""
    body = {"v": v, "seq": seq, "ts": ts, "type": type, "data": data, "prev": prev}
    if v == 1:
        try:
            body_bytes = dumps_fast(body)
        except (TypeError, ValueError, UnicodeEncodeError):
            canonical_v1(body)  # names the field that cannot be recorded
            raise  # pragma: no cover
        if holds_float(data):
            canonical_v1(body)  # refuses the float, naming its field
    else:
        body_bytes = jcs(body)
    # Keys sort as data, hash, prev, …: the hash goes right before the top-level "prev",
    # which is the last ',"prev":"' in the body (only fixed-format values follow it).
    cut = body_bytes.rfind(b',"prev":"')
    digest = hashlib.sha256(body_bytes).hexdigest()
    line = b'%s,"hash":"%s"%s\n' % (body_bytes[:cut], digest.encode(), body_bytes[cut:])
    event = Event(v=v, seq=seq, ts=ts, type=type, data=data, prev=prev, hash=digest)
    return event, line


def _refuse_float(text: str) -> Any:
    raise ValueError(f"holds a float ({text}); v1 records hold none")


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"holds {text}; v1 records hold no NaN or infinity")


_loads: Final = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_constant).decode
_loads_v2: Final = json.JSONDecoder(parse_constant=_refuse_constant).decode
"""v2 lines may hold floats (RFC 8785 numbers); never NaN or infinity, which are typed."""


def _fast_load(raw: bytes, end: int = -1) -> Any:
    """Parse with orjson — several times faster than json, which matters for ``verify`` and
    ``diff`` over large runs — unless the line may hold a float (orjson would accept it):
    then, or on any error, return None and let the json path decide and explain.

    ``end`` is where the top-level ``"hash"`` member starts, when the caller knows.
    """
    # Only the data (the first member, before "hash") can hold a float, and only with a '.'
    # in it (a float orjson would print differently fails the canonical check anyway).
    if end < 0:
        end = raw.rfind(_HASH_KEY)
        end = len(raw) if end < 0 else end
    if raw.count(b".", 0, end) and floatish(raw, end):
        return None
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None


def _hash_matches(raw: bytes, claimed: object) -> bool:
    """Whether ``raw`` hashes to ``claimed`` once its top-level ``"hash"`` member is cut out.

    Keys are sorted, so only fixed-format members follow the top-level hash: it is the
    last ``,"hash":"`` in the line.
    """
    if type(claimed) is not str:
        return False
    cut = raw.rfind(_HASH_KEY)
    if cut < 0:
        return False
    body = raw[:cut] + raw[cut + _HASH_MEMBER :]
    return hashlib.sha256(body).hexdigest() == claimed


def parse_line(raw: bytes, *, line: int, run: str | None = None, prev: str | None = None) -> Event:
    """Parse and check one line (without its newline): canonical form, envelope and hash.

    Chain continuity (``seq``, ``prev``) is the reader's business: it knows the previous
    event; the content rules — each type's fields, no floats in v1, none in v2's typed
    fields (durations, sizes, exit codes) — are :func:`payload_of`'s (``verify`` applies
    both). ``prev``, when given, is the previous event's hash (known to be sound): a line
    naming it needs no other check of its ``prev``. Raises :class:`RecordCorrupted` naming
    the line, or :class:`UnsupportedVersion`.
    """
    # The common case — a sound current-version line — in as few steps as possible (reading
    # a large run spends most of its time here); anything else takes the careful path,
    # which finds and explains what is wrong.
    cut = raw.rfind(_HASH_KEY)
    try:
        obj = orjson.loads(raw) if cut > 0 else None
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is dict and obj.keys() == _ENVELOPE_KEYS:
        seq, ts, kind, previous, digest = (
            obj["seq"], obj["ts"], obj["type"], obj["prev"], obj["hash"]
        )  # fmt: skip
        version, data = obj["v"], obj["data"]
        free = _FREE.get(kind, _ALL) if type(kind) is str else _ALL
        found = _scan_free(free, data) if free and type(data) is dict else NOTHING
        try:
            if (
                type(seq) is int
                and seq >= 0
                and type(version) is int
                and (version == 2 or version == 1)
                and type(ts) is str
                and _valid_ts(ts)
                and type(kind) is str
                and (kind in PAYLOADS or _TYPE_RE.fullmatch(kind))
                and type(data) is dict
                and ((prev is not None and previous == prev) or is_hex64(previous))
                # (the hash is compared with a hex digest below: it is hex if it matches)
                # v1's canonical form is orjson's for what json reads. v2's is orjson's for
                # values without floats or large integers (OPT_STRICT_INTEGER refuses those)
                # and without keys above U+FFFF (none in ASCII). Only free-form fields are
                # looked at for floats: one in a typed field (a duration, a size) is the
                # payload's to refuse, as v1's floats are.
                and (
                    orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == raw
                    if version == 1
                    else (
                        found is not NUMBER and orjson.dumps(obj, option=_V2_ASCII) == raw
                        if raw.isascii()
                        else plain(data) and jcs_fast(obj) == raw
                    )
                )
                and hashlib.sha256(raw[:cut] + raw[cut + _HASH_MEMBER :]).hexdigest() == digest
            ):
                # The parsed object holds exactly the event's fields, checked above: it
                # becomes the event's own attributes in one step (attrs' __init__ would
                # set them one keyword at a time; no field converts or validates).
                event: Event = _new(Event)
                event.__dict__.update(obj, typed=version == 1 or found is TYPED_LOOKING)
                return event
        except orjson.JSONEncodeError:  # an integer beyond ±(2^53 - 1)
            pass
    return _parse_line_carefully(raw, line=line, run=run)


_new: Final = object.__new__

_ALL: Final = ("",)
"""What a type this version does not know may hold a float in: anything (``""``: the
whole of its data)."""
_FREE: Final = {cls.TYPE: FREE_FORM.get(cls, ()) for cls in PAYLOADS.values()}
"""Per known event type, the fields holding a user's or a cloud's values: the only ones a
float may be in (the others' types are the payload's to check)."""
_V2_ASCII: Final = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _scan_free(free: tuple[str, ...], data: dict[str, Any]) -> str:
    """:func:`~precip_repro.record.numbers.scan` of these fields of ``data`` (``""``: all of
    it): :data:`NUMBER` (orjson's bytes may not be RFC 8785's), else :data:`TYPED_LOOKING`
    (the payload must decode), else :data:`NOTHING`. It stops at the first number: only a
    v2 line, which then takes the careful path, may trust it to have seen every field."""
    if free is _ALL:
        return scan(data)
    found = NOTHING
    for name in free:
        value = data.get(name)
        if value is not None:
            seen = scan(value)
            if seen is NUMBER:
                return NUMBER
            if seen is TYPED_LOOKING:
                found = TYPED_LOOKING
    return found


_valid_prefix: str = "\0"


def _valid_ts(ts: str) -> bool:
    """Whether ``ts`` is RFC 3339 UTC with microseconds (as :data:`TS_RE` says)."""
    global _valid_prefix
    # Consecutive events mostly share their second: only the microseconds are new.
    if ts.startswith(_valid_prefix):
        micros = ts[20:]
        return len(micros) == 7 and micros[6] == "Z" and micros[:6].isdigit() and micros.isascii()
    if TS_RE.fullmatch(ts):
        _valid_prefix = ts[:20]
        return True
    return False


def _parse_line_carefully(raw: bytes, *, line: int, run: str | None) -> Event:
    def bad(reason: str, seq: int | None = None) -> RecordCorrupted:
        where = f"line {line}" if seq is None else f"event seq {seq} (line {line})"
        return RecordCorrupted(f"{where}: {reason}", run=run, seq=seq, line=line)

    obj = _fast_load(raw)
    fast = obj is not None
    if obj is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad(f"is not valid UTF-8 at byte {exc.start}") from None
        try:
            obj = _loads(text)
        except ValueError as exc:
            obj = _v2_with_floats(text)  # a float is v2's to hold, not v1's
            if obj is None:
                raise bad(f"is not valid JSON ({exc})") from None
    if type(obj) is not dict:
        raise bad(f"is a JSON {type(obj).__name__}, not an event object")
    seq = obj.get("seq")
    seq = seq if type(seq) is int else None
    version = obj.get("v")
    if type(version) is not int:
        raise bad("has no integer format version 'v'", seq)
    if version not in READABLE:
        if not _hash_matches(raw, obj.get("hash")):
            # A newer writer still hashes its lines; a flipped version digit does not.
            raise bad(f"names format version {version} but does not hash: it was altered", seq)
        raise UnsupportedVersion(
            f"line {line}: record format version {version} is not one this precip-repro "
            f"reads (it reads {', '.join(map(str, sorted(READABLE)))}); upgrade precip-repro "
            "to read this run",
            run=run,
            seq=seq,
            line=line,
        )
    if set(obj) != _ENVELOPE_KEYS:
        missing = sorted(_ENVELOPE_KEYS - set(obj))
        extra = sorted(set(obj) - _ENVELOPE_KEYS)
        raise bad(f"envelope keys differ (missing {missing}, unexpected {extra})", seq)
    if seq is None or seq < 0:
        raise bad(f"'seq' is {obj['seq']!r}, not a non-negative integer")
    if type(obj["ts"]) is not str or not TS_RE.fullmatch(obj["ts"]):
        raise bad(f"'ts' {obj['ts']!r} is not RFC 3339 UTC with microseconds", seq)
    if type(obj["type"]) is not str or not _TYPE_RE.fullmatch(obj["type"]):
        raise bad(f"'type' {obj['type']!r} is not a dotted lower-case name", seq)
    if type(obj["data"]) is not dict:
        raise bad("'data' is not an object", seq)
    for key in ("prev", "hash"):
        if not is_hex64(obj[key]):
            raise bad(f"'{key}' is not 64 lower-case hex digits", seq)
    if version != 1:
        _check_canonical_v2(raw, obj, bad, seq)
    # The decoder refused floats and NaN already, so a plain encoder is enough here; orjson
    # writes the same bytes as the canonical json.dumps, and json has the last word.
    canonical_ok = version != 1 or (fast and orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == raw)
    if not canonical_ok:
        if fast:  # orjson bends some values (huge ints): json decides
            try:
                obj = _loads(raw.decode("utf-8"))
            except ValueError as exc:
                raise bad(f"is not valid JSON ({exc})", seq) from None
        canonical_ok = dumps_unchecked(obj) == raw
    if not canonical_ok:
        raise bad("is not in canonical form (bytes were added, removed or reordered)", seq)
    if not _hash_matches(raw, obj["hash"]):
        raise bad("content does not match its hash (the event was altered)", seq)
    return Event(
        v=version,
        seq=seq,
        ts=obj["ts"],
        type=obj["type"],
        data=obj["data"],
        prev=obj["prev"],
        hash=obj["hash"],
        typed=_TYPED in raw,
    )


def _v2_with_floats(text: str) -> Any:
    """``text`` parsed when it is not a v1 line (v2 lines may hold floats), else None."""
    try:
        obj = _loads_v2(text)
    except ValueError:
        return None
    return obj if type(obj) is dict and obj.get("v") != 1 else None


def _check_canonical_v2(
    raw: bytes, obj: dict[str, Any], bad: Callable[[str, int | None], RecordCorrupted], seq: int
) -> None:
    """A v2 line is exactly the RFC 8785 form of what it parses to (read by json, which keeps
    every integer whole and refuses NaN)."""
    try:
        exact = _loads_v2(raw.decode("utf-8"))
    except ValueError as exc:
        raise bad(f"is not valid JSON ({exc})", seq) from None
    try:
        again = jcs(exact)
    except UnrecordableValue as exc:
        raise bad(f"is not in canonical form: {exc}", seq) from None
    if again != raw:
        raise bad(
            "is not in canonical form (RFC 8785: bytes were added, removed or reordered)", seq
        )
