"""An S3 store's figures, against a moto server of its own on 127.0.0.1 (real HTTP, boto3).

1. Recording for an S3 store costs no more per call than recording locally:
   bench/overhead.py run for a directory and for ``s3://…``; target ratio ≤ 1.05
   (recorded / unrecorded, the S3 store's; and the S3 figure over the directory's).
2. Pushing a finished run of ``--size-mb`` (1 GB) of blobs, against boto3's own
   ``upload_file`` of the same files to the same endpoint, one after the other; target
   ≥ 0.8 times its speed. The push verifies the run first (it hashes every blob) and sends each
   blob with its SHA-256 checksum, as the store does.
3. ``precip-repro ls`` of a store of ``--runs`` (1,000) runs, from a machine that has none
   of them cached: target < 2 s (the whole command, interpreter start included).

Not a test: prints figures. moto keeps objects in memory: 1 GB pushed twice needs ~3 GB.

Usage: python bench/s3.py [--size-mb N] [--runs N] [--skip overhead,push,ls]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Moto:
    """``moto_server`` in a process of its own (the pushes' threads share no GIL with it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}/lab"

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def environment(moto: Moto, root: Path, machine: str) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PRECIP_HOME": str(root / machine / "home"),
        "PRECIP_CACHE": str(root / machine / "cache"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **KEYS,
    }
    os.environ.update(env)
    return {**os.environ, **env}


def overhead(moto: Moto, root: Path, processes: int) -> None:
    url = moto.bucket("bench-overhead")
    env = environment(moto, root, "overhead")
    for records in (None, url):
        done = subprocess.run(
            [sys.executable, str(HERE / "overhead.py"), "--processes", str(processes),
             *(["--records", records] if records else [])],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(done.stdout.rstrip())


def push(moto: Moto, root: Path, size_mb: int, rounds: int) -> None:
    from precip_repro import open_store
    from precip_repro.record import Run

    url = moto.bucket("bench-push")
    environment(moto, root, "push")
    store = open_store(url)
    run = Run.open(store.local, name="gigabyte")
    blob_mb = 128
    chunk = os.urandom(1 << 20)
    for n in range(max(1, size_mb // blob_mb)):
        path = root / f"input-{n}"
        with path.open("wb") as f:
            for i in range(blob_mb):
                f.write(chunk[: (1 << 20) - 8] + n.to_bytes(4, "big") + i.to_bytes(4, "big"))
        run.add_blob(path)
        path.unlink()
    run.finish("ok")
    files = sorted(p for p in (run.path / "objects").rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    client = moto.client()
    config = TransferConfig()

    def boto3_upload() -> None:
        for n, path in enumerate(files):
            client.upload_file(str(path), "bench-push", f"plain/{n}", Config=config,
                               ExtraArgs={"ChecksumAlgorithm": "SHA256"})  # fmt: skip

    def our_push() -> None:
        result = store.push(run.path)
        assert result.sent == len(files), result

    def emptied() -> None:  # moto keeps objects in memory: each round starts from none
        keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(
            Bucket="bench-push") for item in page.get("Contents", ())]  # fmt: skip
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket="bench-push", Delete={
                "Objects": [{"Key": k} for k in keys[start:start + 1000]]})  # fmt: skip

    times: dict[str, list[float]] = {"boto3": [], "push": []}
    for n in range(rounds):  # in turn, each first every other round
        order = [("boto3", boto3_upload), ("push", our_push)]
        for name, func in order if n % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
            emptied()
    plain, ours = (statistics.median(times[name]) for name in ("boto3", "push"))
    mib = total / 2**20
    print(f"push of a run of {mib:.0f} MiB in {len(files)} blobs, median of {rounds} rounds:")
    print(f"  boto3 upload_file, one after the other: {plain:.2f} s ({mib / plain:.0f} MiB/s)")
    print(f"  precip-repro push (checks, then sends): {ours:.2f} s ({mib / ours:.0f} MiB/s)")
    each = zip(times["boto3"], times["push"], strict=True)
    print(f"  speed push / upload_file = {plain / ours:.2f} (target ≥ 0.8); each round: "
          f"{', '.join(f'{b / p:.2f}' for b, p in each)}")  # fmt: skip


def listing(moto: Moto, root: Path, runs: int) -> None:
    from precip_repro import open_store
    from precip_repro.record import Run

    url = moto.bucket("bench-ls")
    environment(moto, root, "writer")
    store = open_store(url)
    made = []
    for n in range(runs):
        run = Run.open(store.local, name=f"run-{n % 50}")
        run.add_blob(f"output of run {n}\n".encode() * 100)
        run.finish("ok")
        made.append(run.path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(store.push, made))
    env = environment(moto, root, "reader")
    samples = []
    for _ in range(3):
        shutil.rmtree(root / "reader" / "cache", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run([str(BIN / "precip-repro"), "ls", "--records", url],
                              env=env, capture_output=True, text=True, check=True)  # fmt: skip
        samples.append(time.perf_counter() - start)
        assert len(done.stdout.splitlines()) == runs + 1, done.stdout[-500:]
    start = time.perf_counter()
    rows = open_store(url).summaries()
    inside = time.perf_counter() - start
    assert len(rows) == runs
    print(f"ls of a store of {runs} runs, nothing cached:")
    print(f"  precip-repro ls: {min(samples):.2f} s best of 3, {max(samples):.2f} s worst "
          f"(target < 2 s); the listing itself {inside:.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="of the push figure")
    parser.add_argument("--skip", default="", help="comma-separated: overhead, push, ls")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    root = Path(tempfile.mkdtemp(prefix="precip-bench-s3-", dir=os.environ.get("BENCH_DIR")))
    moto = Moto()
    try:
        if "ls" not in skip:
            listing(moto, root, args.runs)
        if "push" not in skip:
            push(moto, root, args.size_mb, args.rounds)
        if "overhead" not in skip:
            overhead(moto, root, args.processes)
    finally:
        moto.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
