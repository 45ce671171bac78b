"""Resources from two clouds in one experiment run, as in the precip seed.

Both are local clouds here (two address blocks); with credentials, either can be an
EC2Experiment or an OpenStackExperiment instead: the rest of the script stays the same.
"""

from precip_repro import ExperimentException, LocalExperiment

one = None
two = None

try:
    one = LocalExperiment("cloud-one")
    two = LocalExperiment("cloud-two")

    # One instance on each cloud.
    one.provision("default", tags=["id=one_1"])
    two.provision("default", tags=["id=two_1"])

    one.wait([])
    two.wait([])

    _, out_one, _ = one.run([], "echo 'Hello world from cloud one'; hostname")
    _, out_two, _ = two.run([], "echo 'Hello world from cloud two'; hostname")
    print(out_one[0] + out_two[0], end="")

except ExperimentException as e:
    print(f"ERROR: {e}")
    raise
finally:
    if one is not None:
        one.deprovision([])
    if two is not None:
        two.deprovision([])
