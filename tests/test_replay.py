"""precip-replay: a recorded run re-executed on another cloud, judged step by step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pytest

from precip_repro import (
    CommandFailed,
    LocalFileMissing,
    NoInstanceMatches,
    TransferFailed,
    finish_run,
    verify,
)
from precip_repro.clouds.local import live_local_instances
from precip_repro.record import LogReader, RunStore
from precip_repro.record.store import EVENTS
from replay.cli import main as replay
from tests.ec2_cloud import ACCESS_KEY, SECRET_KEY
from tests.helpers import assert_nowhere_in, read_only, record_stopped

EXAMPLES = Path(__file__).parent.parent / "examples"


def record_example(name: str, store: RunStore) -> str:
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return sorted(p.name for p in store.run_dirs())[-1]


def events(store: RunStore, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in LogReader(store.root / run_id / EVENTS) if e.type == kind]


def replay_runs(store: RunStore, source: str) -> list[str]:
    return [p.name for p in store.run_dirs() if p.name != source]


def replay_locally(store: RunStore, source: str, capsys: Any) -> tuple[int, str]:
    """``precip-replay SOURCE --to local --max-gap 1``: its exit status and output."""
    code = replay([source, "--records", str(store.root), "--to", "local", "--max-gap", "1"])
    return code, capsys.readouterr().out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_pool_replays_on_another_local_cloud_and_workers_reach_the_new_master(
    store, tmp_path, capsys
):
    source = record_example("condor_pool.py", store)
    image = tmp_path / "image"
    (image / "opt").mkdir(parents=True)
    (image / "opt" / "marker").write_text("replayed\n")
    mapping = write(tmp_path / "map.toml", f'[images]\n"default" = "{image}"\n'
                    '[cloud]\naddress_block = "127.201.9.0/24"\n')  # fmt: skip
    code = replay([source, "--records", str(store.root), "--to", "local",
                   "--map", str(mapping), "--max-gap", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "REPRODUCED: all 8 steps" in out
    sent = re.search(r"files it sent \(from the record\) are in (\S+)", out)
    assert sent is not None and "files it got" not in out, out
    assert (Path(sent[1]) / "6" / "bootstrap.sh").read_bytes() == (
        EXAMPLES / "bootstrap.sh"
    ).read_bytes()
    (new,) = replay_runs(store, source)
    started = events(store, new, "run.started")[0]
    source_verdict = verify(store.root / source)
    assert source_verdict.signer is not None
    assert started["replay_of"] == {
        "run": source, "digest": source_verdict.digest, "signer": source_verdict.signer
    }  # fmt: skip
    assert verify(store.root / new).signer == source_verdict.signer  # the same precip key
    assert started["mapping"]["size"] == mapping.stat().st_size

    def master_of(run_id: str) -> str:
        ready = events(store, run_id, "instance.ready")
        return str(next(d["private_address"] for d in ready if d["slot"] == "e1.p1.0"))

    master = master_of(new)
    assert master.startswith("127.201.9.")  # another address block
    old_master = master_of(source)
    assert master != old_master
    joined = [c["stdout"]["text"] for c in events(store, new, "command.finished")][-2:]
    assert all(line.startswith(f"worker joined {master}:") for line in joined)
    steps = events(store, new, "replay.step")
    assert [s["verdict"] for s in steps] == ["identical"] * 8
    launched = events(store, new, "instance.launched")
    assert {d["image_id"] for d in launched} == {str(image)}
    assert verify(store.root / new).state == "intact"


def test_a_replay_that_moves_no_file_leaves_no_empty_directory_behind(
    store, tmp_path, capsys, monkeypatch
):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    source = record_example("hello_world.py", store)
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert "replay run " in out and "files it" not in out
    assert not list(temp.glob("precip-replay-*"))


def test_an_unmapped_image_is_exit_2_before_any_instance_starts(store, tmp_path, capsys):
    source = record_example("hello_world.py", store)
    mapping = write(tmp_path / "map.toml", '[images]\n"ami-other" = "default"\n')
    before = {s.instance_id for s in live_local_instances()}
    code = replay([source, "--records", str(store.root), "--to", "local", "--map", str(mapping)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no mapping for image 'default' (used by e1)" in err
    assert replay_runs(store, source) == []
    assert {s.instance_id for s in live_local_instances()} == before


@pytest.mark.parametrize(
    "target, text, message",
    [
        ("ec2", None, "e1 replays on ec2: image 'default' is a local cloud's; map it to an "
         "image id of the ec2 cloud"),
        ("local", '[images]\n"default" = "ami-12345678"\n', "e1 replays on local: image "
         "'ami-12345678' is neither 'default' nor a directory"),
    ],
)  # fmt: skip
def test_an_image_the_target_cloud_cannot_have_is_exit_2_before_any_instance_starts(
    store, tmp_path, capsys, target, text, message
):
    source = record_example("hello_world.py", store)
    options = ["--map", str(write(tmp_path / "map.toml", text))] if text else []
    before = {s.instance_id for s in live_local_instances()}
    code = replay([source, "--records", str(store.root), "--to", target, *options])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert replay_runs(store, source) == []
    assert {s.instance_id for s in live_local_instances()} == before


@pytest.mark.parametrize(
    "text, message",
    [
        ('[images]\n"default" = \n', "line 2"),
        ('[images]\n"default" = "default"\n[imagez]\n"a" = "b"\n', "unknown key 'imagez'"),
        ('[images]\n"default" = "default"\n[cloud]\nendpiont = "x"\n', "line 4"),
        ('[images]\n"default" = 3\n', "must map to a string"),
        ('[images]\n"default" = "default"\n\n[e2.images]\n"default" = "x"\n',
         "line 4: [e2] maps an experiment the run does not have (it has e1)"),
    ],
)  # fmt: skip
def test_a_bad_mapping_names_the_key_and_line(store, tmp_path, capsys, text, message):
    source = record_example("hello_world.py", store)
    mapping = write(tmp_path / "map.toml", text)
    assert (
        replay([source, "--records", str(store.root), "--to", "local", "--map", str(mapping)]) == 2
    )
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'[images]\n"default" = "d\xe9faut"\n',
         "line 2: is not UTF-8 text (byte 23 is 0xe9); TOML files are UTF-8"),
        (b"[images]\nx = " + b"[" * 5000 + b"]" * 5000 + b"\n",
         "nests arrays or tables too deeply to be read"),
        (b'[images]\n"default" = "default"\n[cloud]\nendpoint = 5\n',
         "line 4: [cloud] endpoint = 5 is not valid: it must be a non-empty string"),
        (b'[images]\n"default" = "default"\n[cloud]\nregion = [1, 2]\n',
         "line 4: [cloud] region = [1, 2] is not valid: it must be a non-empty string"),
        (b'[images]\n"default" = "default"\n[e1.cloud]\nboot_max_tries = 0\n',
         "[e1.cloud] boot_max_tries = 0 is not valid: it must be an integer of at least 1"),
        (b'[images]\n"default" = "default"\n[cloud]\nssh_address = "both"\n',
         "it must be \"public\" or \"private\""),
    ],
)  # fmt: skip
def test_a_mapping_that_is_not_utf8_nests_deeply_or_has_mistyped_cloud_settings_is_one_line(
    store, tmp_path, capsys, raw, message
):
    source = record_example("hello_world.py", store)
    mapping = tmp_path / "map.toml"
    mapping.write_bytes(raw)
    code = replay([source, "--records", str(store.root), "--to", "local", "--map", str(mapping)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert replay_runs(store, source) == []


@pytest.mark.parametrize(
    "option, message",
    [
        (["--max-gap", "-1"], "--max-gap: must be a number of seconds ≥ 0, not '-1'"),
        (["--max-gap", "nan"], "--max-gap: must be a number of seconds ≥ 0, not 'nan'"),
        (["--out", "{file}/sub"], "--out {file}/sub: cannot write files there"),
    ],
)
def test_a_bad_option_is_exit_2_before_any_instance_starts(
    store, tmp_path, capsys, option, message
):
    source = record_example("hello_world.py", store)
    a_file = write(tmp_path / "a-file", "")
    option = [part.format(file=a_file) for part in option]
    with pytest.raises(SystemExit) as stopped:  # argparse's own usage errors exit
        code = replay([source, "--records", str(store.root), "--to", "local", *option])
        raise SystemExit(code)
    assert stopped.value.code == 2
    assert message.format(file=a_file) in capsys.readouterr().err
    assert replay_runs(store, source) == []


@pytest.mark.parametrize(
    "stop, status, code",
    [(KeyboardInterrupt, "interrupted", 130), (RuntimeError, "failed", 3)],
)
def test_a_replay_stopped_midway_deprovisions_and_its_run_says_how_it_ended(
    store, capsys, monkeypatch, stop, status, code
):
    from replay.engine import Engine

    source = record_example("hello_world.py", store)
    real_step = Engine._step

    def step(self: Engine, planned: Any) -> Any:
        if planned.call.method == "run":  # instances are up by now
            raise stop("stopped at the run step")
        return real_step(self, planned)

    monkeypatch.setattr(Engine, "_step", step)
    assert replay([source, "--records", str(store.root), "--to", "local"]) == code
    err = capsys.readouterr().err
    assert ("interrupted" if stop is KeyboardInterrupt else "internal error (RuntimeError") in err
    (replayed,) = replay_runs(store, source)
    assert events(store, replayed, "run.finished")[0]["status"] == status
    assert len(events(store, replayed, "instance.terminated")) == 1
    assert [s for s in live_local_instances() if s.run == replayed] == []
    assert verify(store.root / replayed).state == "intact"


def test_dry_run_prints_the_plan_with_mapped_values(store, tmp_path, capsys):
    source = record_example("hello_world.py", store)
    mapping = write(tmp_path / "map.toml", '[images]\n"default" = "/images/b"\n'
                    '[instance_types]\n"m1.small" = "t3.micro"\n')  # fmt: skip
    code = replay([source, "--records", str(store.root), "--to", "local", "--map",
                   str(mapping), "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "image_id='/images/b'" in out and "instance_type='t3.micro'" in out
    assert "#3 e1.list" in out and "e1.run(" in out
    assert replay_runs(store, source) == []


def test_dry_run_shows_values_learned_from_earlier_results_as_the_slots_they_come_from(
    store, capsys, local_experiment
):
    exp = local_experiment("learned")
    exp.provision("default", count=2)
    exp.wait()
    master = exp.get_private_hostnames()[0]
    exp.run(["e1.p1.1"], f"echo joining {master}")
    source = exp.run_id
    finish_run()
    code = replay([source, "--records", str(store.root), "--to", "local", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "cmd='echo joining {e1.p1.0.address}'" in out  # not the recorded master's
    assert master not in out
    assert out.rstrip().endswith("that instance's value in the replay, learned as it runs)")


def test_a_changed_image_diverges_at_that_step_and_strict_leaves_nothing(
    store, tmp_path, capsys, local_experiment
):
    old, new = tmp_path / "v1", tmp_path / "v2"
    for image, version in ((old, "1"), (new, "2")):
        (image / "opt").mkdir(parents=True)
        (image / "opt" / "version").write_text(version + "\n")
    exp = local_experiment("versions")
    exp.provision(str(old))
    exp.wait()
    exp.run([], "echo start")
    exp.run([], "cat /opt/version")
    exp.run([], "echo after")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    mapping = write(tmp_path / "map.toml", f'[images]\n"{old}" = "{new}"\n')
    code = replay([source, "--records", str(store.root), "--to", "local", "--map",
                   str(mapping), "--strict", "--max-gap", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "DIVERGED at 1 step(s): #4 e1.run 'cat /opt/version'" in out
    assert "       stdout e1.p1.0:\n" in out and "         -1\n         +2\n" in out
    (replayed,) = replay_runs(store, source)
    steps = events(store, replayed, "replay.step")
    assert [s["verdict"] for s in steps] == ["identical"] * 3 + ["diverged"]  # strict: stop
    assert [s for s in live_local_instances() if s.run == replayed] == []
    assert len(events(store, replayed, "instance.terminated")) == 1
    # The replay's own report says what it replayed and how each step went.
    from precip_repro.report import write_report

    for fmt in ("html", "md"):
        page = write_report(store.root / replayed, tmp_path, fmt=fmt).path.read_text()
        source_verdict = verify(store.root / source)
        named = f"{source} (digest {source_verdict.digest}, signed by {source_verdict.signer})"
        assert named in page
        assert "3 of 4 steps reproduced, 1 diverged" in page
        assert "Replay verdicts" in page and "diverged" in page


def test_a_script_that_names_its_own_temporary_path_reproduces(
    store, tmp_path, capsys, local_experiment
):
    script = write(tmp_path / "self.sh", '#!/bin/sh\necho "running $0 with $1" >&2\necho ok\n')
    exp = local_experiment("self-naming")
    exp.provision("default", count=2)
    exp.wait()
    exp.copy_and_run([], script, args=["x"])
    exp.deprovision()
    source = exp.run_id
    finish_run()
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert "REPRODUCED: all 4 steps" in out
    (replayed,) = replay_runs(store, source)
    stderr = [c["stderr"]["text"] for c in events(store, replayed, "command.finished")]
    assert all(text.startswith("running /tmp/precip-exec.") for text in stderr)


def test_a_missing_secret_is_exit_2_before_provisioning(store, tmp_path, capsys, local_experiment):
    exp = local_experiment("secretive")
    exp.secret("PRECIP_TEST_TOKEN", "tok-123456")
    exp.provision("default")
    exp.wait()
    exp.run([], "echo tok-123456 | wc -c")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    os.environ.pop("PRECIP_TEST_TOKEN", None)
    assert replay([source, "--records", str(store.root), "--to", "local"]) == 2
    assert "PRECIP_TEST_TOKEN" in capsys.readouterr().err
    os.environ["PRECIP_TEST_TOKEN"] = "tok-123456"
    try:
        assert replay([source, "--records", str(store.root), "--to", "local"]) == 0
    finally:
        del os.environ["PRECIP_TEST_TOKEN"]


READS_A_KEY = """
import sys
from precip_repro import LocalExperiment
with LocalExperiment("reads-a-key") as exp:
    exp.secret("PRECIP_TEST_KEY", sys.argv[2])
    exp.provision(sys.argv[1])
    exp.wait()
    exp.run([], "cat /etc/test-key")  # inline output
    exp.run([], "head -c 5000 /dev/zero | tr '\\\\0' x; cat /etc/test-key")  # a stored blob
"""


def test_a_secret_only_in_recorded_output_must_be_bound_and_stays_out_of_the_replay(
    store, tmp_path, capsys
):
    value = f"key-{os.getpid()}-{time.monotonic_ns()}"
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc" / "test-key").write_text(value + "\n")
    script = write(tmp_path / "reads_a_key.py", READS_A_KEY)
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run(
        [sys.executable, str(script), str(image), value], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (source,) = [p.name for p in store.run_dirs()]
    outputs = [c["stdout"] for c in events(store, source, "command.finished")]
    assert outputs[0]["text"] == "${secret:PRECIP_TEST_KEY}\n" and "text" not in outputs[1]
    os.environ.pop("PRECIP_TEST_KEY", None)
    assert replay([source, "--records", str(store.root), "--to", "local"]) == 2
    assert "PRECIP_TEST_KEY" in capsys.readouterr().err
    assert replay_runs(store, source) == []
    os.environ["PRECIP_TEST_KEY"] = value
    try:
        code, out = replay_locally(store, source, capsys)
    finally:
        del os.environ["PRECIP_TEST_KEY"]
    assert code == 0, out
    assert value not in out
    (replayed,) = replay_runs(store, source)
    assert_nowhere_in(store.root / replayed, value)


@pytest.mark.parametrize("stock", [False, True], ids=["root-login", "stock-image-sudo"])
def test_the_pool_replays_on_ec2_with_mapped_image_and_type_and_workers_reach_the_new_master(
    stock, store, tmp_path, capsys, ec2
):
    # A stock image refuses root: its default user logs in and root's calls go through sudo.
    image = ec2.root_refusing_image if stock else ec2.image
    source = record_example("condor_pool.py", store)
    mapping = write(
        tmp_path / "map.toml",
        f'[images]\n"default" = "{image}"\n[instance_types]\n"m1.large" = "t3.nano"\n'
        f'[cloud]\nendpoint = "{ec2.url}"\nregion = "us-east-1"\nsubnet_id = "{ec2.subnet}"\n'
        'ssh_address = "private"\naccess_key_env = "PRECIP_TEST_ACCESS"\n'
        'secret_key_env = "PRECIP_TEST_SECRET"\n' + ('login_user = "ubuntu"\n' if stock else ""),
    )
    os.environ["PRECIP_TEST_ACCESS"], os.environ["PRECIP_TEST_SECRET"] = ACCESS_KEY, SECRET_KEY
    try:
        code = replay([source, "--records", str(store.root), "--to", "ec2", "--map",
                       str(mapping), "--max-gap", "1"])  # fmt: skip
    finally:
        del os.environ["PRECIP_TEST_ACCESS"], os.environ["PRECIP_TEST_SECRET"]
    out = capsys.readouterr().out
    assert code == 0, out
    assert "REPRODUCED: all 8 steps" in out
    assert ("on e1=ec2 (logging in as ubuntu)" in out) is stock
    found = ec2.client.describe_instances()["Reservations"]
    instances = [i for r in found for i in r["Instances"]]
    assert [(i["ImageId"], i["InstanceType"]) for i in instances] == [(image, "t3.nano")] * 3
    assert {i["State"]["Name"] for i in instances} == {"terminated"}
    (new,) = replay_runs(store, source)
    ready = {d["slot"]: d for d in events(store, new, "instance.ready")}
    # The workers were handed the new master's private DNS name (remapped from the local
    # master's address) and fetched the pool file from it through the cloud's resolver.
    master = str(ready["e1.p1.0"]["private_hostname"])
    assert master.endswith(".ec2.internal")
    joined = [c["stdout"]["text"] for c in events(store, new, "command.finished")][-2:]
    assert all(line.startswith(f"worker joined {master}:") for line in joined), joined
    assert all(master.split(".")[0] in line for line in joined)  # the master's own hostname


@pytest.mark.parametrize("kind", ["ec2", "openstack"])  # the seed's pair: EC2 and FutureGrid
def test_a_two_cloud_run_replays_with_one_target_per_experiment(kind, store, tmp_path, capsys, ec2):
    source = record_example("multicloud.py", store)
    mapping = write(
        tmp_path / "map.toml",
        f'[e2.images]\n"default" = "{ec2.image}"\n'
        f'[e2.cloud]\nendpoint = "{ec2.url}"\nsubnet_id = "{ec2.subnet}"\n'
        'ssh_address = "private"\n'
        '[e1.images]\n"default" = "default"\n',
    )
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        code = replay([source, "--records", str(store.root), "--to", "e1=local",
                       "--to", f"e2={kind}", "--map", str(mapping), "--max-gap", "1"])  # fmt: skip
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    out = capsys.readouterr().out
    # `hostname` prints the instance id on the local cloud and ip-127-0-0-N on EC2: both are
    # the instance naming itself, the same after normalisation.
    assert code == 0, out
    assert out.count("reproduced") == 8
    (replayed,) = replay_runs(store, source)
    kinds = [d["cloud"]["kind"] for d in events(store, replayed, "experiment.created")]
    assert kinds == ["local", kind]


def _remapping_engine(store: RunStore, tmp_path: Path, target_slot: dict[str, Any]) -> Any:
    """An engine over a run recorded on EC2, its target instance already provisioned."""
    from types import SimpleNamespace

    from precip_repro.loading import load_run
    from precip_repro.record import Run
    from precip_repro.record.payloads import InstanceLaunched, InstanceReady
    from replay.engine import Engine
    from replay.mapping import load_mapping

    run = Run.open(store, name="ec2-source")
    run.append(
        InstanceLaunched(
            call=1, exp="e1", slot="e1.p1.0", instance_id="i-0source", image_id="ami-1",
            instance_type="t3.nano", tags=["master"],
        )
    )  # fmt: skip
    run.append(
        InstanceReady(
            slot="e1.p1.0", instance_id="i-0source", public_address=None,
            private_address="10.0.0.4", private_hostname="ip-10-0-0-4.ec2.internal",
        )
    )  # fmt: skip
    run.finish()
    engine = Engine(
        load_run(run.path), run.digest, targets={"e1": "local"}, mapping=load_mapping(None),
        records=store.root, workdir=tmp_path, max_gap=1, strict=False,
    )  # fmt: skip
    engine.experiments = {"e1": cast(Any, SimpleNamespace(slots={"e1.p1.0": target_slot}))}
    return engine


def test_remapping_puts_each_recorded_value_of_an_instance_in_its_new_form(store, tmp_path):
    local = {"id": "i-new", "tags": ["master"], "public_address": "127.140.0.2",
             "private_address": "127.140.0.2", "public_hostname": "127.140.0.2",
             "private_hostname": "127.140.0.2"}  # fmt: skip
    engine = _remapping_engine(store, tmp_path, local)
    cmd = "ssh i-0source ip-10-0-0-4 ip-10-0-0-4.ec2.internal 10.0.0.4 at 2026-01-02T03:04:05Z"
    # On the local cloud an instance calls itself by its id; its hostnames are its address.
    assert engine._remap(cmd) == ("ssh i-new i-new 127.140.0.2 127.140.0.2 at 2026-01-02T03:04:05Z")
    ec2 = {**local, "private_address": "127.0.0.5", "public_address": "127.0.0.77",
           "public_hostname": None, "private_hostname": "ip-127-0-0-5.ec2.internal"}  # fmt: skip
    engine = _remapping_engine(store, tmp_path, ec2)
    assert engine._remap(cmd) == (
        "ssh i-new ip-127-0-0-5 ip-127-0-0-5.ec2.internal 127.0.0.5 at 2026-01-02T03:04:05Z"
    )
    engine.learned["10.0.0.4"] = "ip-127-0-0-5.ec2.internal"  # learned from a hostname call
    assert engine._remap(["10.0.0.4"]) == ["ip-127-0-0-5.ec2.internal"]


def test_a_source_that_is_not_intact_is_exit_3_before_any_instance_starts(store, capsys):
    source = record_example("hello_world.py", store)
    log = store.root / source / EVENTS
    log.chmod(0o644)
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 1
    log.write_bytes(bytes(data))
    code = replay([source, "--records", str(store.root), "--to", "local"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"run {source} is corrupt, not intact" in err
    assert replay_runs(store, source) == []
    assert list(live_local_instances()) == []


def test_a_file_kept_by_hash_only_is_replayed_from_the_users_copy_or_refused_first(
    store, tmp_path, capsys, local_experiment, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRECIP_TEST_TOKEN", "tok-7654321")
    config = tmp_path / "config.ini"
    config.write_text("token = tok-7654321\n")
    exp = local_experiment("withheld")
    exp.secret("PRECIP_TEST_TOKEN", "tok-7654321")
    exp.provision("default")
    exp.wait()
    exp.put([], "config.ini", "/root/config.ini")
    exp.run([], "sha256sum < /root/config.ini")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    (put,) = events(store, source, "file.put")
    assert put["content"]["withheld"] == "holds secret PRECIP_TEST_TOKEN"

    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert "REPRODUCED: all 5 steps" in out

    config.write_text("token = something-else\n")
    before = {s.instance_id for s in live_local_instances()}
    code = replay([source, "--records", str(store.root), "--to", "local", "--max-gap", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "call #3 e1.put: the recording keeps config.ini by hash only" in err
    assert f"sha256 {put['content']['sha256']} is at {config}" in err
    assert len(replay_runs(store, source)) == 1  # only the first replay's
    assert {s.instance_id for s in live_local_instances()} == before

    # The secret was only ever inside the file: it must be bound again all the same, or the
    # file the replay sends would be stored in its record in clear.
    config.write_text("token = tok-7654321\n")
    monkeypatch.delenv("PRECIP_TEST_TOKEN")
    assert replay([source, "--records", str(store.root), "--to", "local"]) == 2
    assert "PRECIP_TEST_TOKEN" in capsys.readouterr().err
    assert len(replay_runs(store, source)) == 1


def test_calls_that_failed_or_sent_nothing_when_recorded_replay_the_same(
    store, tmp_path, capsys, local_experiment
):
    exp = local_experiment("failures")
    exp.provision("default", tags=["a"])
    exp.wait()
    with pytest.raises(LocalFileMissing):
        exp.put(["a"], tmp_path / "missing.txt", "/tmp/x")
    with pytest.raises(LocalFileMissing):
        exp.copy_and_run(["a"], tmp_path / "nosuch.sh")
    present = tmp_path / "present.txt"
    present.write_text("data\n")
    with pytest.raises(NoInstanceMatches):  # matches nothing: sends nothing, says so
        exp.put(["no-such-tag"], present, "/tmp/present.txt")
    with pytest.raises(CommandFailed):
        exp.run(["a"], "exit 4")
    with pytest.raises(LocalFileMissing):  # no such local directory: the replay has none either
        exp.get(["a"], "/etc/hostname", tmp_path / "no" / "such" / "hostname")
    with pytest.raises(TransferFailed):  # a directory of this machine: nor in the replay
        exp.get(["a"], "/etc/hostname", tmp_path)
    exp.deprovision()
    source = exp.run_id
    finish_run()
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert "REPRODUCED: all 9 steps" in out
    assert "same: no difference after normalisation" in out


def test_a_call_that_matched_nothing_and_finished_when_recorded_replays_the_same(
    store, capsys, local_experiment
):
    from precip_repro.record.payloads import CallFinished, CallStarted
    from precip_repro.session import current_run, session

    exp = local_experiment("old-empty-match")
    exp.provision("default", tags=["a"])
    exp.wait()
    # What versions before NoInstanceMatches recorded for run(["nobody"], …): a call that
    # ran nothing and finished.
    run, number = current_run(), session.next_call()
    assert run is not None
    args = {"tags": ["nobody"], "cmd": "echo never", "user": "root", "check_exit_code": True,
            "timeout": None}  # fmt: skip
    run.append(CallStarted(call=number, exp=exp.exp, method="run", args=args))
    run.append(CallFinished(call=number, result={"exit_codes": []}, duration_ns=1000))
    exp.run(["a"], "echo after")
    exp.deprovision()
    source = exp.run_id
    finish_run()

    code, out = replay_locally(store, source, capsys)

    assert code == 0, out
    assert "REPRODUCED: all 5 steps" in out
    (replayed,) = replay_runs(store, source)
    steps = [e.data for e in LogReader(store.root / replayed / EVENTS) if e.type == "replay.step"]
    empty = next(step for step in steps if step["source_call"] == number)
    assert empty["verdict"] == "identical" and empty["call"] is None  # not called again


@pytest.mark.parametrize(
    "sig, how",
    [(signal.SIGTERM, "by a signal, exit status 143"),
     (signal.SIGKILL, "the recording process was killed")],
)  # fmt: skip
def test_a_run_stopped_mid_call_replays_up_to_that_call(store, tmp_path, capsys, sig, how):
    source = record_stopped(store, tmp_path, sig)
    capsys.readouterr()
    started = time.monotonic()
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert time.monotonic() - started < 20  # the interrupted `sleep 30` was not replayed
    assert f"stopped during call #4 e1.run ({how}" in out
    assert "REPRODUCED: all 3 steps up to call #4, where the recording was stopped" in out


def test_float_timeouts_recorded_as_numbers_replay_as_numbers(
    store, tmp_path, capsys, local_experiment
):
    script = write(tmp_path / "job.sh", "#!/bin/sh\necho job\n")
    exp = local_experiment("floats")
    exp.provision("default")
    exp.wait(timeout=30.5)
    exp.run([], "echo ok", timeout=2.5)
    exp.copy_and_run([], script, timeout=3.5)
    exp.deprovision()
    source = exp.run_id
    finish_run()
    # format v2 keeps a float a number (v1 kept its decimal string, which replay reads too)
    assert events(store, source, "call.started")[1]["args"]["timeout"] == 30.5
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert "REPRODUCED: all 5 steps" in out


def test_a_file_naming_a_source_instance_is_sent_naming_the_replays_instance(
    store, tmp_path, capsys, local_experiment
):
    exp = local_experiment("config-file")
    exp.provision("default", tags=["master"])
    exp.provision("default", tags=["worker"])
    exp.wait()
    (master,) = exp.get_private_hostnames(["master"])
    config = tmp_path / "worker.conf"
    config.write_text(f"MASTER = {master}\n")  # as a script writes a worker's configuration
    exp.put(["worker"], config, "/etc/worker.conf")
    exp.run(["worker"], "cat /etc/worker.conf")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    config.write_text("MASTER = changed on disk since\n")  # the replay sends the record's

    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    (replayed,) = replay_runs(store, source)
    (new_master,) = [
        e["private_address"]
        for e in events(store, replayed, "instance.ready")
        if e["slot"] == "e1.p1.0"
    ]
    assert new_master != master
    (ran,) = [e for e in events(store, replayed, "command.finished") if "worker" in e["cmd"]]
    assert ran["stdout"]["text"] == f"MASTER = {new_master}\n"


def test_a_replay_says_how_the_recording_ended_when_its_script_failed(store, capsys):
    script_failed = """
import sys
from precip_repro import LocalExperiment
exp = LocalExperiment("fails-after")
exp.provision("default")
exp.wait()
exp.run([], "echo done")
sys.exit(3)
"""
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    done = subprocess.run([sys.executable, "-c", script_failed], env=env, capture_output=True)
    assert done.returncode == 3
    (source,) = [p.name for p in store.run_dirs()]
    code, out = replay_locally(store, source, capsys)
    assert code == 0, out
    assert (
        "the recording ended failed: the script exited with status 3; the replay re-executes" in out
    )


def test_binary_output_and_the_clocks_it_prints_reproduce_and_changed_bytes_are_named(
    store, tmp_path, capsys, local_experiment
):
    exp = local_experiment("binary")
    exp.provision("default")
    exp.wait()
    exp.run([], "printf 'ok \\377\\376\\n'; printf '\\000\\001' >&2")  # not UTF-8
    exp.run([], "date; date -R; touch /tmp/f; ls -l /tmp/f")
    exp.run([], "head -c 32 /dev/urandom")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    recorded = events(store, source, "command.finished")
    assert "text" not in recorded[0]["stdout"]  # kept as bytes, not as text
    code, out = replay_locally(store, source, capsys)
    assert code == 1, out
    assert "DIVERGED at 1 step(s): #5 e1.run 'head -c 32 /dev/urandom'" in out
    changed = recorded[2]["stdout"]["sha256"]
    assert f"       stdout e1.p1.0:\n         a: 32 bytes, sha256 {changed}\n" in out
    assert f"      a: 32 bytes, sha256 {changed}\n      b: 32 bytes, sha256 " in out  # the diff


def test_output_piped_into_head_ends_a_plan_quietly_and_a_replay_deprovisioned_saying_why(
    store, tmp_path
):
    source = record_example("hello_world.py", store)
    env = dict(os.environ, PRECIP_RECORDS=str(store.root))
    replay_cli = [sys.executable, "-c", "import sys; from replay.cli import main; sys.exit(main())"]
    for extra, status in ((["--dry-run"], 0), ([], 3)):
        head = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        done = subprocess.run([*replay_cli, source, "--to", "local", "--max-gap", "0", *extra],
                              stdout=head.stdin, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=Path(__file__).parent.parent)  # fmt: skip
        assert head.stdin is not None and head.stdout is not None
        head.stdin.close()
        assert head.stdout.read().decode().startswith(("plan to replay", "replaying"))
        head.wait()
        assert done.returncode == status, done.stderr
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    (replayed,) = replay_runs(store, source)
    assert [s for s in live_local_instances() if s.run == replayed] == []
    (ending,) = [n for n in events(store, replayed, "note") if "ended" in n["fields"]]
    assert ending["text"].startswith("the replay ended with an uncaught BrokenPipeError")
    # Stopped before its last step, it is never called reproduced (ls reads this note).
    verdicts = [n for n in events(store, replayed, "note") if "replay_verdict" in n["fields"]]
    assert all(n["fields"]["replay_verdict"] == "incomplete" for n in verdicts), verdicts


def test_a_read_only_store_is_refused_before_anything_starts_saying_how_to_replay_it(
    store, tmp_path, capsys
):
    source = record_example("hello_world.py", store)
    before = {s.instance_id for s in live_local_instances()}
    with read_only(store.root):
        code = replay([source, "--records", str(store.root), "--to", "local", "--max-gap", "1"])
        err = capsys.readouterr().err
        assert code == 2
        assert f"--records {store.root}: cannot record the replay there" in err
        assert f"precip-replay {store.root / source} --records DIR" in err
        assert {s.instance_id for s in live_local_instances()} == before
        mine = RunStore(tmp_path / "mine")
        code = replay([str(store.root / source), "--records", str(mine.root), "--to", "local",
                       "--max-gap", "1"])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    assert replay_runs(store, source) == [] and len(list(mine.run_dirs())) == 1


def test_json_gives_the_replay_run_its_digest_and_each_steps_verdict_and_differences(
    store, tmp_path, capsys, local_experiment
):
    from tests.documents import valid

    old, new = tmp_path / "v1", tmp_path / "v2"
    for image, version in ((old, "1"), (new, "2")):
        (image / "opt").mkdir(parents=True)
        (image / "opt" / "version").write_text(version + "\n")
    exp = local_experiment("versions")
    exp.provision(str(old))
    exp.wait()
    exp.run([], "cat /opt/version")
    exp.run([], "echo after")
    exp.deprovision()
    source = exp.run_id
    finish_run()
    mapping = write(tmp_path / "map.toml", f'[images]\n"{old}" = "{new}"\n')
    capsys.readouterr()
    code = replay([source, "--records", str(store.root), "--to", "local", "--map",
                   str(mapping), "--max-gap", "1", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    document = valid("replay", out)  # stdout holds the document alone
    assert "DIVERGED at 1 step(s)" in err  # the lines for a person went to stderr
    (replayed,) = replay_runs(store, source)
    assert document["run"] == replayed
    assert document["digest"] == verify(store.root / replayed).digest
    assert document["source"]["run"] == source
    assert document["source"]["digest"] == verify(store.root / source).digest
    assert document["verdict"] == "diverged" and document["exit_status"] == 1
    assert document["targets"] == {"e1": "local"}
    steps = document["steps"]
    assert [s["verdict"] for s in steps] == ["reproduced", "reproduced", "diverged", "reproduced",
                                             "reproduced"]  # fmt: skip
    (found,) = steps[2]["differences"]
    assert (found["kind"], found["a"], found["b"], found["slot"]) == ("stdout", "1\n", "2\n",
                                                                     "e1.p1.0")  # fmt: skip
    # The same differences as the replay's run records in its replay.step events.
    recorded = events(store, replayed, "replay.step")
    assert [s["differences"] for s in recorded] == [s["differences"] for s in steps]
    assert [s["source_call"] for s in recorded] == [s["call"] for s in steps]


def test_json_and_dry_run_together_is_a_usage_error(store, capsys):
    source = record_example("hello_world.py", store)
    code = replay([source, "--records", str(store.root), "--to", "local", "--dry-run", "--json"])
    assert code == 2
    assert "--dry-run" in capsys.readouterr().err
