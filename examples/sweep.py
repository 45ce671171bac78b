"""A benchmark sweep, the most common experiment there is: gzip's compression levels on
one input, on three instance types of the local cloud.

Each level runs on each instance type; its output says the compressed size and the seconds
it took (on one line, as benchmarks print them); the compressed file is fetched with
`get`; the size and the time are recorded with `exp.note`. The levels are the script's
arguments, the input's size a parameter read from the environment:

    python examples/sweep.py                      # levels 1 6 9, 200000 bytes
    SWEEP_BYTES=400000 python examples/sweep.py 1 9

`precip-repro results RUN…` puts the notes of many such runs in one table (`--csv`);
`precip-repro diff A B` says first that SWEEP_BYTES or the levels changed.
"""

import sys
import tempfile
from pathlib import Path

from precip_repro import LocalExperiment

TYPES = ("m1.small", "m1.medium", "m1.large")
levels = [int(arg) for arg in sys.argv[1:]] or [1, 6, 9]

# Compressed size and seconds on one line: `level=6 bytes=1234 seconds=0.012345`.
COMPRESS = (
    "start=$(date +%s%N); gzip -{level} -c /tmp/sweep/input > /tmp/sweep/out-{level}.gz; "
    "end=$(date +%s%N); "
    "echo level={level} bytes=$(stat -c %s /tmp/sweep/out-{level}.gz) "
    'seconds=$(awk "BEGIN{{printf \\"%.6f\\", ($end - $start) / 1e9}}")'
)

with LocalExperiment("sweep") as exp:
    size = exp.param("SWEEP_BYTES", default=200_000)
    for kind in TYPES:
        exp.provision("default", instance_type=kind, tags=[kind])
    exp.wait()
    slots = {kind: exp.list([kind])[0]["slot"] for kind in TYPES}

    # The same input everywhere: text, deterministic, compressible as logs are.
    exp.run([], f"mkdir -p /tmp/sweep && seq 1 {size} | head -c {size} > /tmp/sweep/input")

    fetched = Path(tempfile.mkdtemp(prefix="sweep-"))
    for level in levels:
        for kind in TYPES:
            _, stdouts, _ = exp.run([kind], COMPRESS.format(level=level))
            measured = dict(word.split("=", 1) for word in stdouts[0].split())
            local = fetched / f"{kind}-{level}.gz"
            exp.get([kind], f"/tmp/sweep/out-{level}.gz", local)
            exp.note(
                f"gzip -{level} on {kind}",
                level=level,
                instance_type=kind,
                slot=slots[kind],
                input_bytes=size,
                bytes=local.stat().st_size,
                seconds=float(measured["seconds"]),
            )
            print(f"{kind:10} level {level}: {measured['bytes']} bytes in {measured['seconds']} s")
