"""Redaction: every value ever registered is hidden, whatever the text around it, and a
record's placeholders are bound back to the values a script saw."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from precip_repro.record.redact import Redactor, credential_variables

# Values and names from alphabets apart, so that no placeholder can spell a value.
VALUES = st.text(alphabet="ABCDEF0123456789", min_size=4, max_size=12)
NAMES = st.from_regex(r"[XYZ][XYZ_]{0,3}", fullmatch=True)
FILLER = st.text(alphabet="abc ./\n", max_size=8)


@given(st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=6), st.data())
def test_no_value_ever_registered_survives_redaction(registered, data):
    redactor = Redactor()
    for name, value in registered:
        redactor.add(name, value)  # a name registered again keeps its earlier value hidden
    pieces = data.draw(st.lists(st.sampled_from([v for _, v in registered]) | FILLER))
    hidden = redactor.text("".join(pieces))
    for _, value in registered:
        assert value not in hidden
    assert redactor.data("".join(pieces).encode()) == hidden.encode()


@given(st.dictionaries(NAMES, VALUES, min_size=1, max_size=5), st.data())
def test_a_redacted_text_is_revealed_as_it_was(secrets, data):
    values = list(secrets.values())
    if any(a != b and a in b for a in values for b in values):
        return  # one value inside another: hidden as the longer, revealed as that
    redactor = Redactor()
    for name, value in secrets.items():
        redactor.add(name, value)
    text = "".join(data.draw(st.lists(st.sampled_from(values) | FILLER)))
    assert redactor.reveal(redactor.text(text)) == text


def test_the_credentials_of_an_environment_are_found_by_their_names():
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AMAZON_EC2_ACCESS_KEY": "AKIAEXAMPLEEXAMPLE",  # the seed's own variable names
        "HF_TOKEN": "hf_0123456789",
        "DB_PASSWORD": "correct horse",
        "RETRY_TOKEN": "1",  # too short: a flag
        "BUILD_TOKEN": "123456789",  # digits only: a number
        "HOME": "/root/with/a/long/path",
        "MY_TOKEN_FILE": "/run/secrets/token",  # not a credential's name
    }
    assert sorted(credential_variables(environ)) == [
        "AMAZON_EC2_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "HF_TOKEN",
    ]
