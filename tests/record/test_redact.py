"""Redaction: every value ever registered is hidden, whatever the text around it, and a
record's placeholders are bound back to the values a script saw."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from precip_repro.record.redact import PRIVATE_KEY, Redactor, credential_variables

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


KINDS = st.sampled_from(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "DSA "])
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
BODY = st.lists(st.text(alphabet=BASE64, min_size=8, max_size=64), min_size=1, max_size=5)


AROUND = st.text(alphabet=" .:#\n", max_size=8)  # no base64 character: it cannot spell the key


@given(KINDS, BODY, AROUND, AROUND, st.booleans())
@example("", ["withheld"], "", "", False)  # a body line that is a word of the placeholder
def test_a_private_key_in_output_keeps_its_armour_and_loses_its_body(
    kind, body, before, after, cut
):
    block = f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(body) + "\n"
    if not cut:  # `head -3 id_rsa` cuts it short of its last line: hidden all the same
        block += f"-----END {kind}PRIVATE KEY-----"
    text = before + block + ("" if cut else after)
    hidden = Redactor().text(text)
    # What is left besides the armour and the placeholder (a body line may be a word of
    # theirs, as "withheld" is) must hold no line of the body.
    rest = hidden
    for kept in (f"-----BEGIN {kind}PRIVATE KEY-----", "${private key withheld}",
                 f"-----END {kind}PRIVATE KEY-----"):  # fmt: skip
        rest = rest.replace(kept, "")
    for line in body:
        assert line not in rest
    assert f"-----BEGIN {kind}PRIVATE KEY-----\n${{private key withheld}}\n" in hidden
    assert hidden.startswith(before) and hidden.endswith("" if cut else after)
    assert Redactor().data(text.encode()) == hidden.encode()


@given(KINDS, BODY, st.integers(min_value=1, max_value=200))
def test_a_file_holding_a_private_key_is_found_across_chunk_boundaries(kind, body, size):
    content = ("x" * 50 + f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(body)).encode()
    scanner = Redactor().scanner()
    for start in range(0, len(content), size):
        scanner.feed(content[start : start + size])
    assert scanner.found == PRIVATE_KEY and scanner.reason == "holds a private key"
    clean = Redactor().scanner()
    clean.feed(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 a public key is no secret\n")
    assert clean.found is None
    putty = Redactor().scanner()
    content = b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"
    for start in range(0, len(content), size):
        putty.feed(content[start : start + size])
    assert putty.found == PRIVATE_KEY


@given(VALUES, FILLER, FILLER, st.integers(min_value=1, max_value=30))
def test_a_registered_secret_is_found_in_a_stream_whatever_its_chunks(secret, before, after, size):
    redactor = Redactor()
    redactor.add("X", secret)
    content = (before + secret + after).encode()
    scanner = redactor.scanner()
    for start in range(0, len(content), size):
        scanner.feed(content[start : start + size])
    assert scanner.found == "X" and scanner.reason == "holds secret X"


def test_redacting_twice_leaves_placeholders_whole_even_when_a_secret_is_part_of_one():
    from precip_repro.record.redact import Redactor

    redactor = Redactor()
    redactor.add("DB_PASSWORD", "secret")
    once = redactor.text("mysql -psecret")
    assert once == "mysql -p${secret:DB_PASSWORD}"
    assert redactor.text(once) == once
    assert redactor.data(once.encode()) == once.encode()


def test_an_events_schema_keys_and_hashes_stay_as_written_its_free_form_keys_do_not():
    from precip_repro.record.redact import Redactor

    redactor = Redactor()
    redactor.add("WORD", "exit")
    redactor.add("YEAR", "2024")
    data = {"exit_code": 3, "cmd": "exit 3", "git_commit": "ab2024cd", "fields": {"exit": 1},
            "content": {"sha256": "2024" * 16, "size": 1}}  # fmt: skip
    assert redactor.payload(data) == {
        "exit_code": 3,
        "cmd": "${secret:WORD} 3",
        "git_commit": "ab2024cd",
        "fields": {"${secret:WORD}": 1},
        "content": {"sha256": "2024" * 16, "size": 1},
    }
