"""Benchmarks of the record core. Not a test: it prints figures and ratios.

1. Append rate of ``Run.append`` as shipped (events/s), and as a ratio to the floor: the
   same canonical lines written with one ``os.write`` each and no hashing or checks.
2. ``verify`` over a run holding 1 GB of blobs, as a throughput ratio to ``sha256sum`` over
   the same files (target ≥ 0.8). Medians of interleaved rounds, warm page cache for both.
3. Peak RSS of a process verifying a 1,000,000-event log (target < 100 MB).

Usage: python bench/journal.py [--events N] [--blob-mb MB] [--log-events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from precip_repro.record import Run, RunStore, verify
from precip_repro.record.payloads import BlobRef, CommandFinished, FilePut


def bench_append(root: Path, events: int) -> None:
    run = Run.open(RunStore(root), name="append")
    stdout = BlobRef.of(b"hello world\n")
    stderr = BlobRef.of(b"")
    payloads = [
        CommandFinished(
            call=i,
            slot="e1.p1.0",
            instance_id="i-0123456789abcdef0",
            user="root",
            cmd="echo hello world",
            exit_code=0,
            stdout=stdout,
            stderr=stderr,
            duration_ns=2_700_000 + i,
        )
        for i in range(events)
    ]
    start = time.perf_counter()
    for payload in payloads:
        run.append(payload)
    ours = time.perf_counter() - start
    run.finish()

    # The floor: identical bytes, one write each, no hashing, no checks, no chain.
    lines = (run.path / "events.jsonl").read_bytes().splitlines(keepends=True)[1 : events + 1]
    objs = [json.loads(line) for line in lines]
    fd = os.open(root / "floor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.perf_counter()
    for obj in objs:
        os.write(fd, json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    floor = time.perf_counter() - start
    os.close(fd)
    print(f"append: {events / ours:,.0f} events/s as shipped ({ours / events * 1e6:.1f} µs/event)")
    print(
        f"        floor (json.dumps + os.write, no hash/checks): {events / floor:,.0f} events/s;"
        f" ours/floor throughput ratio {floor / ours:.2f}"
    )


def bench_verify_blobs(root: Path, total_mb: int, rounds: int) -> None:
    run = Run.open(RunStore(root), name="blobs")
    size = 64 << 20
    count = max(1, (total_mb << 20) // size)
    for i in range(count):
        block = os.urandom(1 << 20)
        with run.blob_sink() as sink:
            for j in range(size >> 20):
                sink.write(bytes([i, j]) + block[2:])
            ref = sink.commit()
        run.append(
            FilePut(
                call=1, slot="e1.p1.0", instance_id="i-bench", user="root",
                local_path=f"blob{i}", remote_path=f"/srv/blob{i}", mode=0o644, content=ref,
            )
        )  # fmt: skip
    run.finish()
    files = sorted(
        p for p in (run.path / "objects").rglob("*") if p.is_file() and p.parent.name != "tmp"
    )
    total = sum(p.stat().st_size for p in files)
    assert len(files) == count

    def time_verify() -> float:
        start = time.perf_counter()
        verdict = verify(run.path)
        elapsed = time.perf_counter() - start
        assert verdict.state == "intact", verdict.reason
        assert verdict.blobs_checked == count, verdict.blobs_checked  # every blob was hashed
        return elapsed

    def time_sha256sum() -> float:
        start = time.perf_counter()
        subprocess.run(["sha256sum", *map(str, files)], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    time_sha256sum()  # warm the page cache for both
    ours, peer = [], []
    for _ in range(rounds):
        ours.append(time_verify())
        peer.append(time_sha256sum())
    o, p = statistics.median(ours), statistics.median(peer)
    mb = total / 1e6
    print(
        f"verify: {total / 2**30:.2f} GiB in {count} blobs: ours {o:.2f} s ({mb / o:,.0f} MB/s), "
        f"sha256sum {p:.2f} s ({mb / p:,.0f} MB/s); ratio (throughput ours/sha256sum) "
        f"{p / o:.2f} (target ≥ 0.8); single-threaded verify ratio "
        f"{p / _single(run.path):.2f}"
    )


def _single(run_dir: Path) -> float:
    start = time.perf_counter()
    verify(run_dir, workers=1)
    return time.perf_counter() - start


def bench_verify_rss(root: Path, events: int) -> None:
    run = Run.open(RunStore(root), name="million")
    stdout = BlobRef.of(b"ok\n")
    for i in range(events - 2):
        run.append(
            CommandFinished(
                call=i // 4,
                slot=f"e1.p1.{i % 4}",
                instance_id=f"i-{i % 4:017x}",
                user="root",
                cmd=f"echo step {i}",
                exit_code=0,
                stdout=stdout,
                stderr=BlobRef.of(b""),
                duration_ns=1000 + i,
            )
        )
    run.finish()
    size = (run.path / "events.jsonl").stat().st_size
    # ru_maxrss of a child counts the parent's pages before exec: read the child's own
    # high-water mark (VmHWM) instead, after it has verified.
    code = (
        "import sys; from pathlib import Path; from precip_repro.record import verify\n"
        "hwm = lambda: next(l.split()[1] for l in open('/proc/self/status') "
        "if l.startswith('VmHWM'))\n"
        "before = hwm()\n"
        "v = verify(Path(sys.argv[1])); assert v.state == 'intact', v.reason\n"
        "print(v.events, before, hwm())\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(run.path)], capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - start
    counted, before_kb, peak_kb = done.stdout.split()
    assert counted == str(events), done.stdout
    print(
        f"verify RSS: {events:,} events ({size / 1e6:,.0f} MB log) verified in {elapsed:.1f} s "
        f"({events / elapsed:,.0f} events/s); peak RSS {int(peak_kb) / 1024:.1f} MB "
        f"(target < 100 MB; {int(before_kb) / 1024:.1f} MB of it is the interpreter and "
        "the imported package)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--blob-mb", type=int, default=1024)
    parser.add_argument("--log-events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="precip-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        bench_append(root / "append", args.events)
        bench_verify_blobs(root / "blobs", args.blob_mb, args.rounds)
        bench_verify_rss(root / "rss", args.log_events)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
