"""What instances on an EC2-compatible cloud start with: precip's key pair or the user's
(holding the key precip logs in with), and security groups that let ssh in."""

from __future__ import annotations

import pytest

from precip_repro import CloudError, finish_run
from tests.ec2_cloud import live, make
from tests.helpers import of_type, original_precip_home


def test_cloud_set_up_is_idempotent_and_opens_ports(ec2, store):
    first = make("ec2", ec2, store)
    second = make("openstack", ec2, store)
    pairs = ec2.client.describe_key_pairs()["KeyPairs"]
    assert [pair["KeyName"] for pair in pairs] == [first.keys.key_name]
    groups = ec2.client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["precip"]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    ports = {(p.get("FromPort"), p["IpProtocol"]) for p in groups[0]["IpPermissions"]}
    assert (22, "tcp") in ports and (None, "-1") in ports
    first.open_port(9618, cidr="127.0.0.0/8")
    group = ec2.client.describe_security_groups(GroupIds=[groups[0]["GroupId"]])
    assert 9618 in {p.get("FromPort") for p in group["SecurityGroups"][0]["IpPermissions"]}
    assert of_type(first.run_path, "call.started")[-1]["method"] == "open_port"
    first.close()
    second.close()
    finish_run()


def test_the_original_precips_rsa_key_is_imported_recognised_and_logs_in(
    ec2, store, tmp_path, monkeypatch
):
    home = tmp_path / "old-home"
    original_precip_home(home)
    monkeypatch.setenv("PRECIP_HOME", str(home))
    exp = make("ec2", ec2, store)
    (pair,) = ec2.client.describe_key_pairs()["KeyPairs"]
    assert pair["KeyName"] == "precip_0123456789abcdef0123456789abcdef"
    again = make("ec2", ec2, store)  # the pair exists: recognised as this key, not refused
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    assert exp.run([], "echo in")[1] == ["in\n"]
    exp.close()
    again.close()
    finish_run()


def test_a_security_group_that_does_not_exist_is_named_before_anything_starts(ec2, store):
    with pytest.raises(CloudError, match=r"security group\(s\) 'experiment-sg' not found") as e:
        make("ec2", ec2, store, security_groups=["experiment-sg"])
    assert e.value.code == "InvalidGroup.NotFound"
    assert live(ec2) == []


def test_own_security_groups_that_let_no_ssh_in_are_warned_about(ec2, store, capsys):
    closed = ec2.client.create_security_group(
        GroupName="closed", Description="nothing in", VpcId=ec2.vpc
    )["GroupId"]
    exp = make("ec2", ec2, store, security_groups=["closed"])
    assert "none of the security groups lets ssh (tcp/22) in" in capsys.readouterr().err
    ec2.client.authorize_security_group_ingress(
        GroupId=closed,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 0, "ToPort": 1023,
                        "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )  # fmt: skip
    again = make("ec2", ec2, store, security_groups=[closed])
    assert "lets ssh" not in capsys.readouterr().err
    exp.provision(ec2.image)  # a warning, not a refusal: the instances use that group
    (instance,) = ec2.client.describe_instances()["Reservations"][0]["Instances"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [closed]
    exp.close()
    again.close()
    finish_run()


def test_a_key_pair_with_another_key_is_a_clear_error(ec2, store):
    from precip_repro.keys import load_keys

    name = load_keys().key_name
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCkh0M1H5yJtG0e2zG0q7yQ2l1h5mJv5m0u6h6y3o7D x"
    ec2.client.import_key_pair(KeyName=name, PublicKeyMaterial=other.encode())
    with pytest.raises(CloudError, match=f"key pair '{name}' on .* holds another key"):
        make("ec2", ec2, store)
    finish_run()


@pytest.mark.parametrize("kind", ["ec2", "openstack"])  # by public key / by fingerprint
def test_a_key_name_given_must_hold_the_key_precip_logs_in_with(kind, ec2, store):
    from precip_repro.keys import load_keys

    keys = load_keys()
    ec2.client.create_key_pair(KeyName="made-by-the-cloud")
    with pytest.raises(CloudError, match=r"'made-by-the-cloud' on .* holds another key") as e:
        make(kind, ec2, store, key_name="made-by-the-cloud")
    assert keys.fingerprint in str(e.value) and e.value.code == "KeyPairMismatch"
    with pytest.raises(CloudError, match="key pair 'missing' not found on") as e:
        make(kind, ec2, store, key_name="missing")
    assert e.value.code == "InvalidKeyPair.NotFound"
    assert live(ec2) == []  # refused before anything started
    ec2.client.import_key_pair(KeyName="mine", PublicKeyMaterial=keys.public_key.encode())
    exp = make(kind, ec2, store, key_name="mine")  # a pair of the user's holding this key
    exp.provision(ec2.image)
    exp.wait(timeout=60)
    exp.close()
    finish_run()
