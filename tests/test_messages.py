"""What a run did, shown in messages: readable at any length."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from precip_repro.messages import SHOWN_COMMAND, shown_command, shown_difference


@given(st.text(max_size=2000))
def test_a_command_shown_in_a_message_is_whole_when_short_and_head_and_tail_when_long(cmd):
    shown = shown_command(cmd)
    if len(cmd) <= SHOWN_COMMAND:
        assert shown == repr(cmd)
    else:
        head, _, rest = shown.partition(" …")
        count, _, tail = rest.partition(" characters… ")
        kept = eval(head) + eval(tail)  # reprs of str, made just above
        assert cmd.startswith(eval(head)) and cmd.endswith(eval(tail))
        assert len(kept) + int(count.replace(",", "")) == len(cmd)
        assert len(shown) < 4 * SHOWN_COMMAND + 60


@given(st.text(max_size=1500), st.text(min_size=1, max_size=3), st.text(max_size=1500))
def test_two_texts_are_shown_around_their_first_difference(common, changed, rest):
    a, b = common + rest, common + changed + rest
    shown_a, shown_b = shown_difference(a, b)
    if len(a) <= SHOWN_COMMAND and len(b) <= SHOWN_COMMAND:
        assert (shown_a, shown_b) == (repr(a), repr(b))
        return
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    assert repr(b[at])[1:-1] in shown_b  # the first character that differs is in sight
    assert len(shown_a) < 4 * SHOWN_COMMAND and len(shown_b) < 4 * SHOWN_COMMAND
    if at > SHOWN_COMMAND:
        assert shown_a.startswith("…") and shown_b.startswith("…")


def test_short_texts_that_differ_are_shown_whole():
    assert shown_difference("echo a", "echo b") == ("'echo a'", "'echo b'")
