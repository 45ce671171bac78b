"""Hello world, as in the precip seed, on the local cloud (no credentials needed).

Run it with `python examples/hello_world.py` (or `precip-repro run examples/hello_world.py`);
the run is recorded in ./records (or $PRECIP_RECORDS).
"""

from pprint import pprint

from precip_repro import ExperimentException, LocalExperiment

exp = None

# Use try/except liberally in your experiments: the API raises ExperimentException (or a
# subclass of it) on most errors.
try:
    # A local experiment: each instance is a real sshd on its own loopback address.
    exp = LocalExperiment("hello-world")

    # Provision an instance of the default image. Tags identify instances later.
    exp.provision("default", tags=["test1"], count=1)

    # Wait until every instance runs and accepts ssh.
    exp.wait()

    # Instance id, addresses and tags (ours and the API's defaults).
    pprint(exp.list())

    # Run a command on the instances tagged "test1".
    exit_codes, stdouts, stderrs = exp.run(
        ["test1"], "echo 'Hello world from an experiment instance'"
    )
    for out in stdouts:
        print(out, end="")

except ExperimentException as e:
    print(f"ERROR: {e}")

finally:
    # Always deprovision what was started, also on failure.
    if exp is not None:
        exp.deprovision()
