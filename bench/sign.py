"""What signing costs a run's finish. Not a test: it prints figures and ratios.

``Run.finish`` as shipped (signs the checkpoint with the precip key, found afresh at each
finish), against the same finish unsigned (``sign=False``) — the floor — in interleaved
rounds on runs of the same size; and, when ``ssh-agent`` is installed, finishing signed by a
passphrase-protected key the agent holds (the agent is started here, and ended). Also what
checking the signature adds to ``verify``. Goal: signing adds at most a few milliseconds.

Usage: python bench/sign.py [--rounds R] [--events N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import scratch
from precip_repro.record import Run, RunStore, verify
from precip_repro.record.payloads import Note


def finishing(store: RunStore, events: int, **options: object) -> Callable[[], float]:
    """A contender: record ``events`` notes, then time only ``finish``."""

    def once() -> float:
        run = Run.open(store, name="bench", argv=["bench"], **options)  # type: ignore[arg-type]
        for i in range(events):
            run.append(Note(text=f"step {i}", fields={"i": i}))
        start = time.perf_counter()
        run.finish()
        took = time.perf_counter() - start
        if options.get("sign", True) and run.signature is None:
            raise SystemExit(f"the run was not signed: {run.signing_problem}")
        return took

    return once


def agent_key(root: Path) -> tuple[subprocess.Popen[bytes], Path] | None:
    """A passphrase-protected key added to an ssh-agent of our own; None without OpenSSH."""
    if not (shutil.which("ssh-agent") and shutil.which("ssh-add") and shutil.which("ssh-keygen")):
        return None
    key, sock, askpass = root / "agent_key", root / "agent.sock", root / "askpass"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "bench pass", "-f", str(key)], check=True
    )
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    while not sock.exists():
        time.sleep(0.01)
    askpass.write_text("#!/bin/sh\necho 'bench pass'\n")
    askpass.chmod(0o700)
    env = {**os.environ, "SSH_AUTH_SOCK": str(sock), "SSH_ASKPASS": str(askpass),
           "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}  # fmt: skip
    subprocess.run(["ssh-add", "-q", str(key)], env=env, stdin=subprocess.DEVNULL, check=True)
    os.environ["SSH_AUTH_SOCK"] = str(sock)
    return agent, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    root = scratch()
    agent = None
    try:
        store = RunStore(root / "records")
        contenders: dict[str, Callable[[], float]] = {
            "unsigned (floor)": finishing(store, args.events, sign=False),
            "signed, precip key": finishing(store, args.events),
        }
        started = agent_key(root)
        if started is not None:
            agent, key = started

            def via_agent() -> float:
                os.environ["PRECIP_SIGNING_KEY"] = str(key)
                try:
                    return finishing(store, args.events)()
                finally:
                    del os.environ["PRECIP_SIGNING_KEY"]

            contenders["signed, key in ssh-agent"] = via_agent
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, func in contenders.items():
                samples[name].append(func())
        medians = {name: statistics.median(values) for name, values in samples.items()}
        floor = medians["unsigned (floor)"]
        print(f"Run.finish of a {args.events}-event run, median of {args.rounds} rounds")
        for name, seconds in medians.items():
            print(
                f"  {name:<26} {seconds * 1e3:7.2f} ms   x{seconds / floor:5.2f} of unsigned"
                f"   (+{(seconds - floor) * 1e3:.2f} ms)"
            )

        signed = next(p for p in store.run_dirs() if (p / "checkpoint.sig").exists())
        unsigned = next(p for p in store.run_dirs() if not (p / "checkpoint.sig").exists())
        checks: dict[str, list[float]] = {"unsigned": [], "signed": []}
        for _ in range(args.rounds):
            for name, run_dir in (("unsigned", unsigned), ("signed", signed)):
                start = time.perf_counter()
                verify(run_dir)
                checks[name].append(time.perf_counter() - start)
        plain, with_sig = (statistics.median(checks[n]) for n in ("unsigned", "signed"))
        print(
            f"verify of the same run: {plain * 1e3:.2f} ms unsigned, {with_sig * 1e3:.2f} ms "
            f"signed: x{with_sig / plain:.2f} (+{(with_sig - plain) * 1e3:.2f} ms)"
        )
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
