"""``precip-repro``: list, show, verify, recover and read recorded runs; run scripts and the
demo; diff, report, gc; export, attest and import reviewers' packages.

The CLI is thin: each command calls the library and turns its answer into lines and an exit
status. Errors are one line on stderr, never a traceback. Each command lives in the module
named for what it does; the parser and ``main`` are here."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

from precip_repro.cli.compare import cmd_diff, cmd_report
from precip_repro.cli.core import status_of
from precip_repro.cli.leaks import cmd_gc
from precip_repro.cli.listing import LS_HELP, cmd_ls, ls_options
from precip_repro.cli.packaging import (
    cmd_attest,
    cmd_export,
    cmd_import,
    export_options,
    import_options,
)
from precip_repro.cli.records import cmd_cat, cmd_recover, cmd_verify
from precip_repro.cli.results import RESULTS_HELP, cmd_results, results_options
from precip_repro.cli.scripts import cmd_demo, cmd_run
from precip_repro.cli.sharing import (
    cmd_prune,
    cmd_pull,
    cmd_push,
    cmd_rm,
    options_prune,
    options_pull,
    options_push,
    options_rm,
)
from precip_repro.cli.showing import cmd_show, show_options
from precip_repro.commandline import (
    Parser,
    add_version,
    common_options,
    exit_process,
    parse,
    run_command,
)

__all__ = ["main"]


_EPILOG: Final = """\
exit status:
  0  success; for verify: the run is intact
  1  corrupt: an event, the checkpoint, a blob or the signature does not check (named in
     the message); untrusted: verify --signer found the run unsigned or signed by another
     key; for diff: the runs differ; for gc: instances still leak; for import: a file of
     the package was altered (named), the run is not signed by --signer's key, or the
     store holds another run by that id
  2  usage error: bad arguments, no such run, an ambiguous prefix, an unreadable format;
     for export and attest: the run cannot be packaged (not intact, unsigned, another key
     at hand, no license)
  3  incomplete: the run is open (being written), abandoned or unsealed (run `recover`);
     for diff, results and report (--vs, or more runs): an input run is not intact;
     for recover: the run could not be written (read-only?) and stays as it was;
     for gc: nothing found to leak, but a --cloud could not be checked

RUN is a run directory, a run id, `latest`, or a unique prefix of an id, looked up in
--records STORE: a directory or s3://BUCKET/PREFIX (default: $PRECIP_RECORDS, else
./records). An S3 store is read through a local cache ($PRECIP_CACHE, else
~/.precip/cache); unreachable: 3.
"""


_JSON_HELP: Final = "one JSON document on stdout (docs/json.md); the exit status is unchanged"


def _parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(
        prog="precip-repro",
        description="Record, audit and inspect precip experiment runs.",
        epilog=_EPILOG,
        parents=[common],
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help, parents=[common], epilog=_EPILOG)
        cmd.set_defaults(func=func)
        return cmd

    ls_options(add("ls", cmd_ls, LS_HELP))
    show_options(add("show", cmd_show, "print a run's timeline, one line per event"))
    check = add("verify", cmd_verify, "check a run's hash chain, checkpoint and blobs")
    check.add_argument("run", metavar="RUN")
    check.add_argument(
        "--digest",
        metavar="HEX",
        help="also require this digest (64 hex): the run's, or an earlier event's (a prefix "
        "the run continues past, as exp.digest names mid-run)",
    )
    check.add_argument(
        "--signer",
        metavar="KEYFILE|ALLOWED_SIGNERS",
        help="also require a signature by this key (a .pub file) or by a key of this OpenSSH "
        "allowed_signers file; a run unsigned or signed by another key is refused (exit 1)",
    )
    check.add_argument("--json", action="store_true", help=_JSON_HELP)
    cat = add("cat", cmd_cat, "write a blob's bytes (checked) to stdout")
    cat.add_argument("run", metavar="RUN")
    cat.add_argument("sha256", metavar="SHA256", help="the blob's sha256, or a unique prefix")
    rec = add("recover", cmd_recover, "finish an abandoned run as interrupted")
    rec.add_argument("run", metavar="RUN")
    rec.add_argument("--json", action="store_true", help=_JSON_HELP)
    add("demo", cmd_demo, "record the hello-world run on the local cloud, verify it, print it")
    diff = add(
        "diff",
        cmd_diff,
        "what changed between two runs (exit 0 identical or equivalent, 1 diverged, "
        "2 usage, 3 not intact)",
    )
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.add_argument("--json", action="store_true", help="the documented JSON form")
    diff.add_argument(
        "--tolerance",
        type=float,
        default=50.0,
        metavar="PCT",
        help="report durations that change by more than PCT %% (and at least 1 s); default 50",
    )
    diff.add_argument(
        "--rules",
        metavar="FILE",
        type=Path,
        help="declared expectations (TOML: docs/rules.md), added to those the runs recorded: "
        "differences they cover make the runs equivalent (exit 0), not different",
    )
    report = add("report", cmd_report, "write a self-contained HTML (or Markdown) report")
    report.add_argument(
        "runs",
        metavar="RUN",
        nargs="+",
        help="the run reported; more runs: their results beside its own, plotted across them",
    )
    report.add_argument(
        "--vs", metavar="B", help="also show the diff against run B (and its results beside)"
    )
    report.add_argument(
        "--plot",
        action="append",
        metavar="FIELD",
        help="plot this numeric note field across the runs (repeatable; default: every one)",
    )
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="default: STORE/reports/RUN.html (or .md); ./reports/… for an S3 store",
    )
    report.add_argument("--format", choices=("html", "md"), default="html")
    results_options(add("results", cmd_results, RESULTS_HELP))
    gc = add(
        "gc",
        cmd_gc,
        "list instances left running (the leak ledger); --terminate ends them. "
        "Exit 0 when nothing is left, 1 when something still leaks",
    )
    gc.add_argument("--terminate", action="store_true", help="end them, recorded in a run")
    gc.add_argument(
        "--cloud",
        action="append",
        metavar="[KIND=]URL",
        help="also check this EC2-compatible endpoint (credentials the AWS way: --profile, "
        "AWS_PROFILE, the AWS_* environment, SSO, an instance role), or "
        "openstack-native[=ENTRY]: native OpenStack, a clouds.yaml entry (else OS_*)",
    )
    gc.add_argument(
        "--profile",
        metavar="NAME",
        help="the AWS profile whose credentials check --cloud endpoints (default: AWS_PROFILE)",
    )
    gc.add_argument("--region", default="us-east-1", help="region of --cloud endpoints")
    gc.add_argument("--json", action="store_true", help=_JSON_HELP)
    export_options(
        add(
            "export",
            cmd_export,
            "write a reviewer's package: an RO-Crate (Process Run Crate) with the run, its "
            "report and a signed in-toto attestation",
        )
    )
    attest = add(
        "attest",
        cmd_attest,
        "write the run's in-toto attestation (SLSA Provenance v1, DSSE, signed with the run's "
        "key) over its own files",
    )
    attest.add_argument("run", metavar="RUN")
    attest.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    import_options(
        add(
            "import",
            cmd_import,
            "put a package into the store, verified: signature, attestation, chain",
        )
    )
    options_push(add("push", cmd_push, "send a finished run to a shared store (s3://…)"))
    options_pull(add("pull", cmd_pull, "fetch a run of a shared store, blobs included"))
    options_rm(add("rm", cmd_rm, "remove a run, and the blobs no remaining run references"))
    options_prune(
        add("prune", cmd_prune, "remove blobs no run references and pushes never completed")
    )
    run = add("run", cmd_run, "run an experiment script and record it (the script too)")
    run.add_argument(
        "--playback",
        metavar="RUN",
        help="answer every call from RUN's recording instead: no cloud, nothing recorded",
    )
    run.add_argument(
        "--json",
        metavar="FILE",
        help="write the run's id, digest, status and signer as one JSON document "
        "(docs/json.md) to FILE; `-`: to stdout, with the script's own output on stderr",
    )
    run.add_argument("script", metavar="SCRIPT")
    run.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(_parser(), argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return run_command(f"precip-repro {args.command}", lambda: func(args), status_of=status_of)


def console() -> NoReturn:
    """The ``precip-repro`` console script."""
    exit_process(main())


if __name__ == "__main__":
    console()
