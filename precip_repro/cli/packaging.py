"""The commands that package a run for a reviewer and take one in: export, attest, import."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from precip_repro.cli.core import EXIT_OK, Usage, resolve, signers_of, store_of
from precip_repro.commandline import showing_progress
from precip_repro.stores import StoreCapability

__all__ = ["cmd_attest", "cmd_export", "cmd_import", "export_options", "import_options"]


def export_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("run", metavar="RUN")
    cmd.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR|FILE.zip",
        help="a new directory, or a zip (deterministic: the same run gives the same bytes)",
    )
    cmd.add_argument(
        "--license",
        metavar="SPDX-ID|URL",
        help="the package's license (CC-BY-4.0, MIT, …); required here or in the config",
    )
    cmd.add_argument(
        "--author",
        action="append",
        default=[],
        metavar="'NAME [<ORCID|URL|EMAIL>]'",
        help="an author (repeat for several); default: the config's authors",
    )
    cmd.add_argument("--name", help="the package's title (default: the run's id)")
    cmd.add_argument("--description", help="default: what the run did, in one sentence")
    cmd.add_argument(
        "--date", metavar="YYYY-MM-DD", help="datePublished (default: the day the run ended)"
    )
    cmd.add_argument(
        "--config",
        metavar="FILE",
        help="license and authors in TOML (default: $PRECIP_HOME/package.toml, if any)",
    )


def import_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("package", metavar="PACKAGE", help="a package directory or zip")
    cmd.add_argument(
        "--signer",
        metavar="KEYFILE|ALLOWED_SIGNERS",
        help="also require the run to be signed by this key (as verify --signer does)",
    )


def cmd_export(args: argparse.Namespace) -> int:
    from precip_repro.package.exporting import export_run
    from precip_repro.package.info import load_info

    info = load_info(
        license=args.license,
        name=args.name,
        description=args.description,
        authors=args.author,
        date_published=args.date,
        config=Path(args.config) if args.config else None,
    )
    run_dir = resolve(args)
    with showing_progress(quiet=args.quiet):  # verifying a large run takes a while
        done = export_run(run_dir, Path(args.output), info=info)
    kind = "zip" if done.zipped else "directory"
    print(f"exported {done.run} to {done.path} ({kind}, {done.files} files)")
    print(f"  digest  {done.digest}")
    print(f"  signed  {done.signer} (the run and its attestation)")
    return EXIT_OK


def cmd_attest(args: argparse.Namespace) -> int:
    from precip_repro.destinations import write_bytes
    from precip_repro.package.exporting import attest_run

    run_dir = resolve(args)
    with showing_progress(quiet=True):
        line = attest_run(run_dir)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    else:
        write_bytes(Path(args.output), line)
        print(f"attestation of {run_dir.name}: {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from precip_repro.package.importing import import_package

    signers = signers_of(args)
    package = Path(args.package)
    if not package.exists():
        raise Usage(f"{package} does not exist: give a package directory or zip")
    store = store_of(args)
    with showing_progress(quiet=args.quiet):
        done = import_package(package, store.local, signers=signers)
        if StoreCapability.SHARED in store.capabilities and not done.already:
            store.push(done.path)  # imported into the shared store's cache: now the team's
    verdict = done.verdict
    how = "already in" if done.already else "imported into"
    print(f"{verdict.run}: {how} {store.root}, {verdict.state}")
    print(f"  {verdict.reason}")
    print(f"  signer  {verdict.signer_key} ({verdict.signer})")
    print(f"  digest  {verdict.digest}")
    print(f"  show    precip-repro --records {store.root} show {verdict.run}")
    return EXIT_OK
