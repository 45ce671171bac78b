"""The package's ``ro-crate-metadata.json``: the run described as a Process Run Crate.

Built with ro-crate-py (``rocrate``): the root dataset (name, description, license, date,
authors), the experiment script and its modules as the instrument (a
``SoftwareApplication``), one ``CreateAction`` per command and per transfer (where: the
instance; the command line as its description; start and end; the exit status as its
``actionStatus``; what it read as ``object`` and what it produced as ``result``, each with
its sha256), the instances (a ``Place``, the action's ``location``: image, type and facts as
``PropertyValue``\\ s), and every file of the package.

The crate says RO-Crate 1.3 (the JSON-LD context ``rocrate`` ships) and also 1.1, which
Process Run Crate 0.5 builds on: a 1.3 crate is a 1.1 crate with more terms.
Content the record holds inline (short outputs) or by hash only (withheld: it held a
secret) is no file of the package: it is a contextual entity carrying its sha256.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Any, Final

from rocrate.model.contextentity import ContextEntity
from rocrate.model.entity import Entity
from rocrate.model.softwareapplication import SoftwareApplication
from rocrate.rocrate import ROCrate

from precip_repro.content import ContentRef
from precip_repro.package.info import PackageInfo
from precip_repro.package.layout import ATTESTATION, EXPERIMENT, METADATA, REPORT, RUN, Member
from precip_repro.record.store import OBJECTS
from precip_repro.runview import CallView, InstanceView, RunView

__all__ = [
    "PROCESS_RUN_CRATE",
    "RO_CRATE_1_1",
    "crate_metadata",
    "iso",
    "script_members",
]

PROCESS_RUN_CRATE: Final = "https://w3id.org/ro/wfrun/process/0.5"
RO_CRATE_1_1: Final = "https://w3id.org/ro/crate/1.1"
_COMPLETED: Final = {"@id": "http://schema.org/CompletedActionStatus"}
_FAILED: Final = {"@id": "http://schema.org/FailedActionStatus"}


def iso(ns: int) -> str:
    """A record time (ns since the epoch) as ISO 8601 UTC, to the microsecond."""
    moment = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.UTC).replace(
        microsecond=(ns // 1000) % 10**6
    )
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def script_name(view: RunView) -> str:
    path = str(view.started.get("script_path") or "script.py")
    return PurePosixPath(path).name or "script.py"


def script_members(
    view: RunView, read: Callable[[ContentRef], bytes]
) -> dict[str, tuple[Member, ContentRef]]:
    """The script and its modules as readable files of the package (``experiment/…``), by
    their package name; ``read`` gives a reference's bytes. Withheld ones are left out."""
    found: dict[str, tuple[Member, ContentRef]] = {}
    refs: list[tuple[str, ContentRef | None]] = [(script_name(view), view.script)]
    for module in sorted(view.modules.values(), key=lambda m: m.name):
        refs.append((module.name.replace(".", "/") + ".py", module.content))
    for relative, ref in refs:
        if ref is None or ref.withheld is not None:
            continue
        name = f"{EXPERIMENT}/{relative}"
        if name not in found:
            found[name] = (Member.of_bytes(name, read(ref)), ref)
    return found


class _Builder:
    def __init__(self, view: RunView, members: dict[str, Member], info: PackageInfo) -> None:
        self.view = view
        self.members = members
        self.info = info
        self.crate = ROCrate(gen_preview=False)
        self.files: dict[str, Entity] = {}
        self.contents: dict[str, Entity] = {}

    def file(self, name: str, **properties: Any) -> Entity:
        """The data entity of a package file (made once)."""
        found = self.files.get(name)
        if found is not None:
            return found
        member = self.members.get(name)
        props: dict[str, Any] = {"name": PurePosixPath(name).name}
        if member is not None:
            props.update(sha256=member.sha256, contentSize=str(member.size))
        props.update(properties)
        entity = self.files[name] = self.crate.add_file(dest_path=name, properties=props)
        return entity

    def content(self, ref: ContentRef, what: str) -> Entity:
        """A command's output or a file moved: the blob's file when the package holds it,
        else a contextual entity holding its hash (inline, or withheld)."""
        blob = f"{RUN}/{OBJECTS}/{ref.sha256[:2]}/{ref.sha256[2:]}"
        if ref.text is None and ref.withheld is None and blob in self.members:
            return self.file(blob, description=what)
        key = f"#content-{ref.sha256}"
        found = self.contents.get(key)
        if found is not None:
            return found
        props: dict[str, Any] = {
            "@type": "CreativeWork",
            "name": what,
            "sha256": ref.sha256,
            "contentSize": str(ref.size),
        }
        if ref.withheld is not None:
            props["description"] = f"kept by hash only: {ref.withheld}"
        else:
            props["description"] = "held inline in run/events.jsonl"
        entity = self.contents[key] = self.crate.add(ContextEntity(self.crate, key, props))
        return entity

    def build(self) -> dict[str, Any]:
        view, info, crate = self.view, self.info, self.crate
        crate.metadata["conformsTo"] = [
            {"@id": crate.metadata.profile},
            {"@id": RO_CRATE_1_1},
        ]
        root = crate.root_dataset
        root["name"] = info.name or f"precip-repro run {view.run}"
        root["description"] = info.description or self.description()
        finished = iso(view.last_ns)
        root["datePublished"] = info.date_published or finished[:10]
        root["identifier"] = view.run
        license_ = crate.add(
            ContextEntity(
                crate,
                info.license_url,
                {"@type": "CreativeWork", "name": info.license, "identifier": info.license},
            )
        )
        root["license"] = license_
        profile = crate.add(
            ContextEntity(
                crate,
                PROCESS_RUN_CRATE,
                {"@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
            )
        )
        root["conformsTo"] = [profile]
        authors = []
        for number, author in enumerate(info.authors, 1):
            props = {"@type": "Person", "name": author.name}
            authors.append(crate.add(ContextEntity(crate, author.id or f"#author-{number}", props)))
        if authors:
            root["author"] = authors
        for name in sorted(self.members):
            if not name.startswith(f"{RUN}/{OBJECTS}/"):
                self.file(name, **self.describe(name))
        self.file(
            ATTESTATION,
            description="in-toto Statement v1 (SLSA Provenance v1) in a DSSE envelope, signed "
            "with the run's key; its subjects are every other file of this package",
            encodingFormat="application/vnd.in-toto+json",
        )
        instrument = self.instrument()
        instances = {slot: self.instance(iv) for slot, iv in view.instances.items()}
        actions: list[Entity] = []
        for call in view.calls:
            actions.extend(self.actions(call, instrument, instances))
        if actions:
            root["mentions"] = actions
        for name in sorted(self.members):  # the blobs no action named: still files of it
            self.file(name)
        return crate.metadata.generate()  # type: ignore[no-any-return]

    def describe(self, name: str) -> dict[str, Any]:
        if name == REPORT:
            return {"description": "the run's report", "encodingFormat": "text/html"}
        if name == f"{RUN}/events.jsonl":
            return {
                "description": "the run's hash-chained event log (records/README.md)",
                "encodingFormat": "application/jsonl",
            }
        if name == f"{RUN}/checkpoint":
            return {"description": "the run's id, event count and digest, as signed"}
        if name == f"{RUN}/checkpoint.sig":
            return {"description": "OpenSSH SSHSIG of the checkpoint, namespace precip-repro"}
        if name.startswith(f"{EXPERIMENT}/"):
            return {
                "@type": ["File", "SoftwareSourceCode"],
                "programmingLanguage": "Python",
                "encodingFormat": "text/x-python",
            }
        return {}

    def description(self) -> str:
        view = self.view
        commands = sum(len(call.commands) for call in view.calls)
        moved = sum(len(call.files) for call in view.calls)
        return (
            f"A run of {script_name(view)} recorded by precip-repro: {len(view.calls)} calls, "
            f"{commands} commands and {moved} transfers on {len(view.instances)} instances, "
            f"ended {view.ended}."
        )

    def instrument(self) -> Entity:
        view = self.view
        parts = [
            self.files[name] for name in sorted(self.files) if name.startswith(f"{EXPERIMENT}/")
        ]
        props: dict[str, Any] = {
            "name": script_name(view),
            "description": "the experiment script and its own modules, run with precip-repro "
            f"{view.started.get('tool_version', '')} on Python {view.started.get('python', '')}",
        }
        if view.script is not None:
            props["sha256"] = view.script.sha256
        if parts:
            props["hasPart"] = parts
        return self.crate.add(SoftwareApplication(self.crate, "#experiment", props))

    def instance(self, iv: InstanceView) -> Entity:
        key = f"#instance-{iv.slot}"
        values: list[tuple[str, Any]] = [
            ("image", iv.image_id),
            ("instance_type", iv.instance_type),
            ("image_digest", iv.image_digest),
            ("instance_ids", ", ".join(iv.instance_ids)),
            ("host_key", iv.host_key),
            *((f"fact:{name}", value) for name, value in sorted(iv.facts.items())),
        ]
        properties = []
        for name, value in values:
            if value is None:
                continue
            shown = value if isinstance(value, str | int | float) else json.dumps(value)
            properties.append(
                self.crate.add(
                    ContextEntity(
                        self.crate,
                        f"{key}/{name}",
                        {"@type": "PropertyValue", "name": name, "value": shown},
                    )
                )
            )
        props: dict[str, Any] = {
            "@type": "Place",
            "name": f"instance {iv.slot} ({iv.image_id}, {iv.instance_type})",
            "identifier": iv.instance_ids[-1] if iv.instance_ids else iv.slot,
            "additionalProperty": properties,
        }
        return self.crate.add(ContextEntity(self.crate, key, props))

    def actions(
        self, call: CallView, instrument: Entity, instances: dict[str, Entity]
    ) -> Iterable[Entity]:
        crate = self.crate
        for index, command in enumerate(call.commands, 1):
            results = [
                self.content(ref, f"{stream} of `{command.cmd[:80]}` on {command.slot}")
                for stream, ref in (("stdout", command.stdout), ("stderr", command.stderr))
                if ref is not None and not ref.empty
            ]
            ok = command.exit_code == 0
            props: dict[str, Any] = {
                "@type": "CreateAction",
                "name": f"call {call.number}: {call.method} on {command.slot}",
                "description": command.cmd,
                "startTime": iso(command.end_ns - command.duration_ns),
                "endTime": iso(command.end_ns),
                "actionStatus": _COMPLETED if ok else _FAILED,
                "location": _ref(instances.get(command.slot)),
            }
            if not ok:
                props["error"] = (
                    f"exit status {command.exit_code}"
                    if command.exit_code is not None
                    else "no exit status (the connection ended)"
                )
            action = ContextEntity(crate, f"#call-{call.number}-command-{index}", _plain(props))
            action["instrument"] = instrument
            if results:
                action["result"] = results
            yield crate.add(action)
        for index, moved in enumerate(call.files, 1):
            arrow = (
                f"{moved.local_path} → {moved.slot}:{moved.remote_path}"
                if moved.kind == "put"
                else f"{moved.slot}:{moved.remote_path} → {moved.local_path}"
            )
            props = {
                "@type": "CreateAction",
                "name": f"call {call.number}: {moved.kind} {arrow}",
                "description": f"{moved.kind} {arrow} (mode {moved.mode:o})",
                "startTime": iso(min(call.start_ns, moved.at_ns)),
                "endTime": iso(moved.at_ns),
                "actionStatus": _COMPLETED,
                "location": _ref(instances.get(moved.slot)),
            }
            action = ContextEntity(
                crate, f"#call-{call.number}-{moved.kind}-{index}", _plain(props)
            )
            action["instrument"] = instrument
            if moved.content is not None:
                entity = self.content(moved.content, f"{moved.kind}: {arrow}")
                action["object" if moved.kind == "put" else "result"] = [entity]
            yield crate.add(action)


def _ref(entity: Entity | None) -> dict[str, str] | None:
    return {"@id": entity.id} if entity is not None else None


def _plain(props: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in props.items() if value is not None}


def crate_metadata(view: RunView, members: Iterable[Member], info: PackageInfo) -> bytes:
    """The bytes of ``ro-crate-metadata.json`` for a package holding ``members`` (the
    attestation aside, which is named but not hashed: it signs this file). The same run,
    files and info give the same bytes."""
    by_name = {member.name: member for member in members if member.name != METADATA}
    document = _Builder(view, by_name, info).build()
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
