"""Checks on a script's arguments: a wrong type is one clear InvalidOption, before anything
is recorded or sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from precip_repro import InvalidOption, arguments
from tests.test_experiment import of_type


@pytest.mark.parametrize("value", ["2", 1.0, True, 0, -3, None])
def test_a_count_must_be_a_whole_number_of_at_least_one(value):
    with pytest.raises(InvalidOption, match=r"count=.* an integer of at least 1"):
        arguments.count("count", value)


def test_a_count_takes_integer_like_values_as_ints():
    class Index:
        def __index__(self) -> int:
            return 3

    assert arguments.count("count", Index()) == 3
    assert arguments.count("count", 2) == 2


@pytest.mark.parametrize("value", ["5", -1, float("nan"), float("inf"), True, None])
def test_a_timeout_must_be_a_finite_number_of_seconds(value):
    with pytest.raises(InvalidOption, match="a number of seconds"):
        arguments.seconds("timeout", value, zero=True)


def test_a_timeout_of_zero_or_none_is_only_taken_where_it_means_something():
    assert arguments.seconds("timeout", 0, zero=True) == 0
    assert arguments.seconds("timeout", None, optional=True) is None
    assert arguments.seconds("timeout", 2.5) == 2.5
    with pytest.raises(InvalidOption, match=r"None \(no limit\), a number of seconds above 0"):
        arguments.seconds("timeout", 0, optional=True)
    with pytest.raises(InvalidOption):
        arguments.seconds("timeout", None)


def test_a_timeout_keeps_the_type_it_was_given_so_the_record_does_too():
    assert type(arguments.seconds("timeout", 600)) is int


@pytest.mark.parametrize("value", [[1], [None], b"a", {"a": 1}, 7, [["a"]]])
def test_tags_must_be_strings(value):
    with pytest.raises(InvalidOption, match=r"tags=.* a list of strings"):
        arguments.tags(value)


def test_tags_take_a_list_a_tuple_a_string_or_none():
    assert arguments.tags(["a", "b"]) == ["a", "b"]
    assert arguments.tags(("a",)) == ["a"]
    assert arguments.tags("a") == ["a"]
    assert arguments.tags(None) == []


def test_script_arguments_given_as_one_string_are_refused_with_the_fix():
    with pytest.raises(InvalidOption, match=r"args='x y' .* shlex.split"):
        arguments.script_args("x y")


def test_script_arguments_take_strings_numbers_and_paths():
    assert arguments.script_args(["a b", 2, 0.5, Path("/x")]) == ["a b", "2", "0.5", "/x"]
    assert arguments.script_args(None) == []
    with pytest.raises(InvalidOption, match=r"not NoneType None"):
        arguments.script_args(["a", None])


def test_a_command_must_be_a_string_and_a_list_gets_a_hint():
    assert arguments.command("") == ""
    with pytest.raises(InvalidOption, match=r"shlex\.join"):
        arguments.command(["echo", "hi"])
    with pytest.raises(InvalidOption, match="a string"):
        arguments.command(b"true")


@pytest.mark.parametrize("value", [None, "", 3])
def test_a_user_or_remote_path_must_be_a_non_empty_string(value):
    with pytest.raises(InvalidOption, match=r"user=.* a non-empty string"):
        arguments.text("user", value)


def test_paths_and_images_take_path_objects_as_strings():
    assert arguments.path("local_path", Path("/tmp/x")) == "/tmp/x"
    assert arguments.image(Path("/srv/image")) == "/srv/image"
    with pytest.raises(InvalidOption, match="'default' or a directory"):
        arguments.image(None)


@pytest.mark.parametrize("value", [0, 65536, "22", True])
def test_a_port_is_an_integer_from_1_to_65535(value):
    with pytest.raises(InvalidOption, match="an integer from 1 to 65535"):
        arguments.port(value)


@pytest.mark.parametrize("value", ["10.0.0.1/8", "10.0.0.0/33", "::/0", 10, "open"])
def test_a_cidr_is_an_ipv4_network_and_the_message_says_what_is_wrong(value):
    with pytest.raises(InvalidOption, match=r"an IPv4 network such as 10.0.0.0/8 \(.+\)"):
        arguments.cidr(value)


def test_protocols_are_listed_when_one_is_unknown():
    with pytest.raises(InvalidOption, match="valid values: tcp, udp"):
        arguments.one_of("protocol", "icmp", arguments.PROTOCOLS)


def test_wrong_arguments_are_refused_before_anything_is_recorded_or_started(local_experiment):
    exp = local_experiment("wrong-arguments")
    refused: list[tuple[str, Any]] = [
        ("provision", lambda: exp.provision("default", count="2")),
        ("provision", lambda: exp.provision(None)),
        ("wait", lambda: exp.wait(timeout="5")),
        ("run", lambda: exp.run([], ["echo", "hi"])),
        ("run", lambda: exp.run([], "true", user=None)),
        ("run", lambda: exp.run([], "true", timeout=0)),
        ("copy_and_run", lambda: exp.copy_and_run([], "/bin/echo", args="x y")),
        ("put", lambda: exp.put([], None, "/tmp/x")),
        ("get", lambda: exp.get([1], "/etc/hostname", "out")),
        ("open_port", lambda: exp.open_port(22, cidr="everyone")),
    ]
    for method, call in refused:
        try:
            call()
        except InvalidOption:
            continue
        pytest.fail(f"{method} took a wrong argument")
    assert of_type(exp.run_path, "call.started") == []
    assert of_type(exp.run_path, "instance.launched") == []
    assert exp.list() == []


def test_options_of_an_experiment_are_checked_when_it_is_made(local_experiment):
    with pytest.raises(InvalidOption, match="boot_max_tries=0"):
        local_experiment("options", boot_max_tries=0)
    with pytest.raises(InvalidOption, match="connect_timeout='10'"):
        local_experiment("options", connect_timeout="10")


def test_wait_without_a_limit_waits_until_the_instances_are_ready(local_experiment):
    exp = local_experiment("no-limit")
    exp.provision("default")
    exp.wait(timeout=None)
    assert exp.run([], "echo up")[1] == ["up\n"]
