"""The process's recording session: one run shared by every recorded experiment.

A run opens with the first recorded experiment and finishes at interpreter exit (or at
:func:`finish_run`). At exit — normal, an uncaught exception, SIGINT, SIGTERM or SIGHUP — every
experiment of the process deprovisions what it started, then the run finishes with status
``ok``, ``failed`` or ``interrupted``.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import os
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

from precip_repro import progress
from precip_repro.exceptions import CheckpointNotWritten, RecordError
from precip_repro.logs import get_logger, prepare_signal_logging, redact_with
from precip_repro.playback import Closable, Playback
from precip_repro.record.canonical import jsonable
from precip_repro.record.events import Note, Parameter, ReplayOf
from precip_repro.record.journal import WRITING
from precip_repro.record.numbers import decode
from precip_repro.record.recorder import Run
from precip_repro.record.redact import Redactor, credential_variables
from precip_repro.record.store import RunStore
from precip_repro.runview import RunView
from precip_repro.sources import is_users_script, local_modules
from precip_repro.stores import LocalStore, Store, StoreCapability

__all__ = ["Session", "current_run", "finish_run", "session"]

log = get_logger(__name__)


class Session:
    """Process-wide state of recording. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.run: Run | None = None
        self._store: Store | None = None
        """The store the run is recorded for: a shared one gets it pushed at the end."""
        self.redactor = Redactor()
        redact_with(self.redactor.text)
        progress.redact_with(self.redactor.text)
        # Held strongly until closed: an experiment the script dropped still has instances
        # running, and only this list can deprovision them at exit.
        self._experiments: list[Closable] = []
        self._exp_count = 0
        self._call_count = 0
        self.status: str | None = None
        self._ending: tuple[str, dict[str, Any]] | None = None
        """Why the process is ending other than ``ok``: a note's text and fields, written
        into the run when it finishes (a signal handler must not write the log itself: it
        may have interrupted a write holding the log's lock)."""
        self._hooks_installed = False
        self._signals_replaced: dict[int, Any] = {}
        """The handlers ours replaced, by signal: a forked child gets them back."""
        self._shield: list[str] = []  # what each shielded block is doing, innermost last
        self._held: list[int] = []
        self._exiting = False
        self.script: Path | None = None
        self.argv: list[str] | None = None
        self.detect_script = True
        """Take ``sys.argv[0]`` as the experiment script when it is the user's file."""
        # Where the script is, taken before it can change directory.
        self._argv0 = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
        self.run_name: str | None = None
        """Overrides the run's name (a replay is named after what it replays)."""
        self.replay_of: ReplayOf | None = None
        self.playback: Playback | None = None
        """Set by :meth:`playing_back`: calls are answered from a recording."""
        self.mapping: bytes | None = None
        """A replay's mapping file, stored with its run."""
        self.recorded_parameters: dict[str, Any] | None = None
        """The parameters of the run a replay re-executes, by name: its calls carry the
        values they were recorded with, and its run records them so (source
        ``recording``)."""
        self._script_of_run: Path | None = None
        self._modules_recorded: set[str] = set()
        """The script's own modules recorded in the open run, by path."""

    def add_secret(self, name: str, value: str) -> None:
        """Register a secret: from now on it is redacted, and what the open run stored
        before (the script, files, large outputs) is withheld if it holds the value."""
        if not self.redactor.add(name, value):
            return
        with self._lock:
            run = self.run
        if run is not None and not run.finished:
            run.withhold_secret(name, value)

    def add_environment_credentials(self) -> None:
        """Register the credentials in this process's environment as secrets (the
        recognisable cloud keys: see :func:`credential_variables`)."""
        found = credential_variables(os.environ)
        for variable, value in found.items():
            self.redactor.add(variable, value)
        if found:
            log.debug("credentials of the environment are secrets", names=sorted(found))

    def register(self, experiment: Closable) -> None:
        with self._lock:
            self._experiments.append(experiment)
            self._install_hooks()
            self._install_signal_handlers()

    def unregister(self, experiment: Closable) -> None:
        """Forget a closed experiment (it has nothing left to deprovision)."""
        with self._lock:
            if experiment in self._experiments:
                self._experiments.remove(experiment)

    @contextlib.contextmanager
    def playing_back(self, view: RunView) -> Iterator[Playback]:
        """Within the block, every experiment made is answered from ``view``'s recording
        (``precip-repro run --playback``, :func:`precip_repro.testing.playback`): numbered
        from ``e1`` as when recorded, with the environment's credentials known as then, so
        that outputs get their values back. One playback at a time in a process."""
        with self._lock:
            if self.playback is not None:
                raise RuntimeError(
                    f"a playback of {self.playback.view.run} is under way in this process; "
                    f"one at a time (end it before playing back {view.run})"
                )
            self.add_environment_credentials()
            playback = Playback(view, secrets=self.redactor)
            self.playback = playback
            self.restart_numbering()
        try:
            yield playback
        finally:
            with self._lock:
                self.playback = None

    def restart_numbering(self) -> None:
        """Number experiments and calls from 1 again (a new run, or a playback)."""
        with self._lock:
            self._exp_count = 0
            self._call_count = 0

    def next_exp(self) -> str:
        with self._lock:
            self._exp_count += 1
            return f"e{self._exp_count}"

    def next_call(self) -> int:
        with self._lock:
            self._call_count += 1
            return self._call_count

    def open_run(self, store: Store | RunStore, name: str | None) -> Run:
        """The run of this process, opened in ``store`` at the first call (a shared
        store's: in its local cache, pushed when the run finishes)."""
        if isinstance(store, RunStore):
            store = LocalStore(store)
        with self._lock:
            if self.run is not None and not self.run.finished:
                if self.run.path.parent.resolve() != store.root.resolve():
                    log.warning(
                        "experiment asked for another store; it records in this process's run",
                        run=self.run.id,
                        asked=str(store.root),
                    )
                return self.run
            script = self.script
            if script is None and self.detect_script and self._argv0 is not None:
                script = self._argv0 if is_users_script(self._argv0) else None
            run_name = self.run_name or (script.stem if script is not None else name)
            self.add_environment_credentials()
            self.run = Run.open(
                store.local,
                name=run_name,
                script=script,
                argv=self.argv,
                replay_of=self.replay_of,
                mapping=self.mapping,
                secrets=self.redactor,
            )
            self._script_of_run = script
            self._store = store
            self._modules_recorded = set()
            self._record_modules(self.run)
            for name, value in (self.recorded_parameters or {}).items():
                self.run.append(Parameter(name=name, value=value, source="recording"))
            self._exp_count = 0
            self._call_count = 0
            self.status = None
            return self.run

    def _record_modules(self, run: Run) -> None:
        """Record the script's own modules imported so far and not recorded yet."""
        if self._script_of_run is None or self.playback is not None:
            return
        for name, path in local_modules(self._script_of_run):
            if str(path) in self._modules_recorded:
                continue
            self._modules_recorded.add(str(path))
            try:
                run.add_module(name, path, self.redactor)
            except RecordError as exc:
                log.error("a module of the script could not be recorded", module=name,
                          error=str(exc))  # fmt: skip
                return

    def mark_ending(self, exc: BaseException) -> None:
        """Remember how an exception ends the process: ``sys.exit(0)`` is no failure, an
        exit status past 128 (a signal's, by the shells' convention) an interruption."""
        status = ending_status(exc)
        if status is not None:
            self.mark(status, exc)

    def mark(self, status: str, why: BaseException | int | None = None) -> None:
        """Remember how the process is ending (``failed`` or ``interrupted``), and why: the
        exception or the signal number, the first of which the run's record will say."""
        with self._lock:
            if self.status != "interrupted":
                self.status = status
            if why is not None and self._ending is None:
                subject = "the replay" if self.replay_of is not None else "the script"
                self._ending = ending_note(why, self.script or self._argv0, subject=subject)

    def _note_ending(self) -> None:
        with self._lock:
            ending, run, status = self._ending, self.run, self.status
        if ending is None or run is None or run.finished:
            return
        text, fields = ending
        # "ended" tells this note from the script's own: the report's header shows it.
        fields = {"ended": status, **fields}
        try:
            run.append(
                Note(
                    text=self.redactor.text(text),
                    # plain lists and dicts to redact, numbers left to the Note to encode once
                    fields=self.redactor.json(decode(jsonable(fields))),
                )
            )
        except RecordError as exc:
            log.error("why the run ended could not be recorded", error=str(exc))

    def shutdown(self) -> str | None:
        """Deprovision every experiment's instances, then finish the run; its digest."""
        with self.shielded():
            self._note_ending()
            with self._lock:
                experiments = list(self._experiments)
            for experiment in experiments:
                try:
                    experiment.close()
                except Exception as exc:
                    log.error("deprovision at exit failed", error=str(exc))
            return self.finish()

    def _shutdown_at_exit(self) -> None:
        self._exiting = True  # nothing is left to interrupt: a held signal is not raised
        self.shutdown()

    @contextlib.contextmanager
    def shielded(self, doing: str = "deprovisioning") -> Iterator[None]:
        """Hold SIGINT, SIGTERM and SIGHUP back while instances are launched or terminated
        and the run finished: a Ctrl-C must not leave an instance running on the user's bill
        unknown (its launch cut off before the cloud said which) or unterminated, nor the
        run unfinished. The signal takes effect once the block is done; the third one held
        gives up waiting. ``doing`` is what the warning says is going on."""
        with self._lock:
            self._shield.append(doing)
        try:
            yield
        finally:
            with self._lock:
                self._shield.pop()
                held = self._held[0] if not self._shield and self._held else None
                if not self._shield:
                    self._held = []
            if held is not None and not self._exiting:
                if threading.current_thread() is threading.main_thread():
                    _raise_for(held)
                # A worker thread's clean-up held it (a replaced boot in wait()): the signal
                # is for the main thread, which its handler interrupts now.
                os.kill(os.getpid(), held)

    @property
    def signal_held(self) -> bool:
        """Whether a signal waits for a shielded block to end (the work under way
        finishes; nothing new should start)."""
        return bool(self._held)

    def finish(self, status: str | None = None) -> str | None:
        with self._lock:
            run = self.run
            if run is None:
                return None
            if run.finished:
                return run.digest
            self._record_modules(run)  # those imported since the run began
            try:
                digest = run.finish(status or self.status or "ok")
            except CheckpointNotWritten as exc:
                log.error(str(exc), run=run.id)  # said once: the run did finish
                return run.digest
            except (RecordError, OSError) as exc:
                # The log keeps every event written so far; its end can be added later.
                run.close()
                log.error(
                    "the run's end could not be written; its events so far are intact",
                    run=run.id,
                    error=str(exc),
                    next=f"precip-repro recover {run.id}",
                )
                return None
            log.info("run recorded", run=run.id, status=run.status, digest=digest)
            self._push(run)
            return digest

    def _push(self, run: Run) -> None:
        """Send a finished run to the shared store it was recorded for. Never fails the
        run: unreachable, it stays in the local cache, listed as unpushed, and says so."""
        store = self._store
        if store is None or StoreCapability.SHARED not in store.capabilities:
            return
        error: str | None = None
        if self._exiting:
            # At exit the interpreter starts no more threads (verify's, the transfers'):
            # a process of its own pushes, as `precip-repro push` would.
            command = [sys.executable, "-m", "precip_repro.cli", "-q"]
            command += ["--records", store.location, "push", run.id]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                error = done.stderr.strip().rpartition("error: ")[2] or f"exit {done.returncode}"
        else:
            try:
                store.push(run.path)
            except (RecordError, OSError) as exc:
                error = str(exc)
        if error is not None:
            log.warning(
                "the run is recorded in the local cache but not pushed",
                run=run.id,
                store=store.location,
                error=error,
                next=f"precip-repro push {run.id} --records {store.location}",
            )

    def _install_hooks(self) -> None:
        if self._hooks_installed:
            return
        self._hooks_installed = True
        atexit.register(self._shutdown_at_exit)
        previous_hook = sys.excepthook

        def excepthook(
            kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
        ) -> None:
            self.mark_ending(value)
            previous_hook(kind, value, tb)

        sys.excepthook = excepthook
        # A SystemExit never reaches the excepthook, and atexit cannot see the exit status:
        # without this, a script's sys.exit(3) — or exit(3), the site builtin — would leave
        # its run recorded as ok. (A bare `raise SystemExit(3)` outside an experiment's
        # with block still goes unseen.)
        sys.exit = _WatchedExit(sys.exit, self.mark_ending)
        for name in ("exit", "quit"):
            builtin = getattr(builtins, name, None)
            if builtin is not None:
                setattr(builtins, name, _WatchedExit(builtin, self.mark_ending))
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        self._install_signal_handlers()

    def _install_signal_handlers(self) -> None:
        if self._signals_replaced or threading.current_thread() is not threading.main_thread():
            return
        prepare_signal_logging()
        # SIGHUP too: a closed terminal or a dropped ssh session must not leave instances.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            current = signal.getsignal(signum)
            if current in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(signum, self._on_signal(signum, current))
                self._signals_replaced[signum] = current

    def _after_fork_in_child(self) -> None:
        """A forked child (os.fork, a multiprocessing worker) owns none of the parent's
        instances and must not write into its run: were it to deprovision at its exit, or
        on the SIGTERM that ends a Pool's workers, the parent's instances would be
        terminated under it and the parent's log would get a second writer. The child
        starts with no run and no experiments (it may record a run of its own)."""
        self._lock = threading.RLock()  # a parent's thread may have held it at the fork
        self.run = None
        self._experiments = []
        self.status = None
        self._ending = None
        self._shield = []
        self._held = []
        for signum, previous in self._signals_replaced.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, previous)
        self._signals_replaced = {}

    def _on_signal(self, signum: int, previous: Any) -> Callable[[int, Any], None]:
        def handler(received: int, frame: Any) -> None:
            # At a prompt or in a notebook, Ctrl-C stops a line or a cell and the session
            # goes on: the run is not over, and not interrupted (the shield still holds).
            if not (received == signal.SIGINT and _interactive()):
                self.mark("interrupted", received)
            with self._lock:
                doing = self._shield[-1] if self._shield else None
                if doing is not None:
                    self._held.append(signum)
                    held = len(self._held)
                else:
                    held = 0
            if held == 1:
                log.from_signal_handler(
                    "warning",
                    f"still {doing}: instances cost money until they are terminated, so the "
                    "interruption waits until that is done (interrupt twice more to give up "
                    "waiting, then run `precip-repro gc --terminate`)",
                )
            if 0 < held < _GIVE_UP:
                return
            if held:
                log.from_signal_handler(
                    "error",
                    "gave up waiting for deprovisioning: instances may still run; run "
                    "`precip-repro gc --terminate`, then `precip-repro recover` on the run",
                )
            if WRITING.active:  # not in the middle of an event's line: once it is whole
                WRITING.defer(lambda: _raise_for(signum))
                return
            # Unwind the main thread (context managers deprovision), then atexit finishes.
            _raise_for(signum)

        return handler


def _interactive() -> bool:
    """An interactive prompt (``python -i``, the REPL) or a notebook's kernel."""
    return bool(sys.flags.interactive) or hasattr(sys, "ps1") or "ipykernel" in sys.modules


_GIVE_UP: Final = 3
"""Signals held back during clean-up before it is abandoned."""


def _raise_for(signum: int) -> NoReturn:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


session = Session()


class _WatchedExit:
    """``sys.exit`` (or the ``exit`` builtin) noting the status for the run first; its repr
    is the original's, which the interactive prompt shows for a bare ``exit``."""

    def __init__(self, exit: Callable[..., Any], note: Callable[[BaseException], None]) -> None:
        self._exit = exit
        self._note = note

    def __call__(self, status: str | int | None = None) -> NoReturn:
        if threading.current_thread() is threading.main_thread():  # elsewhere it ends a thread
            self._note(SystemExit(status))
        self._exit(status)
        raise SystemExit(status)  # pragma: no cover - the original raised already

    def __repr__(self) -> str:
        return repr(self._exit)


def ending_status(exc: BaseException) -> str | None:
    """The run status an exception ending the process means, or None (a clean exit)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, SystemExit):
        if exc.code is None or exc.code == 0:
            return None
        return "interrupted" if isinstance(exc.code, int) and exc.code > 128 else "failed"
    return "failed"


def ending_note(
    why: BaseException | int, script: Path | None, *, subject: str = "the script"
) -> tuple[str, dict[str, Any]]:
    """A note's text and fields saying why a run did not end ``ok``: the signal, the exit
    status, or the uncaught exception and the line of the script it came through."""
    if isinstance(why, int):
        name = signal.Signals(why).name
        return f"interrupted by {name}", {"signal": name}
    if isinstance(why, SystemExit):
        if isinstance(why.code, int) or why.code is None:
            return f"the script exited with status {why.code or 0}", {"exit_status": why.code}
        return f"the script exited: {why.code}", {"exit_status": 1, "message": str(why.code)}
    if isinstance(why, KeyboardInterrupt):
        return "interrupted by SIGINT (Ctrl-C)", {"signal": "SIGINT"}
    fields: dict[str, Any] = {"error": {"type": type(why).__name__, "message": str(why)}}
    at = _script_line(why, script)
    if at is not None:
        fields["at"] = at
    where = f" (at {at})" if at else ""
    return f"{subject} ended with an uncaught {type(why).__name__}{where}: {why}", fields


def _script_line(exc: BaseException, script: Path | None) -> str | None:
    """``file:line`` where the exception left the user's code: the last frame it passed
    through in the script, or else in any file outside precip-repro and the installed
    Python (a helper module of the script's)."""
    ours = str(Path(__file__).resolve().parent)
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    in_script = in_user_code = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        at = f"{Path(filename).name}:{tb.tb_lineno}"
        if script is not None and filename == str(script):
            in_script = at
        elif not filename.startswith((ours, "<", *installed)):
            in_user_code = at
        tb = tb.tb_next
    return in_script or in_user_code


def current_run() -> Run | None:
    """The run this process records into, if one is open."""
    return session.run


def register_secret(name: str, value: str) -> None:
    """Register a secret for this process: it becomes ``${secret:NAME}`` everywhere in the
    record (a replay binds it again from ``$NAME``). Before the first experiment, it is
    hidden from the very first event too (the command line, say, when it came from there);
    later, :meth:`Experiment.secret` does the same."""
    session.add_secret(name, value)


def finish_run(status: str | None = None) -> str | None:
    """Deprovision everything this process started and finish its run now; the digest."""
    if status is not None:
        session.mark(status)
    return session.shutdown()
