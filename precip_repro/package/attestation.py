"""The package's in-toto attestation: a Statement v1 whose subjects are every file of the
package but the attestation itself, with a SLSA Provenance v1 predicate that describes the
run as the build.

- ``buildDefinition``: the build type (a run recorded by precip-repro); as external
  parameters the script (path and sha256), its arguments and a replay's mapping; as
  internal ones the tool, Python, platform and working directory; as resolved
  dependencies the script and its modules (sha256) and the images the run started (with
  their digest where the cloud gives one).
- ``runDetails``: the builder (precip-repro and its version), the run id as invocation id,
  start and finish, and the run's digest (the hash of its last event, what the signed
  checkpoint names) as a byproduct.

The statement is canonical JSON (RFC 8785, the ``rfc8785`` package): the same run gives
the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import rfc8785

from precip_repro.package.crate import iso, script_name
from precip_repro.package.layout import ATTESTATION, EXPERIMENT, RUN, Member
from precip_repro.record.store import OBJECTS
from precip_repro.runview import RunView

__all__ = ["BUILD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "roles_of", "statement"]

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://slsa.dev/provenance/v1"
BUILD_TYPE: Final = "urn:precip-repro:build-type:run:v1"
"""A run recorded by precip-repro: the build type's parameters are described in
records/README.md (there is no registry of build types to publish it in)."""
BUILDER: Final = "urn:precip-repro:builder"
_DIGEST: Final = re.compile(r"(?:(sha256|sha512):)?([0-9a-f]{64}|[0-9a-f]{128})")


def roles_of(view: RunView) -> dict[str, set[str]]:
    """What each blob was to the run (``output``, ``got``, ``put``, ``script``, ``module``),
    by sha256: the annotations of the blobs' subjects."""
    roles: dict[str, set[str]] = {}

    def note(sha: str | None, role: str) -> None:
        if sha is not None:
            roles.setdefault(sha, set()).add(role)

    for call in view.calls:
        for command in call.commands:
            for ref in (command.stdout, command.stderr):
                note(ref.sha256 if ref is not None else None, "output")
        for moved in call.files:
            note(moved.content.sha256 if moved.content is not None else None, moved.kind)
    note(view.script.sha256 if view.script is not None else None, "script")
    for module in view.modules.values():
        note(module.content.sha256 if module.content is not None else None, "module")
    return roles


def _digest(text: str | None) -> dict[str, str] | None:
    found = _DIGEST.fullmatch(text or "")
    if found is None:
        return None
    algorithm, value = found.groups()
    return {algorithm or ("sha256" if len(value) == 64 else "sha512"): value}


def _dependencies(view: RunView) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    if view.script is not None:
        deps.append(
            {
                "name": f"{EXPERIMENT}/{script_name(view)}",
                "uri": f"file://{view.started.get('script_path') or script_name(view)}",
                "digest": {"sha256": view.script.sha256},
            }
        )
    for module in sorted(view.modules.values(), key=lambda m: m.name):
        if module.content is not None:
            deps.append(
                {
                    "name": f"{EXPERIMENT}/{module.name.replace('.', '/')}.py",
                    "uri": f"file://{module.path}",
                    "digest": {"sha256": module.content.sha256},
                }
            )
    images: dict[tuple[str, str, str | None], list[str]] = {}
    for slot, instance in view.instances.items():
        cloud = view.experiments.get(instance.exp, {}).get("cloud")
        kind = str(cloud.get("kind")) if isinstance(cloud, dict) else "cloud"
        images.setdefault((kind, instance.image_id, instance.image_digest), []).append(slot)
    for (kind, image, digest), slots in sorted(images.items(), key=str):
        dep: dict[str, Any] = {
            "name": image,
            "uri": f"urn:precip-repro:image:{kind}:{image}",
            "annotations": {"cloud": kind, "instances": slots},
        }
        found = _digest(digest)
        if found is not None:
            dep["digest"] = found
        deps.append(dep)
    return deps


def statement(
    view: RunView, digest: str, members: Iterable[Member], *, blobs: str = f"{RUN}/{OBJECTS}/"
) -> bytes:
    """The canonical bytes of the statement over ``members`` (the attestation left out);
    ``blobs`` is where the run's blobs are among them (their roles annotate them)."""
    roles = roles_of(view)
    subjects = []
    for member in sorted(members, key=lambda m: m.name):
        if member.name == ATTESTATION:
            continue
        subject: dict[str, Any] = {"name": member.name, "digest": {"sha256": member.sha256}}
        if member.name.startswith(blobs) and member.sha256 in roles:
            subject["annotations"] = {"roles": sorted(roles[member.sha256])}
        subjects.append(subject)
    started = view.started
    finished = view.finished or {}
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "script": {
                    "path": started.get("script_path"),
                    "sha256": view.script.sha256 if view.script is not None else None,
                },
                "argv": started.get("argv"),
                "mapping": started.get("mapping"),
                "replay_of": started.get("replay_of"),
            },
            "internalParameters": {
                key: started.get(key)
                for key in ("tool_version", "python", "platform", "cwd", "git_commit")
            },
            "resolvedDependencies": _dependencies(view),
        },
        "runDetails": {
            "builder": {
                "id": BUILDER,
                "version": {"precip-repro": str(started.get("tool_version"))},
            },
            "metadata": {
                "invocationId": view.run,
                "startedOn": iso(view.first_ns),
                "finishedOn": iso(view.last_ns),
            },
            "byproducts": [
                {
                    "name": "run digest",
                    "digest": {"sha256": digest},
                    "annotations": {
                        "description": "the hash of the run's last event (run.finished), "
                        "named by run/checkpoint and signed in run/checkpoint.sig",
                        "events": view.events,
                        "status": finished.get("status"),
                    },
                }
            ],
        },
    }
    document: dict[str, Any] = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }
    return rfc8785.dumps(document)
