"""The seed's Condor pool, without Condor: a master and two workers.

The master serves a file over TCP on its private address only; each worker is given the
master's private hostname as a `copy_and_run` argument and fetches the file from it, as a
Condor worker registers with its central manager. The workers then report as the user
`wf` that the bootstrap created (run as root: an ordinary user's local cloud has only root).
"""

import time
from pathlib import Path

from precip_repro import ExperimentException, LocalExperiment

HERE = Path(__file__).resolve().parent
exp = None

try:
    exp = LocalExperiment("condor-pool")

    # A master (the central manager) and a set of workers.
    exp.provision("default", tags=["master"], instance_type="m1.large")
    exp.provision("default", tags=["compute"], instance_type="m1.large", count=2)
    exp.wait()

    # The workers need to know the private hostname of the master.
    master_priv_addr = exp.get_private_hostnames(["master"])[0]

    # Bootstrap: the master starts serving, the workers join it.
    exp.copy_and_run(["master"], HERE / "bootstrap.sh", args=["master", master_priv_addr])
    exp.copy_and_run(["compute"], HERE / "bootstrap.sh", args=["worker", master_priv_addr])

    # Give the workers a moment (the seed waited a minute for Condor).
    time.sleep(1)

    # Make sure the pool came up: every worker holds the master's file.
    _, status, _ = exp.run(["compute"], "cat /home/wf/joined.txt", user="wf")
    for line in status:
        print(line, end="")

except ExperimentException as e:
    print(f"ERROR: {e}")
    raise
finally:
    # Always clean up every instance that was started.
    if exp is not None:
        exp.deprovision([])
