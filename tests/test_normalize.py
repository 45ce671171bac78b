"""Volatile values become stable names; one piece of code for diff and replay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from precip_repro.normalize import Normalizer, instance_names, temp_script_path

EC2 = instance_names(
    "e1.p1.0",
    ["i-0abc"],
    public_address="127.0.0.77",
    private_address="127.0.0.4",
    public_hostname=None,
    private_hostname="ip-127-0-0-4.ec2.internal",
)


def test_ids_addresses_and_hostnames_become_names_of_their_slot():
    norm = Normalizer.from_names(EC2)
    text = "i-0abc at 127.0.0.4 / 127.0.0.77 is ip-127-0-0-4.ec2.internal"
    assert norm.text(text) == (
        "{e1.p1.0} at {e1.p1.0.private_address} / {e1.p1.0.public_address} is "
        "{e1.p1.0.private_hostname}"
    )


def test_the_short_hostname_is_the_slot_like_the_id():
    assert Normalizer.from_names(EC2).text("ip-127-0-0-4\n") == "{e1.p1.0}\n"


def test_an_address_is_not_found_inside_a_longer_one():
    norm = Normalizer.from_names(EC2)
    assert norm.text("127.0.0.45 and 127.0.0.4:22") == "127.0.0.45 and {e1.p1.0.private_address}:22"


def test_a_local_instance_whose_hostname_is_its_address_has_one_name():
    names = instance_names(
        "e1.p1.0", ["i-1"], public_address="127.130.0.2", private_address="127.130.0.2",
        public_hostname="127.130.0.2", private_hostname="127.130.0.2",
    )  # fmt: skip
    assert names == {"i-1": "{e1.p1.0}", "127.130.0.2": "{e1.p1.0.address}"}


def test_timestamps_become_one_name_and_substitute_leaves_them():
    norm = Normalizer.from_names(EC2)
    text = "at 2026-11-25T05:57:22.038214Z on 127.0.0.4"
    assert norm.text(text) == "at {timestamp} on {e1.p1.0.private_address}"
    assert norm.substitute(text, lambda value, name: name.upper()) == (
        "at 2026-11-25T05:57:22.038214Z on {E1.P1.0.PRIVATE_ADDRESS}"
    )


@pytest.mark.parametrize(
    "printed, normalised",
    [
        ("Wed Nov 25 14:19:16 UTC 2026\n", "{timestamp}\n"),  # date
        ("Wed Nov  5 14:19:16 2026 ok", "{timestamp} ok"),  # ctime
        ("-rw-r--r-- 1 root 9 Nov 25 14:19 /x\n", "-rw-r--r-- 1 root 9 {timestamp} /x\n"),
        ("Nov  5 14:19:16 host sshd[41]: up", "{timestamp} host sshd[41]: up"),  # syslog
        ("Wed, 25 Nov 2026 14:19:16 +0000", "{timestamp}"),  # date -R
        ("Nov 25 14:19 UTC", "{timestamp} UTC"),  # a zone is taken only with a year after it
        ("-rw-r--r-- 1 root 9 Nov 25  2025 old\n", "-rw-r--r-- 1 root 9 Nov 25  2025 old\n"),
        ("Novel 25 12:00, ratio 3:4", "Novel 25 12:00, ratio 3:4"),
    ],
)  # fmt: skip
def test_clock_times_in_the_forms_common_tools_print_are_timestamps(printed, normalised):
    assert Normalizer.from_names(EC2).text(printed) == normalised
    assert Normalizer.from_names({}).text(printed) == normalised  # the quick path too


def test_the_tools_temporary_paths_become_tmp_wherever_they_appear():
    norm = Normalizer.from_names(EC2)
    path = temp_script_path()
    assert path != temp_script_path()
    text = f"{path}: 7: 2: parameter not set\n"  # a script's error naming itself ($0)
    assert norm.text(text) == "{tmp}: 7: 2: parameter not set\n"
    assert norm.substitute(text, lambda value, name: "X") == text  # replay keeps its own
    assert norm.text("/tmp/precip-exec.notmine") == "/tmp/precip-exec.notmine"


_TOKENS = st.sampled_from(
    [
        "/tmp/precip-exec.0123456789ab",
        "i-0abc",
        "127.0.0.4",
        "127.0.0.45",
        "ip-127-0-0-4",
        "x",
        " ",
        "-",
        ":",
        ".",
        "2026-01-02 03:04:05",
    ]
)


@given(st.lists(_TOKENS, max_size=12).map("".join), st.integers(min_value=0, max_value=30))
def test_the_quick_path_and_the_pattern_agree(text, padding):
    # Up to 16 names a text is first searched for each name; past that only the pattern
    # runs. Unrelated names in between must not change the result.
    few = Normalizer.from_names(EC2)
    many = Normalizer.from_names(
        {**EC2, **{f"i-unrelated{n:04d}": f"{{e9.p1.{n}}}" for n in range(padding + 16)}}
    )
    assert few.text(text) == many.text(text)
