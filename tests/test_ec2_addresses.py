"""Floating addresses: one for an instance without a public address, released with it — or
at once, when it cannot be associated."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from precip_repro import CloudError, finish_run
from tests.ec2_cloud import live, make
from tests.helpers import of_type


def test_an_instance_without_a_public_address_gets_a_floating_one(ec2, store):
    exp = make("ec2", ec2, store, ssh_address="public", floating_addresses=[ec2.floating])
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    assert exp.list()[0]["public_address"] == ec2.floating
    assert exp.run([], "echo via the floating address")[0] == [0]
    assert of_type(exp.run_path, "instance.ready")[0]["public_address"] == ec2.floating
    exp.deprovision()
    assert ec2.client.describe_addresses()["Addresses"] == []  # released with the instance
    exp.close()
    finish_run()


def test_a_floating_address_that_cannot_be_associated_is_released_at_once(ec2, store):
    exp = make("ec2", ec2, store, ssh_address="public", floating_addresses=[ec2.floating])

    def refused(**_: Any) -> None:
        error = {"Error": {"Code": "Gateway.NotAttached", "Message": "no internet gateway"}}
        raise botocore.exceptions.ClientError(error, "AssociateAddress")

    exp.cloud.client.meta.events.register("before-call.ec2.AssociateAddress", refused)
    exp.provision(ec2.image)
    with pytest.raises(CloudError) as info:
        exp.wait(timeout=60)
    assert info.value.code == "Gateway.NotAttached"
    assert ec2.client.describe_addresses()["Addresses"] == []
    exp.close()
    assert live(ec2) == []
    finish_run()
