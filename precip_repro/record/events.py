"""The event of the record format (v2; v1 read and lifted): its envelope, its payload's
conversion, its version.

An :class:`Event` is the envelope (``v``, ``seq``, ``ts``, ``type``, ``data``, ``prev``,
``hash``); its ``data`` is the payload of its type (:mod:`precip_repro.record.payloads`).
This module owns the envelope, its timestamps, the one converter between payloads and
their JSON data, and the upgrade chain from older format versions. Sealing an event into
its line and parsing a line back live in :mod:`precip_repro.record.lines`, which imports this
module (never the other way round).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from precip_repro.exceptions import RecordCorrupted, UnrecordableValue
from precip_repro.record.canonical import (
    JSON,
    canonical,
    check_recordable,
    holds_float,
    jsonable,
)
from precip_repro.record.numbers import (
    MAX_SAFE,
    decode,
    encode_int,
    escape_reserved,
    needs_encoding,
)

# The payloads are re-exported: ``precip_repro.record.events`` is where callers (and the
# README's example) have always found them.
from precip_repro.record.payloads import (
    FREE_FORM,
    PAYLOADS,
    READING,
    BlobAdded,
    BlobRef,
    BlobWithheld,
    CallFailed,
    CallFinished,
    CallStarted,
    CommandFinished,
    ErrorInfo,
    ExperimentCreated,
    FileGot,
    FilePut,
    InstanceLaunched,
    InstanceReady,
    InstanceTerminated,
    InstanceTerminating,
    ModuleLoaded,
    Note,
    Parameter,
    Payload,
    ReplayOf,
    ReplayStep,
    RunFinished,
    RunStarted,
    refs_in,
)

__all__ = [
    "BlobAdded",
    "BlobRef",
    "BlobWithheld",
    "CallFailed",
    "CallFinished",
    "CallStarted",
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
    "Parameter",
    "Payload",
    "ReplayOf",
    "ReplayStep",
    "RunFinished",
    "RunStarted",
    "TS_RE",
    "UPGRADES",
    "converter",
    "format_ts",
    "parse_ts",
    "payload_of",
    "refs_in",
    "unstructure",
    "upgrade",
    "upgraded",
]

FORMAT_VERSION: Final = 2
"""The version new runs are written in. A run is one version throughout: the version of its
``run.started`` (``recover`` finishes a v1 run in v1)."""
READABLE: Final = frozenset({1, 2})
"""The versions this precip-repro reads."""
GENESIS: Final = "0" * 64


# --- the envelope ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class Event:
    """One line of ``events.jsonl``, as read or as written."""

    v: int
    seq: int
    ts: str
    type: str
    data: dict[str, JSON] = attrs.field(eq=True, hash=False)
    prev: str
    hash: str
    typed: bool = attrs.field(default=True, eq=False, repr=False)
    """Whether ``data``'s free-form values may hold typed values (``{"$float": …}``) or
    ``$object`` wrappers: false when the event has no free-form field, or the line parser's
    walk of them met no one-member object with a reserved key — which spares the payload a
    second walk. Not part of the event: a reader's knowledge of its bytes."""

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
        return canonical(self.to_json(), v=self.v) + b"\n"

    @property
    def when(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.ts)


# --- timestamps ------------------------------------------------------------------------------

TS_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
"""A record timestamp: RFC 3339 UTC with microseconds and ``Z``, as :func:`format_ts` writes."""

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
    if TS_RE.fullmatch(ts):
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


# --- the converter ---------------------------------------------------------------------------


def _strict(kind: type[Any]) -> Callable[[Any, Any], Any]:
    # cattrs' default int/str hooks coerce ("5" -> 5); a record must read back as written.
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            if kind is int and _typed_int(value):
                return decode(value)
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


def _typed_int(value: Any) -> bool:
    # An integer field beyond ±(2^53 - 1) (a duration of more than 104 days) is typed.
    return type(value) is dict and value.keys() == {"$int"} and type(decode(value)) is int


def _strict_optional(kind: type[Any]) -> Callable[[Any, Any], Any]:
    # One hook for `X | None` instead of cattrs' generic one dispatching again on X: the
    # hot path of reading a run meets several per event.
    def hook(value: Any, _: Any) -> Any:
        if value is not None and type(value) is not kind:
            if kind is int and _typed_int(value):
                return decode(value)
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


# --- versions --------------------------------------------------------------------------------


def _v1_to_v2(kind: str, data: dict[str, JSON]) -> tuple[str, dict[str, JSON]]:
    # v1 has no typed values: a user's object shaped like one is the user's, said so in v2
    # terms. (A float v1 kept as its decimal string stays a string: v1 cannot tell it from
    # one the user wrote.)
    lifted: dict[str, JSON] = escape_reserved(data)
    return kind, lifted


UPGRADES: Final[dict[int, Callable[[str, dict[str, JSON]], tuple[str, dict[str, JSON]]]]] = {
    1: _v1_to_v2,
}
"""``UPGRADES[n]`` turns the (type, data) of a version-n event into version n+1.

Hashes are always checked on the bytes as written, by the rules of the version written,
before any upgrade.
"""

P = TypeVar("P", bound=Payload)


def upgraded(event: Event) -> tuple[str, dict[str, JSON]]:
    """The event's (type, data) in the current format version."""
    return upgrade(event.v, event.type, event.data)


def upgrade(version: int, kind: str, data: dict[str, JSON]) -> tuple[str, dict[str, JSON]]:
    """An event's (type, data) of format ``version`` in the current one."""
    for step in range(version, FORMAT_VERSION):
        kind, data = UPGRADES[step](kind, data)
    return kind, data


def payload_of(event: Event, *, run: str | None = None) -> Payload | None:
    """The typed payload of ``event``, or None for a type this version does not know.

    Free-form values come back as the user passed them (typed numbers decoded). Raises
    :class:`RecordCorrupted` when a known type's data lacks or mistypes a field, holds a
    malformed typed value, or when a v1 event's data holds a float (v1 holds none).
    """
    kind, data = (event.type, event.data) if event.v == FORMAT_VERSION else upgraded(event)
    cls = PAYLOADS.get(kind)
    if cls is None:
        # A type this version does not know is still of its format: no floats in v1.
        if event.v == 1 and holds_float(data):
            try:
                check_recordable(data, "data")
            except UnrecordableValue as exc:
                raise RecordCorrupted(
                    f"event seq {event.seq}: {kind} {exc}", run=run, seq=event.seq
                ) from None
        return None
    # Only free-form fields read the version (a negative one: nothing in the data is typed,
    # nothing to decode); setting it costs a new context, and most events hold none.
    token = READING.set(event.v if event.typed else -event.v) if cls in FREE_FORM else None
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
                f"event seq {event.seq}: {kind} data does not fit format v{event.v}: {detail}",
                run=run,
                seq=event.seq,
            ) from None
    finally:
        if token is not None:
            READING.reset(token)


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
    free = FREE_FORM.get(type(payload), ())
    if not needs_encoding(data, any_float=True):
        return data  # what nearly every event holds: written as it is
    for name, value in data.items():
        if name in free:
            if value is not None:
                data[name] = jsonable(value, name)  # numbers JSON cannot carry, typed
        elif type(value) is int:
            if not -MAX_SAFE <= value <= MAX_SAFE:
                data[name] = encode_int(value)  # a run of more than 104 days' duration_ns
        elif holds_float(value):
            # A typed field holds what its type says (durations are integer nanoseconds);
            # only free-form fields hold a user's floats.
            raise UnrecordableValue(
                f"field {name!r} of {payload.TYPE} is a float ({value!r}); it holds "
                "integers (durations in nanoseconds, sizes in bytes)",
                field=name,
            )
    return data
