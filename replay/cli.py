"""``precip-replay``: re-execute a recorded run on another cloud and check it step by step.

Thin: it resolves and verifies the source run, reads the mapping, builds the plan and hands
it to the engine; exit statuses are in ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from precip_repro import (
    CallView,
    ExperimentException,
    InvalidOption,
    RuleInvalid,
    RunNotFound,
    StepVerdict,
    Store,
    StoreCapability,
    diff_runs,
    load_rules,
    load_run,
    load_verified,
    render_text,
)
from precip_repro.commandline import (
    DOCUMENT_VERSION,
    EXIT_BAD,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    ErrorStatus,
    Parser,
    add_version,
    common_options,
    exit_process,
    line_buffered_stdout,
    parse,
    run_command,
    showing_progress,
    store_of,
    write_document,
)
from replay.engine import Engine
from replay.exceptions import ReplayFailed
from replay.mapping import MappingError, ReplayMapping, load_mapping
from replay.plan import build_plan, describe, images_used, interrupted_call, secrets_needed
from replay.targets import CLOUDS

__all__ = ["main"]

# The statuses of every precip-repro tool, named for what they mean to a replay.
EXIT_REPRODUCED: Final = EXIT_OK
EXIT_DIVERGED: Final = EXIT_BAD
EXIT_FAILED: Final = EXIT_INCOMPLETE

_EPILOG: Final = """\
exit status:
  0  every step reproduced: identical, or equivalent (each difference covered by a rule
     the run declared or --rules gives)
  1  a step diverged (each one is named, with the recorded and the new outcome)
  2  usage or mapping error (nothing was provisioned)
  3  the source run is not intact, the target cloud failed, or the replay stopped
     on an internal error
  130  interrupted (Ctrl-C): instances deprovisioned, the replay run finished interrupted

CLOUD is one of: local, ec2, openstack (its EC2 API), openstack-native, eucalyptus, nimbus.
One --to CLOUD for every experiment, or --to e1=local --to e2=ec2 per experiment. Endpoints,
regions and the names of the environment variables holding credentials come from the
mapping file ([cloud] or [e2.cloud]); credentials never appear on the command line or in
the record.
"""


_RECORDS_HELP: Final = (
    "store where RUN is looked up and the replay is recorded (default: $PRECIP_RECORDS, "
    "else ./records)"
)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="precip-replay",
        description="Re-execute a recorded run on another cloud and check every step.",
        epilog=_EPILOG,
        parents=[common_options(records_help=_RECORDS_HELP)],
    )
    add_version(parser)
    parser.add_argument("run", metavar="RUN", help="a run directory, id, prefix or 'latest'")
    parser.add_argument(
        "--to", action="append", required=True, metavar="[EXP=]CLOUD", help="target cloud"
    )
    parser.add_argument("--map", metavar="MAPPING.toml", help="images, types, users, clouds")
    parser.add_argument(
        "--rules",
        metavar="RULES.toml",
        help="declared expectations (docs/rules.md), added to those the run recorded: a step "
        "whose differences they all cover is equivalent, not diverged",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--strict", action="store_true", help="stop at the first divergence")
    parser.add_argument(
        "--max-gap", type=_max_gap, default=60.0, metavar="SECONDS",
        help="longest recorded pause honoured between calls (default 60)",
    )  # fmt: skip
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON document on stdout (docs/json.md): the replay run, its digest and each "
        "step's verdict and differences; the replay's lines go to stderr",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="where files the replay gets are written (default: temp)"
    )
    return parser


def _targets(specs: list[str], experiments: list[str]) -> dict[str, str]:
    targets: dict[str, str] = {}
    for spec in specs:
        exp, _, cloud = spec.rpartition("=")
        if cloud not in CLOUDS:
            raise ReplayFailed(
                f"--to {spec}: unknown cloud {cloud!r}; valid: {', '.join(CLOUDS)}", usage=True
            )
        if exp and exp not in experiments:
            raise ReplayFailed(
                f"--to {spec}: the run has no experiment {exp!r} (it has "
                f"{', '.join(experiments) or 'none'})",
                usage=True,
            )
        for name in [exp] if exp else experiments:
            targets[name] = cloud
    missing = [exp for exp in experiments if exp not in targets]
    if missing:
        raise ReplayFailed(f"no --to for {', '.join(missing)}", usage=True)
    return targets


def _max_gap(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds ≥ 0, not {text!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    # The steps are progress a user watches: logged at INFO unless -v asks for more.
    args = parse(_parser(), argv, log_level=logging.INFO)
    line_buffered_stdout()  # each step as it is done, through `tee` too
    return run_command(
        "precip-replay",
        (lambda: _documented(args)) if args.json else (lambda: _replay(args)),
        status_of=_status_of,
        # Output piped into `head` and the like: the reader has had enough. A replay under
        # way stopped there (and deprovisioned); a plan printed is complete enough.
        broken_pipe=EXIT_REPRODUCED if args.dry_run else EXIT_FAILED,
        interrupted="interrupted (what it had provisioned was deprovisioned, and a replay "
        "run it had begun finished as interrupted)",
        # A bug of ours must not pass for a divergence (exit 1): the replay did not finish.
        internal_status=EXIT_FAILED,
        after_internal_error="the replay stopped, what it had provisioned was deprovisioned "
        "and its run finished as failed",
    )


def _status_of(exc: Exception) -> ErrorStatus | None:
    if isinstance(exc, MappingError | RuleInvalid | RunNotFound):
        return ErrorStatus(EXIT_USAGE)
    if isinstance(exc, ReplayFailed):
        return ErrorStatus(EXIT_USAGE if exc.usage else EXIT_FAILED)
    if isinstance(exc, InvalidOption):  # a target set up wrongly (mapping, credentials)
        return ErrorStatus(EXIT_USAGE)
    if isinstance(exc, ExperimentException):
        return ErrorStatus(EXIT_FAILED, "the target cloud failed")
    return None


def _on(targets: dict[str, str], mapping: ReplayMapping) -> str:
    """Each experiment's target cloud, and the account ssh logs in as where not root."""
    shown = []
    for exp, cloud in sorted(targets.items()):
        login = mapping.cloud(exp).get("login_user") if cloud != "local" else None
        shown.append(f"{exp}={cloud}" + (f" (logging in as {login})" if login else ""))
    return ", ".join(shown)


def _writable(directory: Path) -> str | None:
    """Why nothing can be written in ``directory`` (made if missing); None when it can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _workdir(out: str | None) -> Path:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="precip-replay-"))
    # Checked before anything is provisioned: a `get` late in the replay must not be the
    # first to find that its files have nowhere to go.
    workdir = Path(out)
    if (why := _writable(workdir)) is not None:
        raise ReplayFailed(f"--out {out}: cannot write files there ({why})", usage=True)
    return workdir


def _check_records(store: Store, source_dir: Path) -> None:
    """The replay records into the store its source was found in: a reviewer's read-only
    archive must be named as a directory, with a store of the replay's own."""
    if (why := _writable(store.root)) is not None:
        raise ReplayFailed(
            f"--records {store.root}: cannot record the replay there ({why}); name the "
            f"source run by its directory and give the replay a store of its own: "
            f"precip-replay {source_dir} --records DIR …",
            usage=True,
        )


def _replay(args: argparse.Namespace, report: dict[str, Any] | None = None) -> int:
    """The replay; with ``report``, its ``--json`` document is put there."""
    rules = load_rules(Path(args.rules)) if args.rules else ()  # before anything is read
    store = store_of(args)
    source_dir = store.resolve(args.run)
    ((source, verdict),) = load_verified([source_dir])  # checked and read in one pass
    if source is None:
        named = f"run {args.run}" if args.run == verdict.run else f"{args.run} (run {verdict.run})"
        print(
            f"precip-replay: error: {named} is {verdict.state}, not intact: {verdict.reason}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    mapping = load_mapping(Path(args.map) if args.map else None)
    mapping.check_images(images_used(source), source.experiments)
    targets = _targets(args.to, sorted(source.experiments, key=lambda e: int(e[1:])))
    steps = build_plan(source)
    stopped = interrupted_call(source)
    cut = (
        f"the recording was stopped during call #{stopped.number} {stopped.exp}."
        f"{stopped.method} ({stopped.how_stopped()}): it has no outcome to reproduce, and "
        "the replay ends before it"
        if stopped is not None
        else None
    )
    if args.dry_run:
        if report is not None:
            raise ReplayFailed("--json reports a replay; --dry-run prints its plan", usage=True)
        print(f"plan to replay {source.run} ({len(steps)} steps) on {_on(targets, mapping)}")
        for line in describe(source, steps, mapping, args.max_gap):
            print(line)
        if cut:
            print(cut)
        return EXIT_REPRODUCED
    _check_records(store, source_dir)
    workdir = _workdir(args.out)
    engine = Engine(
        source,
        verdict.digest,
        targets=targets,
        mapping=mapping,
        # A shared store's replay is recorded in its cache and pushed as it finishes.
        records=store.location if StoreCapability.SHARED in store.capabilities else store.root,
        workdir=workdir,
        max_gap=args.max_gap,
        strict=args.strict,
        signer=verdict.signer,
        rules=rules,
    )
    engine.check(secrets_needed(source), steps)
    signed = f"signed by {verdict.signer}" if verdict.signer else "unsigned"
    print(f"replaying {source.run} ({signed}) on {_on(targets, mapping)}")
    if cut:
        print(cut)
    if source.ending:
        print(
            f"the recording ended {source.ended}; the replay re-executes its calls, not the "
            "script, so that ending is not replayed"
        )
    with showing_progress(quiet=args.quiet):
        engine.run(steps)
    diverged = [v for v in engine.verdicts if v.verdict == StepVerdict.DIVERGED]
    equivalent = [v for v in engine.verdicts if v.verdict == StepVerdict.EQUIVALENT]
    if args.out is None:
        with contextlib.suppress(OSError):  # a temporary directory nothing was written to
            workdir.rmdir()
    kept = [
        f"{what} {place}"
        for what, place in (
            ("files it sent (from the record) are in", engine.sent_dir),
            ("files it got in", engine.got_dir),
        )
        if place.is_dir()
    ]
    print(f"replay run {engine.run_id}" + (f" — {', '.join(kept)}" if kept else ""))
    if engine.run_path is not None:
        print("diff of the recorded run and the replay:")
        compared = diff_runs(source, load_run(engine.run_path), whole_run=False, rules=rules)
        for line in render_text(compared):
            print(f"  {line}")
    if engine.cloud_failed:
        print(f"the target cloud failed at {engine.cloud_failed}")
        code = EXIT_FAILED
    elif diverged:
        names = "; ".join(f"#{v.step} {v.label}" for v in diverged)
        print(f"DIVERGED at {len(diverged)} step(s): {names}")
        numbers_only = [v for v in diverged if all(d.covered_by or d.hint for d in v.differences)]
        if numbers_only and len(numbers_only) == len(diverged):
            print(
                "only numbers differ where it diverged: a rule declaring them (each step above "
                "says which) would make the replay equivalent; --rules FILE or exp.expect(...)"
            )
        code = EXIT_DIVERGED
    else:
        # The engine stops early only on a cloud failure or a --strict divergence, both above.
        up_to = f" up to call #{stopped.number}, where the recording was stopped" if stopped else ""
        if equivalent:
            used = sorted({r for v in equivalent for d in v.differences for r in d.covered_by})
            print(
                f"EQUIVALENT: all {len(engine.verdicts)} steps reproduced{up_to}; "
                f"{len(equivalent)} within declared rules ({'; '.join(used)})"
            )
        else:
            print(f"REPRODUCED: all {len(engine.verdicts)} steps{up_to}")
        code = EXIT_REPRODUCED
    if report is not None:
        report.update(_document(engine, targets, len(steps), stopped, code))
    return code


def _document(
    engine: Engine, targets: dict[str, str], planned: int, stopped: CallView | None, code: int
) -> dict[str, Any]:
    """``--json``: the replay's run, its verdict and each step's (docs/json.md)."""
    verdict = "failed" if engine.cloud_failed else ("diverged" if code else "reproduced")
    equivalence = None
    if not engine.cloud_failed:
        found = {step.verdict for step in engine.verdicts}
        equivalence = next(
            (v.value for v in (StepVerdict.DIVERGED, StepVerdict.EQUIVALENT) if v in found),
            StepVerdict.IDENTICAL.value,
        )
    return {
        "version": DOCUMENT_VERSION,
        "source": {"run": engine.source.run, "digest": engine.digest, "signer": engine.signer},
        "targets": dict(sorted(targets.items())),
        "run": engine.run_id,
        "digest": engine.run_digest,
        "verdict": verdict,
        "equivalence": equivalence,
        "exit_status": code,
        "cloud_failed": engine.cloud_failed,
        "planned": planned,
        "stopped_at_call": None if stopped is None else stopped.number,
        "steps": [
            {
                "call": step.step,
                "exp": step.exp,
                "method": step.method,
                "label": step.label,
                "verdict": "diverged" if step.verdict == StepVerdict.DIVERGED else "reproduced",
                "equivalence": step.verdict,
                "new_call": step.new_call,
                "differences": [found.to_json() for found in step.differences],
            }
            for step in engine.verdicts
        ],
    }


def _documented(args: argparse.Namespace) -> int:
    """``--json``: the replay's lines go to stderr, its document alone to stdout."""
    out = sys.stdout
    report: dict[str, Any] = {}
    with contextlib.redirect_stdout(sys.stderr):
        code = _replay(args, report)
    if report:
        write_document(report, out)
    return code


def console() -> NoReturn:
    """The ``precip-replay`` console script."""
    exit_process(main())


if __name__ == "__main__":
    console()
