"""Builders shared by the tests: a recorded run holding every v1 event type; a disk that
refuses writes; ssh keys, and OpenSSH checking a run's signature."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from precip_repro.clouds.base import CloudInfo
from precip_repro.record import LogReader, Run, RunStore
from precip_repro.record.payloads import (
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
    Note,
)
from precip_repro.record.signature import NAMESPACE, SIGNATURE
from precip_repro.record.store import CHECKPOINT, EVENTS


def record_sample_run(store: RunStore | Path, *, name: str = "sample", finish: bool = True) -> Run:
    """A small run with every event type, two object blobs and inline outputs."""
    run = Run.open(store, name=name, argv=["sample.py"])
    run.append(
        ExperimentCreated(exp="e1", name="sample", cloud=CloudInfo(kind="local").as_record())
    )
    run.append(
        CallStarted(
            call=1,
            exp="e1",
            method="provision",
            args={"image_id": "default", "instance_type": "m1.small", "count": 1, "tags": []},
        )
    )
    run.append(
        InstanceLaunched(
            call=1,
            exp="e1",
            slot="e1.p1.0",
            instance_id="i-0001",
            image_id="default",
            instance_type="m1.small",
            tags=["precip", "i-0001", "e1.p1.0"],
        )
    )
    run.append(CallFinished(call=1, result=["i-0001"], duration_ns=1_000))
    run.append(
        InstanceReady(
            slot="e1.p1.0",
            instance_id="i-0001",
            public_address="127.128.0.2",
            private_address="127.128.0.2",
            host_key="SHA256:abc",
            facts={"cpus": 2, "uname": "Linux"},
        )
    )
    script = run.add_blob(b"#!/bin/sh\necho hello\n" * 300)
    run.append(
        FilePut(
            call=2,
            slot="e1.p1.0",
            instance_id="i-0001",
            user="root",
            local_path="hello.sh",
            remote_path="/tmp/hello.sh",
            mode=0o755,
            content=script,
        )
    )
    binary = run.add_blob(bytes(range(256)) * 20, inline=True)
    run.append(
        CommandFinished(
            call=3,
            slot="e1.p1.0",
            instance_id="i-0001",
            user="root",
            cmd="/tmp/hello.sh",
            exit_code=0,
            stdout=run.add_blob(b"hello\n", inline=True),
            stderr=binary,
            duration_ns=2_000_000,
        )
    )
    run.append(
        FileGot(
            call=4,
            slot="e1.p1.0",
            instance_id="i-0001",
            user="root",
            local_path="out.txt",
            remote_path="/tmp/out.txt",
            mode=0o644,
            content=script,
        )
    )
    run.append(
        CallFailed(call=5, error=ErrorInfo(type="CommandFailed", message="exit 1"), duration_ns=5)
    )
    run.append(Note(text="a note", fields={"ratio": 0.25}))
    run.append(InstanceTerminating(slot="e1.p1.0", instance_id="i-0001", call=6))
    run.append(InstanceTerminated(slot="e1.p1.0", instance_id="i-0001", call=6))
    if finish:
        run.finish("ok")
    return run


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """The kernel refuses writes past ``limit`` bytes (EFBIG), as a full disk would refuse
    them: a real failed write, part of a line written first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def record_script(store: RunStore, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``precip-repro --records STORE run SCRIPT ARGS…`` through the installed console
    script."""
    console = Path(sys.executable).parent / "precip-repro"
    return subprocess.run(
        [str(console), "--records", str(store.root), "run", str(script), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_nowhere_in(root: Path, *secrets: str) -> None:
    """No file under ``root`` holds any of ``secrets``."""
    for path in Path(root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path


STOPPED = """
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("stopped")
exp.provision("default")
exp.wait()
exp.run([], "echo before")
print(exp.run_id, flush=True)
exp.run([], "sleep 30")
"""


def record_stopped(store: RunStore, tmp_path: Path, sig: int) -> str:
    """Record :data:`STOPPED` (``stopped.py`` in ``tmp_path``) and stop it with ``sig`` in
    its call #4, ``sleep 30``; after SIGKILL, end its instance with gc and recover the run
    (what a user does after a crash). Returns the run id."""
    from precip_repro.cli import main

    script = tmp_path / "stopped.py"
    script.write_text(STOPPED)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PRECIP_RECORDS=str(store.root)),
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    time.sleep(0.3)  # inside `sleep 30` by now
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGKILL:
        assert main(["--records", str(store.root), "gc", "--terminate"]) == 0
        assert main(["--records", str(store.root), "recover", run_id]) == 0
    return run_id


def in_threads(*work: Callable[[], object], timeout: float = 60) -> list[BaseException]:
    """Run each callable in a thread of its own, all at once; what they raised. Fails the
    test when one is still running after ``timeout`` (a deadlock)."""
    errors: list[BaseException] = []

    def guarded(one: Callable[[], object]) -> None:
        try:
            one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(one,), daemon=True) for one in work]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "threads deadlocked"
    return errors


def original_precip_home(home: Path, *, encrypted: bool = False) -> str:
    """A home as the original precip left it: an account id and an RSA key in PEM form
    (``ssh-keygen -m PEM``), without a ``.pub`` beside it. Its key's PEM."""
    home.mkdir(mode=0o700)
    (home / "account_id").write_text("0123456789abcdef0123456789abcdef\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption(),
    )
    private = home / "precip_0123456789abcdef0123456789abcdef"
    private.write_bytes(pem)
    private.chmod(0o600)
    return pem.decode()


def ready(local_experiment: Callable[..., Any], name: str, count: int = 1) -> Any:
    """A LocalExperiment named ``name`` with ``count`` instances provisioned and ready."""
    exp = local_experiment(name)
    exp.provision("default", count=count)
    exp.wait()
    return exp


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` as a reviewer's read-only copy: a read-only bind mount as root (root
    writes through file modes), the modes alone otherwise."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    subprocess.run(["mount", "--bind", directory, directory], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", directory], check=True)
        yield
    finally:
        subprocess.run(["umount", directory], check=True)


def of_type(run_path: Path, kind: str) -> list[dict[str, Any]]:
    """The data of a run's events of type ``kind``, in order."""
    return [event.data for event in LogReader(run_path / EVENTS) if event.type == kind]


def make_key(path: Path, *, kind: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    bits = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *bits, "-N", passphrase, "-C", comment or path.name,
         "-f", str(path)],
        check=True,
    )  # fmt: skip
    return path


def allowed_signers(path: Path, principal: str, key: Path) -> Path:
    kind, encoded = (key.with_name(key.name + ".pub")).read_text().split()[:2]
    path.write_text(f'{principal} namespaces="{NAMESPACE}" {kind} {encoded}\n')
    return path


def ssh_keygen_verify(
    run_dir: Path, signers: Path, principal: str
) -> subprocess.CompletedProcess[str]:
    with (run_dir / CHECKPOINT).open("rb") as checkpoint:
        return subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE,
             "-s", str(run_dir / SIGNATURE)],
            stdin=checkpoint, capture_output=True, text=True, check=False,
        )  # fmt: skip


def rewrite_notes(run_dir: Path, old: str, new: str) -> None:
    """What an author who wants another result does, by the format's documented rules:
    edit an event, recompute every later hash, the run.finished digest and the checkpoint."""

    import rfc8785

    def dumps(obj: Any) -> bytes:
        return rfc8785.dumps(obj)  # the canonical form, as records/README.md defines it

    events = [json.loads(line) for line in (run_dir / EVENTS).read_bytes().splitlines()]
    prev, lines = "0" * 64, []
    for event in events:
        if event["type"] == "note":
            event["data"]["text"] = event["data"]["text"].replace(old, new)
        if event["type"] == "run.finished":
            event["data"]["digest"] = prev
        event["prev"] = prev
        del event["hash"]
        event["hash"] = prev = hashlib.sha256(dumps(event)).hexdigest()
        lines.append(dumps(event) + b"\n")
    log = run_dir / EVENTS
    log.chmod(0o644)
    log.write_bytes(b"".join(lines))
    checkpoint = run_dir / CHECKPOINT
    checkpoint.chmod(0o644)
    body = {"digest": prev, "events": len(events), "run": run_dir.name, "v": events[0]["v"]}
    checkpoint.write_bytes(dumps(body) + b"\n")


def ssh_add(key: Path, passphrase: str, sock: Path, tmp_path: Path) -> None:
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
           "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}  # fmt: skip
    done = subprocess.run(
        ["ssh-add", str(key)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def sign_through_agent(tmp_path: Path, sock: Path, environ: Any, kind: str) -> Path:
    """A passphrase-protected key of ``kind`` held by the ssh-agent at ``sock`` and named by
    ``PRECIP_SIGNING_KEY`` (set through ``environ``, a pytest MonkeyPatch): runs from here
    on sign through the agent (checked). The key file."""
    from precip_repro.record.signing import load_signer

    key = make_key(tmp_path / "alice", kind=kind, passphrase="correct horse")
    ssh_add(key, "correct horse", sock, tmp_path)
    environ.setenv("PRECIP_SIGNING_KEY", str(key))
    signer = load_signer()
    assert signer.via_agent
    signer.close()
    return key


SWEEP = Path(__file__).parent.parent / "examples" / "sweep.py"


def record_sweep(store: RunStore, *levels: int, sweep_bytes: int | None = None) -> Path:
    """``examples/sweep.py`` recorded on the local cloud into ``store``, as a user runs it:
    its levels as arguments, ``SWEEP_BYTES`` in its environment when given (else unset:
    its default). The run's directory."""
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    env.pop("SWEEP_BYTES", None)
    if sweep_bytes is not None:
        env["SWEEP_BYTES"] = str(sweep_bytes)
    before = set(store.run_dirs()) if store.root.exists() else set()
    done = subprocess.run(
        [sys.executable, str(SWEEP), *map(str, levels)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = set(store.run_dirs()) - before
    return run_dir
