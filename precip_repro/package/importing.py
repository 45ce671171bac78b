"""``import``: a reviewer's package put into a store, verified.

Every file of the package is read once and hashed; the attestation's envelope must verify
with the key in the run's ``checkpoint.sig``, and name every other file of the package with
its sha256 — no more, no fewer. Then the run itself is verified as ``verify`` does (the
chain, the checkpoint and its SSHSIG, the blobs; with ``signers``, that a trusted key signed
it). Only then does the run enter the store, under its id, by one rename. A file that
differs is refused naming it; a run id the store already holds is refused unless it is the
same run, byte for byte (then nothing is written).
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
from sshsig.sshsig import SshsigSignature, ssh_dearmor_sshsig

from precip_repro.exceptions import PackageTampered, PackageUntrusted, RunConflict
from precip_repro.package.archive import PackageReader
from precip_repro.package.attestation import PREDICATE_TYPE, STATEMENT_TYPE
from precip_repro.package.dsse import verify_envelope
from precip_repro.package.layout import ATTESTATION, METADATA, RUN, safe_name
from precip_repro.record.signature import SIGNATURE, key_line
from precip_repro.record.store import CHECKPOINT, EVENTS, OBJECTS, RunStore
from precip_repro.record.trusted import TrustedKeys
from precip_repro.record.verify import Verdict, verify

__all__ = ["Imported", "import_package"]

_REQUIRED = (ATTESTATION, METADATA, f"{RUN}/{EVENTS}", f"{RUN}/{CHECKPOINT}", f"{RUN}/{SIGNATURE}")
_CHUNK = 1 << 20


@attrs.frozen(kw_only=True)
class Imported:
    """A package imported: the run's directory in the store, its verdict, and whether the
    store held it already (identical: nothing was written)."""

    path: Path
    verdict: Verdict
    already: bool


def _claimed_key(raw: bytes, name: str) -> str:
    """The public key a checkpoint signature names (checked later, by ``verify``)."""
    try:
        return key_line(SshsigSignature(ssh_dearmor_sshsig(raw)).public_key)
    except (ValueError, NotImplementedError, UnicodeDecodeError, IndexError) as exc:
        raise PackageTampered(f"{name} is not an OpenSSH signature ({exc})", path=name) from None


def _copy(reader: PackageReader, name: str, target: Path | None) -> str:
    """Read one file of the package (into ``target`` when given); its sha256."""
    digest = hashlib.sha256()
    out = None
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("wb")
    try:
        with reader.open(name) as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest()


def _subjects(payload: bytes) -> dict[str, str]:
    try:
        document: Any = json.loads(payload)
        if document.get("_type") != STATEMENT_TYPE:
            raise ValueError(f"_type is {document.get('_type')!r}, not {STATEMENT_TYPE}")
        if document.get("predicateType") != PREDICATE_TYPE:
            raise ValueError(f"predicateType is not {PREDICATE_TYPE}")
        found: dict[str, str] = {}
        for subject in document["subject"]:
            name, sha = subject["name"], subject["digest"]["sha256"]
            if not isinstance(name, str) or not isinstance(sha, str) or name in found:
                raise ValueError(f"subject {name!r} is malformed or named twice")
            found[name] = sha
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PackageTampered(
            f"{ATTESTATION} holds no in-toto statement of ours ({exc})", path=ATTESTATION
        ) from None
    return found


def _unverified_subjects(envelope: Any) -> dict[str, str]:
    """The subjects an envelope claims, unchecked: only to name the file at fault when its
    signature does not check (a changed key in checkpoint.sig, or a changed statement)."""
    try:
        import base64

        return _subjects(base64.b64decode(envelope["payload"]))
    except (PackageTampered, KeyError, TypeError, ValueError):
        return {}


def _check_subjects(hashes: dict[str, str], subjects: dict[str, str]) -> None:
    for name in sorted(hashes):
        if name == ATTESTATION:
            continue
        claimed = subjects.get(name)
        if claimed is None:
            raise PackageTampered(
                f"{name} is not named by the package's attestation: it was added after signing",
                path=name,
            )
        if claimed != hashes[name]:
            raise PackageTampered(
                f"{name} has sha256 {hashes[name]}, and the signed attestation says "
                f"{claimed}: it was altered after signing",
                path=name,
            )
    missing = sorted(set(subjects) - set(hashes))
    if missing:
        raise PackageTampered(
            f"{missing[0]} is named by the attestation but not in the package"
            + (f" (nor are {len(missing) - 1} more)" if len(missing) > 1 else ""),
            path=missing[0],
        )


def _same_run(a: Path, b: Path) -> bool:
    for name in (EVENTS, CHECKPOINT, SIGNATURE):
        if (a / name).is_file() != (b / name).is_file():
            return False
        if (a / name).is_file() and not filecmp.cmp(a / name, b / name, shallow=False):
            return False
    ours = {p.relative_to(a).as_posix() for p in (a / OBJECTS).rglob("*") if p.is_file()}
    theirs = {p.relative_to(b).as_posix() for p in (b / OBJECTS).rglob("*") if p.is_file()}
    return ours == theirs  # blobs are named by their hash, which verify checked


def import_package(
    package: Path, store: RunStore, *, signers: TrustedKeys | None = None
) -> Imported:
    """Verify ``package`` (a zip or a directory) and put its run into ``store``.

    Raises :class:`PackageTampered` naming the file at fault, :class:`PackageUntrusted` for
    a run no ``signers`` key signed, :class:`RunConflict` when the store holds another
    run by its id."""
    reader = PackageReader(package)
    store.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".import-", dir=store.root))
    try:
        run_dir = work / "run"
        (run_dir / OBJECTS).mkdir(parents=True)
        names = set(reader.names)
        for required in _REQUIRED:
            if required not in names:
                raise PackageTampered(
                    f"{package} is not a precip-repro package: it has no {required}",
                    path=required,
                )
        hashes: dict[str, str] = {}
        for name in reader.names:
            inside = name.removeprefix(f"{RUN}/") if name.startswith(f"{RUN}/") else None
            if inside is not None and not (
                inside in (EVENTS, CHECKPOINT, SIGNATURE) or inside.startswith(f"{OBJECTS}/")
            ):
                raise PackageTampered(f"{name} is no file of a run", path=name)
            hashes[name] = _copy(reader, name, run_dir / inside if inside else None)
        with reader.open(ATTESTATION) as f:
            raw = f.read(1 << 24)
        try:
            envelope = json.loads(raw)
        except ValueError as exc:
            raise PackageTampered(f"{ATTESTATION} is not JSON ({exc})", path=ATTESTATION) from None
        signature_name = f"{RUN}/{SIGNATURE}"
        key = _claimed_key((run_dir / SIGNATURE).read_bytes(), signature_name)
        try:
            payload = verify_envelope(envelope, key, path=ATTESTATION)
        except PackageTampered:
            claimed = _unverified_subjects(envelope).get(signature_name)
            if claimed is not None and claimed != hashes[signature_name]:
                raise PackageTampered(
                    f"{signature_name} was altered after signing: the attestation's "
                    "signature no longer checks with the key it names",
                    path=signature_name,
                ) from None
            raise
        _check_subjects(hashes, _subjects(payload))
        verdict = verify(run_dir, signers=signers)
        if verdict.state == "untrusted":
            raise PackageUntrusted(f"{package}: {verdict.reason}", run=verdict.run, path=package)
        if not verdict.intact:
            blob = verdict.blob
            named = f"{RUN}/{OBJECTS}/{blob[:2]}/{blob[2:]}" if blob else f"{RUN}/{EVENTS}"
            raise PackageTampered(
                f"{named}: the run is {verdict.state}: {verdict.reason}", path=named
            )
        if "/" in verdict.run or not safe_name(verdict.run) or verdict.run.startswith("."):
            raise PackageTampered(
                f"the run's id {verdict.run!r} is no name for a run directory",
                path=f"{RUN}/{EVENTS}",
            )
        target = store.root / verdict.run
        if target.exists():
            if _same_run(run_dir, target):
                return Imported(path=target, verdict=verdict, already=True)
            raise RunConflict(
                f"the store {store.root} already holds a run {verdict.run} that is not this "
                "one: import it into another store (--records DIR)",
                run=verdict.run,
                path=target,
            )
        run_dir.rename(target)
        return Imported(path=target, verdict=attrs.evolve(verdict, path=target), already=False)
    finally:
        reader.close()
        shutil.rmtree(work, ignore_errors=True)
