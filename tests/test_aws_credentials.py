"""Credentials the AWS way, against moto in server mode: real AWS config and credentials
files with profiles in a temporary HOME, AWS_PROFILE and AWS_ENDPOINT_URL, for an
experiment, ``gc --cloud`` and a replay mapping's ``[cloud]``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from precip_repro import CredentialsNotFound, EC2Experiment, InvalidOption, finish_run, verify
from precip_repro.cli import main
from precip_repro.clouds.aws_credentials import resolve_credentials
from precip_repro.clouds.base import credential_fingerprint
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import RunStore
from replay.cli import main as replay
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY, live
from tests.helpers import assert_nowhere_in, of_type, record_script
from tests.test_replay import record_example, replay_runs

OTHER_KEY = "AKIDPRECIPOTHERKEY02"
OTHER_SECRET = "precip-other-secret-0b8e3c1d9f"
SESSION_TOKEN = "precip-session-token-7d2a4c9e1b3f5a6c8e0d"


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: Any) -> Path:
    """A HOME with ~/.aws/config and ~/.aws/credentials as `aws configure` writes them:
    ``lab`` (long-term keys), ``temp`` (keys with a session token), ``role-a`` and
    ``role-b`` (one role assumed from ``lab`` under two session names), ``empty`` (a
    region, no credentials) and ``endpointed`` (keys and an endpoint_url: moto)."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    config = home / ".aws" / "config"
    config.write_text(
        "[default]\nregion = us-east-1\n"
        "[profile lab]\nregion = us-east-1\n"
        "[profile temp]\nregion = us-east-1\n"
        "[profile role-a]\nrole_arn = arn:aws:iam::123456789012:role/precip-lab\n"
        "source_profile = lab\nrole_session_name = monday\n"
        "[profile role-b]\nrole_arn = arn:aws:iam::123456789012:role/precip-lab\n"
        "source_profile = lab\nrole_session_name = tuesday\n"
        "[profile empty]\nregion = us-east-1\n"
        f"[profile endpointed]\nregion = us-east-1\nendpoint_url = {moto_endpoint.url}\n"
    )
    credentials = home / ".aws" / "credentials"
    credentials.write_text(
        f"[lab]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        f"[temp]\naws_access_key_id = {OTHER_KEY}\naws_secret_access_key = {OTHER_SECRET}\n"
        f"aws_session_token = {SESSION_TOKEN}\n"
        f"[endpointed]\naws_access_key_id = {ACCESS_KEY}\n"
        f"aws_secret_access_key = {SECRET_KEY}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "EC2_ACCESS_KEY", "EC2_SECRET_KEY"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    return home


def test_keys_given_explicitly_are_fingerprinted_by_their_key_id_and_name_no_profile(aws_home):
    found = resolve_credentials(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    assert (found.profile, found.fingerprint) == (None, credential_fingerprint(ACCESS_KEY))
    assert SECRET_KEY not in repr(found)


def test_a_profile_of_long_term_keys_is_fingerprinted_like_the_same_keys_given(aws_home):
    found = resolve_credentials(profile="lab")
    assert (found.profile, found.fingerprint) == ("lab", credential_fingerprint(ACCESS_KEY))


def test_the_environments_keys_name_no_profile(aws_home, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", OTHER_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", OTHER_SECRET)
    found = resolve_credentials()
    assert (found.profile, found.fingerprint) == (None, credential_fingerprint(OTHER_KEY))


def test_an_assumed_roles_fingerprint_is_the_roles_whatever_the_session(aws_home, moto_endpoint):
    # botocore assumes the role through STS (moto, by AWS_ENDPOINT_URL): each session has
    # its own temporary key id, and its own name in the caller's ARN.
    os.environ["AWS_ENDPOINT_URL"] = moto_endpoint.url
    try:
        monday = resolve_credentials(profile="role-a", region="us-east-1")
        tuesday = resolve_credentials(profile="role-b", region="us-east-1")
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
    assert monday.secrets["AWS_ACCESS_KEY_ID"] != tuesday.secrets["AWS_ACCESS_KEY_ID"]
    assert "AWS_SESSION_TOKEN" in monday.secrets
    assert monday.fingerprint == tuesday.fingerprint
    assert monday.fingerprint is not None
    assert monday.fingerprint != credential_fingerprint(monday.secrets["AWS_ACCESS_KEY_ID"])


def test_temporary_keys_at_a_private_endpoint_are_not_fingerprinted_by_their_key_id(aws_home):
    # No STS beside a private cloud's EC2 endpoint to say whose they are: no fingerprint
    # rather than one that changes with every session.
    found = resolve_credentials(profile="temp", endpoint="http://127.0.0.1:1")
    assert (found.profile, found.fingerprint) == ("temp", None)
    assert found.secrets["AWS_SESSION_TOKEN"] == SESSION_TOKEN


@pytest.mark.parametrize("how", ["argument", "AWS_PROFILE"])
def test_an_unknown_profile_is_one_line_naming_it_and_the_known_ones(aws_home, monkeypatch, how):
    if how == "AWS_PROFILE":
        monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(CredentialsNotFound) as caught:
        EC2Experiment("us-east-1", profile="nope" if how == "argument" else None, record=False)
    message = str(caught.value)
    assert "\n" not in message and caught.value.profile == "nope"
    assert "AWS profile 'nope' is not in" in message
    assert "aws configure --profile nope" in message
    assert "lab" in message and "endpointed" in message


def test_a_profile_without_credentials_is_one_line_saying_what_to_do(aws_home):
    with pytest.raises(CredentialsNotFound) as caught:
        EC2Experiment("us-east-1", profile="empty", record=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no AWS credentials in AWS profile 'empty':")
    assert "aws sso login --profile NAME" in message and "AWS_ACCESS_KEY_ID" in message


def test_no_credentials_at_all_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(CredentialsNotFound) as caught:
        EC2Experiment("us-east-1", record=False)
    assert str(caught.value).startswith(
        "no AWS credentials in the default AWS profile or the environment: pass access_key"
    )
    assert caught.value.profile is None


def test_one_key_without_the_other_is_refused_naming_the_missing_one(aws_home):
    with pytest.raises(InvalidOption, match="secret_key"):
        EC2Experiment("us-east-1", None, ACCESS_KEY, record=False)


def test_an_experiment_with_a_profile_runs_on_the_endpoint_it_configures_and_records_no_key(
    aws_home, monkeypatch, ec2, store
):
    monkeypatch.setenv("AWS_PROFILE", "endpointed")
    exp = EC2Experiment("us-east-1", subnet_id=ec2.subnet, ssh_address="private",
                        records=store.root)  # fmt: skip
    try:
        exp.provision(ec2.image)
        exp.wait(timeout=60)
        assert exp.run([], "echo hello")[1] == ["hello\n"]
        exp.deprovision()
        assert live(ec2) == []
    finally:
        exp.close()
    run_path = exp.run_path
    assert run_path is not None
    finish_run()
    assert verify(run_path).state == "intact"
    assert of_type(run_path, "experiment.created")[0]["cloud"] == {
        "kind": "ec2",
        "endpoint": ec2.url,  # the profile's endpoint_url: where the run really was
        "region": "us-east-1",
        "access_key_fingerprint": credential_fingerprint(ACCESS_KEY),
        "profile": "endpointed",
    }
    assert_nowhere_in(store.root, SECRET_KEY, ACCESS_KEY)


def test_gc_checks_a_cloud_with_the_credentials_of_profile(aws_home, store, capsys, ec2):
    from precip_repro.record import Run

    with Run.open(store, name="finished") as finished:
        pass
    ec2.client.run_instances(
        ImageId=ec2.image, MinCount=1, MaxCount=1, SubnetId=ec2.subnet,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "precip:run", "Value": finished.id}]}
        ],
    )  # fmt: skip
    args = ["--records", str(store.root), "gc", "--cloud", ec2.url, "--profile", "lab"]
    assert main([*args, "--terminate"]) == 0
    assert "terminated 1 instance(s)" in capsys.readouterr().out
    assert live(ec2) == []


def test_gc_with_an_unknown_profile_is_a_one_line_usage_error_before_any_check(
    aws_home, store, capsys
):
    code = main(["--records", str(store.root), "gc", "--cloud", "http://127.0.0.1:1",
                 "--profile", "nope"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--cloud http://127.0.0.1:1: AWS profile 'nope'" in err


def _hello_world(store: RunStore) -> str:
    return record_example("hello_world.py", store)


def test_a_mapping_naming_an_unknown_profile_fails_before_anything_is_provisioned(
    aws_home, store, tmp_path, capsys
):
    source = _hello_world(store)
    mapping = tmp_path / "map.toml"
    mapping.write_text('[images]\n"default" = "ami-12345678"\n[cloud]\nprofile = "nope"\n')
    before = {s.instance_id for s in live_local_instances()}
    code = replay([source, "--records", str(store.root), "--to", "ec2", "--map", str(mapping)])
    err = capsys.readouterr().err
    assert code == 2
    assert "e1 replays on ec2: AWS profile 'nope' is not in" in err and err.count("\n") == 1
    assert {s.instance_id for s in live_local_instances()} == before


def test_a_mapping_giving_a_profile_and_keys_is_refused(aws_home, store, tmp_path, capsys):
    source = _hello_world(store)
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        '[images]\n"default" = "ami-12345678"\n[cloud]\nprofile = "lab"\n'
        'access_key_env = "LAB_KEY"\n'
    )
    code = replay([source, "--records", str(store.root), "--to", "ec2", "--map", str(mapping)])
    assert code == 2 and "gives both a profile and keys" in capsys.readouterr().err


def test_a_run_replays_on_ec2_with_the_mappings_profile_and_records_it(
    aws_home, store, tmp_path, capsys, ec2
):
    source = _hello_world(store)
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        f'[images]\n"default" = "{ec2.image}"\n'
        f'[cloud]\nprofile = "lab"\nendpoint = "{ec2.url}"\nsubnet_id = "{ec2.subnet}"\n'
        'ssh_address = "private"\n'
    )
    code = replay([source, "--records", str(store.root), "--to", "ec2", "--map", str(mapping),
                   "--max-gap", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    (new,) = replay_runs(store, source)
    created = of_type(store.root / new, "experiment.created")[0]["cloud"]
    assert created["profile"] == "lab"
    assert created["access_key_fingerprint"] == credential_fingerprint(ACCESS_KEY)
    assert_nowhere_in(store.root, SECRET_KEY)


def test_a_run_recorded_with_a_profile_plays_back_where_the_profile_is_unknown(
    aws_home, monkeypatch, store, tmp_path, capsys, ec2
):
    script = tmp_path / "hello_ec2.py"
    script.write_text(
        "from precip_repro import EC2Experiment\n"
        f'exp = EC2Experiment("us-east-1", subnet_id="{ec2.subnet}", ssh_address="private")\n'
        f'exp.provision("{ec2.image}")\nexp.wait(timeout=60)\n'
        'print(exp.run([], "echo hello")[1][0], end="")\nexp.deprovision()\n'
    )
    monkeypatch.setenv("AWS_PROFILE", "endpointed")
    # Recorded in a process of its own, as a user does: `run` sets up its process for the
    # script (its name, argv, sys.path), which the tests after this one must not inherit.
    done = record_script(store, script)
    assert done.returncode == 0, done.stderr
    (run_id,) = [p.name for p in store.run_dirs()]
    capsys.readouterr()
    # Played back on a reader's machine: no such profile, and no cloud asked.
    monkeypatch.setenv("AWS_PROFILE", "the-authors-lab")
    code = main(["--records", str(store.root), "run", "--playback", run_id, str(script)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "hello" in out and "recorded calls matched" in out
    assert [p.name for p in store.run_dirs()] == [run_id]
