"""The payloads of the record format (v2): one frozen attrs class per event type.

An event's ``data`` is the payload of its ``type``. Payload classes are registered by type
name in :data:`PAYLOADS`; readers ignore types they do not know. This module owns what each
type's data holds and the values payloads share (:class:`BlobRef`, …). The envelope around
a payload and the converter between payloads and JSON data live in
:mod:`precip_repro.record.events`, which imports this module (never the other way round).
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

import attrs

from precip_repro.exceptions import UnrecordableValue
from precip_repro.record.canonical import JSON, check_recordable, holds_float, jsonable
from precip_repro.record.numbers import decode

__all__ = [
    "BlobAdded",
    "BlobRef",
    "BlobWithheld",
    "CallFailed",
    "CallFinished",
    "CallStarted",
    "CommandFinished",
    "ErrorInfo",
    "ExperimentCreated",
    "FREE_FORM",
    "FileGot",
    "FilePut",
    "INLINE_TEXT_LIMIT",
    "InstanceLaunched",
    "InstanceReady",
    "InstanceTerminated",
    "InstanceTerminating",
    "ModuleLoaded",
    "Note",
    "PAYLOADS",
    "PARAMETER_SOURCES",
    "Parameter",
    "Payload",
    "READING",
    "RUN_STATUSES",
    "ReplayOf",
    "ReplayStep",
    "RunFinished",
    "RunStarted",
    "is_hex64",
    "refs_in",
]

INLINE_TEXT_LIMIT: Final = 4096
"""Outputs up to this many bytes that are valid UTF-8 are kept inline as ``text``."""


_HEX_DIGITS: Final = b"0123456789abcdef"


def is_hex64(value: str) -> bool:
    """Whether ``value`` is 64 lower-case hex digits: a sha256 as the record writes it."""
    # Deleting the hex digits from its bytes is a table lookup per byte: twice as fast as
    # str.strip with them, and several times a regex match; this runs for every blob
    # reference read.
    return (
        type(value) is str
        and len(value) == 64
        and value.isascii()
        and not value.encode().translate(None, _HEX_DIGITS)
    )


def _check_hex64(_: object, __: object, value: str) -> None:
    if not is_hex64(value):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, not {value!r}")


# --- values shared by payloads -------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class BlobRef:
    """A reference to bytes: their sha256 and size; short UTF-8 output also inline as ``text``.

    When ``text`` is present it *is* the content: no object file is written for it. When
    ``withheld`` is present the content was not stored (it held a registered secret); the
    string says why.
    """

    sha256: str = attrs.field(validator=_check_hex64)
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


@attrs.frozen(kw_only=True, slots=False)
class ReplayOf:
    """The run a replay re-executes: its id, digest, and the ``SHA256:`` fingerprint of the
    key that signed it (None: the source is unsigned)."""

    run: str
    digest: str
    signer: str | None = None


@attrs.frozen(kw_only=True, slots=False)
class ErrorInfo:
    """An exception as recorded: its class name and message, and for an error about one
    instance (an ``InstanceError``) that instance's id and slot."""

    type: str
    message: str
    instance: str | None = None
    slot: str | None = None


READING: Final = contextvars.ContextVar("precip_record_reading", default=0)
"""The format version of the data being structured while reading a log (0 when not
reading; :func:`precip_repro.record.events.payload_of` sets it): it is JSON already,
converting it again would only cost time (a large share of reading a run); its typed
numbers are decoded back to the user's values. Negative when the reader saw the line's
bytes and nothing in them is typed: there is nothing to decode."""


def _read(value: Any, field: str, version: int) -> Any:
    """A free-form value read from a log: v1's refuses floats (the line parser leaves them
    to the payload: typed fields refuse them by type, these by this walk); typed numbers
    (v2) come back as numbers."""
    if abs(version) == 1 and holds_float(value):
        check_recordable(value, field)  # raises, naming the float's place
    return decode(value, field) if version > 0 else value


def _json_object(value: object, field: str) -> dict[str, JSON]:
    version = READING.get()
    if version and type(value) is dict:
        out: dict[str, JSON] = _read(value, field, version)
        return out
    out = jsonable(value, field, typed=False)
    if not isinstance(out, dict):
        raise UnrecordableValue(
            f"field {field!r} must be a mapping, not {type(value).__name__}", field=field
        )
    # The payload holds the user's values (a float stays a float); unstructuring writes
    # their typed encoding (:data:`FREE_FORM`).
    return out


def _args(value: object) -> dict[str, JSON]:
    return _json_object(value, "args")


def _cloud(value: object) -> dict[str, JSON]:
    cloud = _json_object(value, "cloud")
    if not isinstance(cloud.get("kind"), str):
        raise ValueError("cloud must name its kind (a string)")
    return cloud


def _facts(value: object) -> dict[str, JSON]:
    return _json_object(value, "facts")


def _fields(value: object) -> dict[str, JSON]:
    return _json_object(value, "fields")


def _recovered(value: object) -> dict[str, JSON] | None:
    if value is None:
        return None
    recovered = _json_object(value, "recovered")
    if "torn_tail" in recovered:
        _torn_tail(recovered)  # a blob reference, or the record is not one recover wrote
    return recovered


_REF_KEYS: Final = frozenset({"sha256", "size", "text", "withheld"})


def _torn_tail(recovered: Mapping[str, JSON]) -> BlobRef | None:
    value = recovered.get("torn_tail")
    if value is None:
        return None
    if (
        type(value) is not dict
        or not {"sha256", "size"} <= value.keys() <= _REF_KEYS
        or type(value["size"]) is not int
        or type(value.get("text", "")) is not str
        or type(value.get("withheld", "")) is not str
    ):
        raise ValueError(f"recovered.torn_tail is {value!r}, not a blob reference")
    return BlobRef(
        sha256=value["sha256"], size=value["size"], text=value.get("text"),
        withheld=value.get("withheld"),
    )  # fmt: skip


def _differences(value: object) -> list[dict[str, JSON]]:
    version = READING.get()
    if version and type(value) is list:
        out: list[dict[str, JSON]] = _read(value, "differences", version)
        return out
    out = jsonable(value, "differences", typed=False)
    if not isinstance(out, list) or not all(isinstance(item, dict) for item in out):
        raise UnrecordableValue(
            "field 'differences' must be a list of mappings", field="differences"
        )
    return out


def _value(value: object) -> JSON:
    version = READING.get()
    if version:
        return _read(value, "value", version)
    return jsonable(value, "value", typed=False)


def _result(value: object) -> JSON:
    version = READING.get()
    if version:
        return _read(value, "result", version)
    return jsonable(value, "result", typed=False)


# --- payloads --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class Payload:
    """Base of every event payload; ``TYPE`` is the event's dotted type name."""

    TYPE: ClassVar[str] = ""


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
class ExperimentCreated(Payload):
    TYPE: ClassVar[str] = "experiment.created"
    exp: str
    name: str | None
    cloud: dict[str, JSON] = attrs.field(converter=_cloud)
    """Where the experiment runs, as its cloud said (``kind``, ``endpoint``, ``region``,
    ``access_key_fingerprint``: never a credential). The cloud's own value; the record keeps
    it as plain data."""
    key_fingerprint: str | None = None
    login_user: str | None = None
    """The account ssh logged in as when not root (calls as others went through its
    sudo); absent for root."""


@attrs.frozen(kw_only=True, slots=False)
class CallStarted(Payload):
    TYPE: ClassVar[str] = "call.started"
    call: int
    exp: str
    method: str
    args: dict[str, JSON] = attrs.field(converter=_args)


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
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


@attrs.frozen(kw_only=True, slots=False)
class InstanceTerminating(Payload):
    TYPE: ClassVar[str] = "instance.terminating"
    slot: str
    instance_id: str
    call: int | None = None


@attrs.frozen(kw_only=True, slots=False)
class InstanceTerminated(Payload):
    TYPE: ClassVar[str] = "instance.terminated"
    slot: str
    instance_id: str
    call: int | None = None


@attrs.frozen(kw_only=True, slots=False)
class CallFinished(Payload):
    TYPE: ClassVar[str] = "call.finished"
    call: int
    result: JSON = attrs.field(converter=_result)
    duration_ns: int


@attrs.frozen(kw_only=True, slots=False)
class CallFailed(Payload):
    TYPE: ClassVar[str] = "call.failed"
    call: int
    error: ErrorInfo
    duration_ns: int


@attrs.frozen(kw_only=True, slots=False)
class Note(Payload):
    TYPE: ClassVar[str] = "note"
    text: str
    fields: dict[str, JSON] = attrs.field(factory=dict, converter=_fields)


PARAMETER_SOURCES: Final = ("environment", "default", "recording")
"""Where a parameter's value came from: the environment variable of its name, the default
the script gave, or the recording a playback answers from."""


@attrs.frozen(kw_only=True, slots=False)
class Parameter(Payload):
    """A value the script declared as a parameter of the experiment (``exp.param``): its
    name (an environment variable's), the value used, typed as the script asked, and where
    it came from. ``diff`` and ``report`` say a changed parameter first."""

    TYPE: ClassVar[str] = "parameter"
    name: str
    value: JSON = attrs.field(converter=_value)
    source: str


@attrs.frozen(kw_only=True, slots=False)
class RunFinished(Payload):
    TYPE: ClassVar[str] = "run.finished"
    status: str
    events: int
    duration_ns: int
    digest: str
    recovered: dict[str, JSON] | None = attrs.field(default=None, converter=_recovered)
    """Set by ``recover``: ``reason``, and for a torn tail ``torn_tail`` (a blob reference:
    the bytes cut off, verified like every blob) and ``torn_line``."""

    @property
    def torn_tail(self) -> BlobRef | None:
        """The blob ``recover`` kept the torn tail in, if any."""
        return None if self.recovered is None else _torn_tail(self.recovered)


@attrs.frozen(kw_only=True, slots=False)
class BlobWithheld(Payload):
    """A blob stored earlier was removed because it holds a secret registered after it was
    stored (the experiment script with a literal key, a file moved before ``secret()``).
    Every reference to ``sha256`` before this event is withheld from here on: ``verify``
    excuses its absence, readers treat it as kept by hash only."""

    TYPE: ClassVar[str] = "blob.withheld"
    sha256: str = attrs.field(validator=_check_hex64)
    size: int
    reason: str


@attrs.frozen(kw_only=True, slots=False)
class BlobAdded(Payload):
    """A blob stored with ``Run.add_blob`` that no event referred to by the time the run
    finished: this event refers to it, so that ``verify`` checks it like every other."""

    TYPE: ClassVar[str] = "blob.added"
    content: BlobRef


@attrs.frozen(kw_only=True, slots=False)
class ModuleLoaded(Payload):
    """A Python module of the experiment's own — a file beside the script that it imported
    (``from helper import …``) — with its source: what ran is the script and these. Written
    after ``run.started`` for the modules imported by then, and before ``run.finished`` for
    those imported later."""

    TYPE: ClassVar[str] = "module.loaded"
    name: str
    path: str
    content: BlobRef


@attrs.frozen(kw_only=True, slots=False)
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
        BlobAdded,
        Parameter,
    )
}
"""Every event type and its payload class."""

RUN_STATUSES: Final = ("ok", "failed", "interrupted")


FREE_FORM: Final[Mapping[type[Payload], tuple[str, ...]]] = {
    ExperimentCreated: ("cloud",),
    CallStarted: ("args",),
    InstanceReady: ("facts",),
    CallFinished: ("result",),
    Note: ("fields",),
    Parameter: ("value",),
    RunFinished: ("recovered",),
    ReplayStep: ("differences",),
}
"""Per payload class, its free-form fields: a user's or a cloud's values, held as they were
given and written in the typed encoding of :mod:`precip_repro.record.numbers`."""


def _ref_fields(cls: type[Payload]) -> tuple[str, ...]:
    attrs.resolve_types(cls)
    return tuple(f.name for f in attrs.fields(cls) if f.type in (BlobRef, BlobRef | None))


_REF_FIELDS: Final = {cls: _ref_fields(cls) for cls in PAYLOADS.values()}
"""Per payload class, its fields that hold blob references (and only those do: a user's
argument or note shaped like a reference is still the user's data)."""


def refs_in(payload: Payload) -> Iterator[BlobRef]:
    """The blob references a payload holds: its reference fields, and the torn tail a
    recovered run's ``run.finished`` names."""
    for name in _REF_FIELDS[type(payload)]:
        ref = getattr(payload, name)
        if ref is not None:
            yield ref
    if type(payload) is RunFinished and payload.recovered is not None:
        torn = payload.torn_tail
        if torn is not None:
            yield torn
