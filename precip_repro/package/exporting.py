"""``export`` and ``attest``: a verified, signed run turned into a reviewer's package, or
into an attestation of its own files.

The run must be intact and signed, and the key at hand (the precip key,
``PRECIP_SIGNING_KEY``, or one ``ssh-agent`` holds) must be the one that signed it: the
attestation's envelope is signed with it, so that one key vouches for both.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import rfc8785

from precip_repro.content import ContentReader
from precip_repro.exceptions import PackageRefused
from precip_repro.loading import load_verified
from precip_repro.package.archive import write_directory, write_zip
from precip_repro.package.attestation import statement
from precip_repro.package.crate import crate_metadata, script_members
from precip_repro.package.dsse import sign_payload
from precip_repro.package.info import PackageInfo
from precip_repro.package.layout import ATTESTATION, METADATA, REPORT, RUN, Member, run_members
from precip_repro.record.signing import Signer, load_signer
from precip_repro.record.verify import Verdict
from precip_repro.report import render_html
from precip_repro.runview import RunView

__all__ = ["Exported", "attest_run", "export_run", "package_members"]


@attrs.frozen(kw_only=True)
class Exported:
    """A package written: where, of which run, how many files, signed by which key."""

    path: Path
    run: str
    digest: str
    files: int
    signer: str
    zipped: bool


def _signed_view(run_dir: Path) -> tuple[RunView, Verdict]:
    ((view, verdict),) = load_verified([run_dir])
    if view is None or not verdict.intact:
        raise PackageRefused(
            f"run {verdict.run} is {verdict.state}, not intact: {verdict.reason}; only an "
            "intact run is packaged (`precip-repro verify` says more)",
            run=verdict.run,
            path=run_dir,
        )
    if verdict.signer is None or verdict.signer_key is None:
        raise PackageRefused(
            f"run {verdict.run} is not signed (no key could sign it when it finished): a "
            "package's attestation is signed with the key that signed the run",
            run=verdict.run,
            path=run_dir,
        )
    return view, verdict


def _matching_signer(verdict: Verdict, signer: Signer | None) -> Signer:
    used = signer if signer is not None else load_signer()
    if used.fingerprint != verdict.signer:
        if signer is None:
            used.close()
        raise PackageRefused(
            f"run {verdict.run} was signed by {verdict.signer}, and the key at hand "
            f"({used.path}) is {used.fingerprint}: the attestation must be signed by the "
            "run's own key (set PRECIP_SIGNING_KEY to it, or ssh-add it)",
            run=verdict.run,
            path=used.path,
        )
    return used


def _envelope_line(payload: bytes, verdict: Verdict, signer: Signer | None) -> bytes:
    used = _matching_signer(verdict, signer)
    try:
        envelope = sign_payload(payload, used)
    finally:
        if signer is None:
            used.close()
    return rfc8785.dumps(envelope) + b"\n"


def package_members(
    run_dir: Path, *, info: PackageInfo, signer: Signer | None = None
) -> tuple[list[Member], RunView, Verdict]:
    """Every file of the package of ``run_dir``, the attestation included."""
    view, verdict = _signed_view(run_dir)
    assert verdict.digest is not None
    members = run_members(run_dir, prefix=f"{RUN}/")
    reader = ContentReader(view)
    scripts = script_members(view, lambda ref: reader.read(ref, what="the script"))
    members.extend(member for member, _ in scripts.values())
    members.append(Member.of_bytes(REPORT, render_html(view, verdict).encode("utf-8")))
    members.append(Member.of_bytes(METADATA, crate_metadata(view, members, info)))
    payload = statement(view, verdict.digest, members, blobs=f"{RUN}/objects/")
    members.append(Member.of_bytes(ATTESTATION, _envelope_line(payload, verdict, signer)))
    return members, view, verdict


def export_run(
    run_dir: Path, out: Path, *, info: PackageInfo, signer: Signer | None = None
) -> Exported:
    """Write the package of ``run_dir`` to ``out``: a zip when it ends in ``.zip``, else a
    new directory. Raises :class:`PackageRefused` when the run cannot be packaged."""
    members, view, verdict = package_members(run_dir, info=info, signer=signer)
    zipped = out.suffix.lower() == ".zip"
    if not zipped and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise PackageRefused(
            f"{out} exists: give a new directory, or a FILE.zip", run=view.run, path=out
        )
    (write_zip if zipped else write_directory)(out, members)
    assert verdict.digest is not None and verdict.signer is not None
    return Exported(
        path=out,
        run=view.run,
        digest=verdict.digest,
        files=len(members),
        signer=verdict.signer,
        zipped=zipped,
    )


def attest_run(run_dir: Path, *, signer: Signer | None = None) -> bytes:
    """The signed attestation of a run's own files (names relative to its directory): one
    DSSE envelope as a line of JSON, the ``.intoto.jsonl`` form."""
    view, verdict = _signed_view(run_dir)
    assert verdict.digest is not None
    members = run_members(run_dir, prefix="")
    payload = statement(view, verdict.digest, members, blobs="objects/")
    return _envelope_line(payload, verdict, signer)
