"""The event model of record format v1: one attrs class per event type, one converter.

An :class:`Event` is the envelope (``v``, ``seq``, ``ts``, ``type``, ``data``, ``prev``,
``hash``); its ``data`` is the payload of its type. Payload classes are frozen attrs values
registered by type name in :data:`PAYLOADS`; readers ignore types they do not know.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Final, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_unstructure_fn, override

from precip_repro.exceptions import RecordCorrupted, UnrecordableValue, UnsupportedVersion
from precip_repro.record.canonical import (
    JSON,
    canonical,
    check_recordable,
    dumps_fast,
    dumps_unchecked,
    floatish,
    jsonable,
)

__all__ = [
    "BlobRef",
    "BlobWithheld",
    "CallFailed",
    "CallFinished",
    "CallStarted",
    "CloudInfo",
    "CommandFinished",
    "ErrorInfo",
    "Event",
    "ExperimentCreated",
    "FORMAT_VERSION",
    "FileGot",
    "FilePut",
    "GENESIS",
    "InstanceLaunched",
    "InstanceReady",
    "InstanceTerminated",
    "InstanceTerminating",
    "ModuleLoaded",
    "Note",
    "PAYLOADS",
    "Payload",
    "ReplayOf",
    "ReplayStep",
    "RunFinished",
    "RunStarted",
    "converter",
    "format_ts",
    "parse_ts",
    "parse_line",
    "payload_of",
    "refs_in",
    "seal",
]

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64
INLINE_TEXT_LIMIT: Final = 4096
"""Outputs up to this many bytes that are valid UTF-8 are kept inline as ``text``."""

_TYPE_RE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_TS_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_ENVELOPE_KEYS: Final = frozenset({"v", "seq", "ts", "type", "data", "prev", "hash"})
_HASH_KEY: Final = b',"hash":"'
_HASH_MEMBER: Final = len(_HASH_KEY) + 65
"""Bytes of the top-level ``,"hash":"<64 hex>"`` member."""


def _is_hex64(value: str) -> bool:
    # str.strip with the hex digits is several times faster than a regex match; this runs for
    # every blob reference read.
    return type(value) is str and len(value) == 64 and not value.strip("0123456789abcdef")


def _check_hex64(value: str) -> None:
    if not _is_hex64(value):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, not {value!r}")


# --- values shared by payloads -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BlobRef:
    """A reference to bytes: their sha256 and size; short UTF-8 output also inline as ``text``.

    When ``text`` is present it *is* the content: no object file is written for it. When
    ``withheld`` is present the content was not stored (it held a registered secret); the
    string says why.
    """

    sha256: str = attrs.field(validator=lambda _, __, value: _check_hex64(value))
    size: int
    text: str | None = None
    withheld: str | None = None

    @classmethod
    def of(cls, content: bytes, *, inline: bool = True) -> BlobRef:
        """The reference for ``content``, inline when short valid UTF-8 and ``inline``."""
        text = None
        if inline and len(content) <= INLINE_TEXT_LIMIT:
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        return cls(sha256=hashlib.sha256(content).hexdigest(), size=len(content), text=text)


@attrs.frozen(kw_only=True)
class ReplayOf:
    """The run a replay re-executes: its id and digest."""

    run: str
    digest: str


@attrs.frozen(kw_only=True)
class CloudInfo:
    """Where an experiment runs. Never credentials: only a fingerprint of the access key id."""

    kind: str
    endpoint: str | None = None
    region: str | None = None
    access_key_fingerprint: str | None = None


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """An exception as recorded: its class name and message, and for an error about one
    instance (an ``InstanceError``) that instance's id and slot."""

    type: str
    message: str
    instance: str | None = None
    slot: str | None = None


_READING: Final = contextvars.ContextVar("precip_record_reading", default=False)
"""True while structuring data read from a log: it is JSON already, converting it again
would only cost time (a large share of reading a run)."""


def _holds_float(value: Any) -> bool:
    """Whether a float is anywhere in ``value``: a walk over its values, which costs the same
    whatever the length of the texts in it (a scan of the serialised bytes does not)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            return True
    return False


def _no_float(value: Any, field: str) -> None:
    """Refuse a float anywhere in ``value`` (data read from a log), naming where it is."""
    # The line parser leaves floats to the payload: typed fields refuse them by type, and
    # these free-form ones by this walk.
    if _holds_float(value):
        check_recordable(value, field)  # raises, naming the float's place


def _json_object(value: object, field: str) -> dict[str, JSON]:
    if _READING.get() and type(value) is dict:
        _no_float(value, field)
        return value
    out = jsonable(value, field)
    if not isinstance(out, dict):
        raise UnrecordableValue(
            f"field {field!r} must be a mapping, not {type(value).__name__}", field=field
        )
    return out


def _args(value: object) -> dict[str, JSON]:
    return _json_object(value, "args")


def _facts(value: object) -> dict[str, JSON]:
    return _json_object(value, "facts")


def _fields(value: object) -> dict[str, JSON]:
    return _json_object(value, "fields")


def _recovered(value: object) -> dict[str, JSON] | None:
    return None if value is None else _json_object(value, "recovered")


def _differences(value: object) -> list[dict[str, JSON]]:
    if _READING.get() and type(value) is list:
        _no_float(value, "differences")
        return value
    out = jsonable(value, "differences")
    if not isinstance(out, list) or not all(isinstance(item, dict) for item in out):
        raise UnrecordableValue(
            "field 'differences' must be a list of mappings", field="differences"
        )
    return out


def _result(value: object) -> JSON:
    if _READING.get():
        _no_float(value, "result")
        return value
    return jsonable(value, "result")


# --- payloads --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Payload:
    """Base of every event payload; ``TYPE`` is the event's dotted type name."""

    TYPE: ClassVar[str] = ""


@attrs.frozen(kw_only=True)
class RunStarted(Payload):
    TYPE: ClassVar[str] = "run.started"
    run: str
    tool_version: str
    python: str
    platform: str
    host: str
    user: str
    argv: list[str]
    cwd: str
    script: BlobRef | None = None
    script_path: str | None = None
    git_commit: str | None = None
    replay_of: ReplayOf | None = None
    mapping: BlobRef | None = None
    """A replay's mapping file, as given."""


@attrs.frozen(kw_only=True)
class ExperimentCreated(Payload):
    TYPE: ClassVar[str] = "experiment.created"
    exp: str
    name: str | None
    cloud: CloudInfo
    key_fingerprint: str | None = None
    login_user: str | None = None
    """The account ssh logged in as when not root (calls as others went through its
    sudo); absent for root."""


@attrs.frozen(kw_only=True)
class CallStarted(Payload):
    TYPE: ClassVar[str] = "call.started"
    call: int
    exp: str
    method: str
    args: dict[str, JSON] = attrs.field(converter=_args)


@attrs.frozen(kw_only=True)
class InstanceLaunched(Payload):
    TYPE: ClassVar[str] = "instance.launched"
    call: int
    exp: str
    slot: str
    instance_id: str
    image_id: str
    instance_type: str
    tags: list[str]
    image_digest: str | None = None


@attrs.frozen(kw_only=True)
class InstanceReady(Payload):
    TYPE: ClassVar[str] = "instance.ready"
    slot: str
    instance_id: str
    public_address: str | None
    private_address: str | None
    public_hostname: str | None = None
    private_hostname: str | None = None
    host_key: str | None = None
    facts: dict[str, JSON] = attrs.field(factory=dict, converter=_facts)


@attrs.frozen(kw_only=True)
class CommandFinished(Payload):
    TYPE: ClassVar[str] = "command.finished"
    call: int
    slot: str
    instance_id: str
    user: str
    cmd: str
    exit_code: int | None
    stdout: BlobRef
    stderr: BlobRef
    duration_ns: int


@attrs.frozen(kw_only=True)
class FilePut(Payload):
    TYPE: ClassVar[str] = "file.put"
    call: int
    slot: str
    instance_id: str
    user: str
    local_path: str
    remote_path: str
    mode: int
    content: BlobRef
    temporary: bool = False
    """The tool chose ``remote_path`` (``copy_and_run``'s script) and removes it after."""


@attrs.frozen(kw_only=True)
class FileGot(Payload):
    TYPE: ClassVar[str] = "file.got"
    call: int
    slot: str
    instance_id: str
    user: str
    local_path: str
    remote_path: str
    mode: int
    content: BlobRef


@attrs.frozen(kw_only=True)
class InstanceTerminating(Payload):
    TYPE: ClassVar[str] = "instance.terminating"
    slot: str
    instance_id: str
    call: int | None = None


@attrs.frozen(kw_only=True)
class InstanceTerminated(Payload):
    TYPE: ClassVar[str] = "instance.terminated"
    slot: str
    instance_id: str
    call: int | None = None


@attrs.frozen(kw_only=True)
class CallFinished(Payload):
    TYPE: ClassVar[str] = "call.finished"
    call: int
    result: JSON = attrs.field(converter=_result)
    duration_ns: int


@attrs.frozen(kw_only=True)
class CallFailed(Payload):
    TYPE: ClassVar[str] = "call.failed"
    call: int
    error: ErrorInfo
    duration_ns: int


@attrs.frozen(kw_only=True)
class Note(Payload):
    TYPE: ClassVar[str] = "note"
    text: str
    fields: dict[str, JSON] = attrs.field(factory=dict, converter=_fields)


@attrs.frozen(kw_only=True)
class RunFinished(Payload):
    TYPE: ClassVar[str] = "run.finished"
    status: str
    events: int
    duration_ns: int
    digest: str
    recovered: dict[str, JSON] | None = attrs.field(default=None, converter=_recovered)


@attrs.frozen(kw_only=True)
class BlobWithheld(Payload):
    """A blob stored earlier was removed because it holds a secret registered after it was
    stored (the experiment script with a literal key, a file moved before ``secret()``).
    Every reference to ``sha256`` before this event is withheld from here on: ``verify``
    excuses its absence, readers treat it as kept by hash only."""

    TYPE: ClassVar[str] = "blob.withheld"
    sha256: str = attrs.field(validator=lambda _, __, value: _check_hex64(value))
    size: int
    reason: str


@attrs.frozen(kw_only=True)
class ModuleLoaded(Payload):
    """A Python module of the experiment's own — a file beside the script that it imported
    (``from helper import …``) — with its source: what ran is the script and these. Written
    after ``run.started`` for the modules imported by then, and before ``run.finished`` for
    those imported later."""

    TYPE: ClassVar[str] = "module.loaded"
    name: str
    path: str
    content: BlobRef


@attrs.frozen(kw_only=True)
class ReplayStep(Payload):
    """A replay's verdict on one recorded call: ``reproduced`` or ``diverged``."""

    TYPE: ClassVar[str] = "replay.step"
    source_call: int
    call: int | None
    exp: str
    method: str
    verdict: str
    differences: list[dict[str, JSON]] = attrs.field(factory=list, converter=_differences)


PAYLOADS: Final[Mapping[str, type[Payload]]] = {
    cls.TYPE: cls
    for cls in (
        RunStarted,
        ExperimentCreated,
        CallStarted,
        InstanceLaunched,
        InstanceReady,
        CommandFinished,
        FilePut,
        FileGot,
        InstanceTerminating,
        InstanceTerminated,
        CallFinished,
        CallFailed,
        Note,
        RunFinished,
        ReplayStep,
        BlobWithheld,
        ModuleLoaded,
    )
}
"""Every v1 event type and its payload class."""

RUN_STATUSES: Final = ("ok", "failed", "interrupted")


def _ref_fields(cls: type[Payload]) -> tuple[str, ...]:
    attrs.resolve_types(cls)
    return tuple(f.name for f in attrs.fields(cls) if f.type in (BlobRef, BlobRef | None))


_REF_FIELDS: Final = {cls: _ref_fields(cls) for cls in PAYLOADS.values()}
"""Per payload class, its fields that hold blob references (and only those do: a user's
argument or note shaped like a reference is still the user's data)."""


def refs_in(payload: Payload) -> Iterator[BlobRef]:
    """The blob references a payload holds."""
    for name in _REF_FIELDS[type(payload)]:
        ref = getattr(payload, name)
        if ref is not None:
            yield ref


# --- the converter ---------------------------------------------------------------------------


def _strict(kind: type[Any]) -> Callable[[Any, Any], Any]:
    # cattrs' default int/str hooks coerce ("5" -> 5); a record must read back as written.
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


def _strict_optional(kind: type[Any]) -> Callable[[Any, Any], Any]:
    # One hook for `X | None` instead of cattrs' generic one dispatching again on X: the
    # hot path of reading a run meets several per event.
    def hook(value: Any, _: Any) -> Any:
        if value is not None and type(value) is not kind:
            raise TypeError(f"expected {kind.__name__} or null, got {type(value).__name__}")
        return value

    return hook


def _make_converter(*, detailed: bool = True) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=detailed)
    for kind in (int, str, bool):
        conv.register_structure_hook(kind, _strict(kind))
        conv.register_structure_hook(kind | None, _strict_optional(kind))
    conv.register_unstructure_hook(
        BlobRef, make_dict_unstructure_fn(BlobRef, conv, _cattrs_omit_if_default=True)
    )
    # Added after v1's first records: absent unless set, so they read and hash as before.
    conv.register_unstructure_hook(
        ExperimentCreated,
        make_dict_unstructure_fn(
            ExperimentCreated, conv, login_user=override(omit_if_default=True)
        ),
    )
    return conv


converter: Final = _make_converter()
"""The one cattrs converter for everything the record (de)serialises."""

_fast_converter: Final = _make_converter(detailed=False)
# The same rules without per-field error collection: several times faster on the hot path of
# reading a run; when it refuses, the detailed converter explains why.
_FAST_HOOKS: Final = {cls: _fast_converter.get_structure_hook(cls) for cls in PAYLOADS.values()}


# --- the envelope ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Event:
    """One line of ``events.jsonl``, as read or as written."""

    v: int
    seq: int
    ts: str
    type: str
    data: dict[str, JSON] = attrs.field(eq=True, hash=False)
    prev: str
    hash: str

    def to_json(self) -> dict[str, JSON]:
        return {
            "v": self.v,
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "data": self.data,
            "prev": self.prev,
            "hash": self.hash,
        }

    def line(self) -> bytes:
        """The exact bytes of this event's line on disk, newline included."""
        return canonical(self.to_json()) + b"\n"

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.ts)


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


_parsed_cache: tuple[str, int] = ("\0", 0)


def parse_ts(ts: str) -> int:
    """Nanoseconds since the epoch of a record timestamp (the inverse of :func:`format_ts`).

    Raises ValueError for a string that is not one.
    """
    global _parsed_cache
    # Reading a large run parses a timestamp per event; events come many to a second, so the
    # seconds are parsed once and only the microseconds per event.
    prefix, seconds_ns = _parsed_cache
    if len(ts) == 27 and ts[26] == "Z" and ts[19] == "." and ts.startswith(prefix):
        micros = ts[20:26]
        if micros.isdigit() and micros.isascii():
            return seconds_ns + int(micros) * 1000
    when = dt.datetime.fromisoformat(ts)
    if when.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} names no time zone")
    micros_ns = (when - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    if _TS_RE.fullmatch(ts):
        _parsed_cache = (ts[:20], micros_ns - int(ts[20:26]) * 1000)
    return micros_ns


_ts_cache: tuple[int, str] = (-1, "")


def format_ts(ns: int) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` for a ``time.time_ns()`` value."""
    global _ts_cache
    seconds, rest = divmod(ns, 1_000_000_000)
    cached_seconds, prefix = _ts_cache
    if cached_seconds != seconds:
        # strftime costs more than the rest of sealing an event; a second's prefix is reused.
        prefix = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _ts_cache = (seconds, prefix)
    return f"{prefix}{rest // 1000:06d}Z"


def seal(*, seq: int, ts: str, type: str, data: dict[str, JSON], prev: str) -> tuple[Event, bytes]:
    """Hash and serialise a new event; return it and its line (newline included)."""
    body = {"v": FORMAT_VERSION, "seq": seq, "ts": ts, "type": type, "data": data, "prev": prev}
    try:
        body_bytes = dumps_fast(body)
    except (TypeError, ValueError, UnicodeEncodeError):
        canonical(body)  # names the field that cannot be recorded
        raise  # pragma: no cover
    # Keys sort as data, hash, prev, …: the hash goes right before the top-level "prev",
    # which is the last ',"prev":"' in the body (only fixed-format values follow it).
    cut = body_bytes.rfind(b',"prev":"')
    if _holds_float(data):
        canonical(body)  # refuses the float, naming its field
    digest = hashlib.sha256(body_bytes).hexdigest()
    line = b'%s,"hash":"%s"%s\n' % (body_bytes[:cut], digest.encode(), body_bytes[cut:])
    event = Event(v=FORMAT_VERSION, seq=seq, ts=ts, type=type, data=data, prev=prev, hash=digest)
    return event, line


def _refuse_float(text: str) -> Any:
    raise ValueError(f"holds a float ({text}); v1 records hold none")


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"holds {text}; v1 records hold no NaN or infinity")


_loads: Final = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_constant).decode


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
    event; the content rules — each type's fields, no floats in v1 — are :func:`payload_of`'s
    (``verify`` applies both). ``prev``, when given, is the previous event's hash (known to
    be sound): a line naming it needs no other check of its ``prev``. Raises
    :class:`RecordCorrupted` naming the line, or :class:`UnsupportedVersion`.
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
        if (
            type(seq) is int
            and seq >= 0
            and type(obj["v"]) is int
            and obj["v"] == FORMAT_VERSION
            and type(ts) is str
            and _valid_ts(ts)
            and type(kind) is str
            and (kind in PAYLOADS or _TYPE_RE.fullmatch(kind))
            and type(obj["data"]) is dict
            and ((prev is not None and previous == prev) or _is_hex64(previous))
            # (the hash is compared with a hex digest below: it is hex if it matches)
            and orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == raw
            and hashlib.sha256(raw[:cut] + raw[cut + _HASH_MEMBER :]).hexdigest() == digest
        ):
            return Event(
                v=FORMAT_VERSION, seq=seq, ts=ts, type=kind, data=obj["data"], prev=previous,
                hash=digest,
            )  # fmt: skip
    return _parse_line_carefully(raw, line=line, run=run)


_valid_prefix: str = "\0"


def _valid_ts(ts: str) -> bool:
    """Whether ``ts`` is RFC 3339 UTC with microseconds (as :data:`_TS_RE` says)."""
    global _valid_prefix
    # Consecutive events mostly share their second: only the microseconds are new.
    if ts.startswith(_valid_prefix):
        micros = ts[20:]
        return len(micros) == 7 and micros[6] == "Z" and micros[:6].isdigit() and micros.isascii()
    if _TS_RE.fullmatch(ts):
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
            raise bad(f"is not valid JSON ({exc})") from None
    if type(obj) is not dict:
        raise bad(f"is a JSON {type(obj).__name__}, not an event object")
    seq = obj.get("seq")
    seq = seq if type(seq) is int else None
    version = obj.get("v")
    if type(version) is not int:
        raise bad("has no integer format version 'v'", seq)
    if version != FORMAT_VERSION and version not in UPGRADES:
        if not _hash_matches(raw, obj.get("hash")):
            # A newer writer still hashes its lines; a flipped version digit does not.
            raise bad(f"names format version {version} but does not hash: it was altered", seq)
        raise UnsupportedVersion(
            f"line {line}: record format version {version} is not one this precip-repro "
            f"reads (it reads 1..{FORMAT_VERSION}); upgrade precip-repro to read this run",
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
    if type(obj["ts"]) is not str or not _TS_RE.fullmatch(obj["ts"]):
        raise bad(f"'ts' {obj['ts']!r} is not RFC 3339 UTC with microseconds", seq)
    if type(obj["type"]) is not str or not _TYPE_RE.fullmatch(obj["type"]):
        raise bad(f"'type' {obj['type']!r} is not a dotted lower-case name", seq)
    if type(obj["data"]) is not dict:
        raise bad("'data' is not an object", seq)
    for key in ("prev", "hash"):
        if not _is_hex64(obj[key]):
            raise bad(f"'{key}' is not 64 lower-case hex digits", seq)
    # The decoder refused floats and NaN already, so a plain encoder is enough here; orjson
    # writes the same bytes as the canonical json.dumps, and json has the last word.
    canonical_ok = fast and orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == raw
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
    )


# --- versions --------------------------------------------------------------------------------

UPGRADES: Final[dict[int, Callable[[str, dict[str, JSON]], tuple[str, dict[str, JSON]]]]] = {}
"""``UPGRADES[n]`` turns the (type, data) of a version-n event into version n+1.

Format v1 is the first version, so this is empty; a v2 adds ``UPGRADES[1]``. Hashes are
always checked on the bytes as written, before any upgrade.
"""

P = TypeVar("P", bound=Payload)


def upgraded(event: Event) -> tuple[str, dict[str, JSON]]:
    """The event's (type, data) in the current format version."""
    kind, data = event.type, event.data
    for version in range(event.v, FORMAT_VERSION):
        kind, data = UPGRADES[version](kind, data)
    return kind, data


def payload_of(event: Event, *, run: str | None = None) -> Payload | None:
    """The typed payload of ``event``, or None for a type this version does not know.

    Raises :class:`RecordCorrupted` when a known type's data lacks or mistypes a field, or
    when any event's data holds a float (v1 holds none).
    """
    kind, data = (event.type, event.data) if event.v == FORMAT_VERSION else upgraded(event)
    cls = PAYLOADS.get(kind)
    if cls is None:
        # A type this version does not know is still format v1: no floats in it either.
        if _holds_float(data):
            try:
                check_recordable(data, "data")
            except UnrecordableValue as exc:
                raise RecordCorrupted(
                    f"event seq {event.seq}: {kind} {exc}", run=run, seq=event.seq
                ) from None
        return None
    token = _READING.set(True)
    try:
        try:
            payload: Payload = _FAST_HOOKS[cls](data, cls)
            return payload
        except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError):
            pass
        # The same data, read the same way, through the converter that says what is wrong.
        try:
            return converter.structure(data, cls)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            detail = "; ".join(_explain(exc))
            raise RecordCorrupted(
                f"event seq {event.seq}: {kind} data does not fit format v{FORMAT_VERSION}: "
                f"{detail}",
                run=run,
                seq=event.seq,
            ) from None
    finally:
        _READING.reset(token)


def _explain(exc: BaseException) -> list[str]:
    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc, path="data", format_exception=_say)
    return [str(exc)]


def _say(exc: BaseException, type_: Any) -> str:
    # Our own checks already say what they found ("expected int, got float", "… is a
    # float …"); cattrs' generic wording would hide it.
    if isinstance(exc, TypeError | UnrecordableValue):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def unstructure(payload: Payload) -> dict[str, JSON]:
    """The JSON data of a payload (what goes in an event's ``data``)."""
    data: dict[str, JSON] = converter.unstructure(payload)
    return data
