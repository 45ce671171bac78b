"""The experiment classes: the seed's positional parameters, our options defined once."""

from __future__ import annotations

import pytest

from precip_repro import EC2Experiment, LocalExperiment, OpenStackExperiment
from precip_repro.experiment.kinds import EC2Options, Options


def test_an_unknown_keyword_is_refused_as_a_plain_signature_would(store):
    with pytest.raises(
        TypeError, match="LocalExperiment\\(\\) got an unexpected keyword argument 'boot_timout'"
    ):
        LocalExperiment("typo", records=store.root, boot_timout=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'address_block'"):
        EC2Experiment("us-east-1", None, "AKIAEXAMPLEKEY0000", "s" * 40, address_block="x")  # type: ignore[call-arg]


def test_the_ec2_options_extend_the_common_ones():
    common = set(Options.__annotations__)
    assert common < set(EC2Options.__annotations__)
    assert {"login_user", "ssh_address", "subnet_id", "floating_addresses"} <= (
        set(EC2Options.__annotations__) - common
    )


def test_defaults_are_each_kinds_own(local_experiment):
    exp = local_experiment("defaults")
    assert (exp.boot_timeout, exp.boot_max_tries, exp.login_user) == (None, 1, "root")
    assert EC2Experiment.DEFAULTS == {"boot_timeout": 900, "boot_max_tries": 3}
    assert OpenStackExperiment.DEFAULTS is EC2Experiment.DEFAULTS
