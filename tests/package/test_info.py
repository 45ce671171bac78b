"""What a package says of itself: options over the config file, and no license guessed."""

from __future__ import annotations

import pytest

from precip_repro.exceptions import PackageRefused
from precip_repro.package.info import Author, load_info


def test_the_config_file_gives_the_license_and_the_authors(precip_home):
    config = precip_home / "package.toml"
    config.write_text(
        'license = "CC-BY-4.0"\n'
        '[[authors]]\nname = "Alice Lab"\nid = "https://orcid.org/0000-0002-1825-0097"\n'
        '[[authors]]\nname = "Bob"\n'
    )
    try:
        info = load_info()
        assert info.license_url == "https://spdx.org/licenses/CC-BY-4.0"
        assert info.authors == (
            Author(name="Alice Lab", id="https://orcid.org/0000-0002-1825-0097"),
            Author(name="Bob"),
        )
        chosen = load_info(license="MIT", authors=["Carol <carol@example.org>"], name="Pool")
        assert chosen.license == "MIT" and chosen.name == "Pool"
        assert chosen.authors == (Author(name="Carol", id="mailto:carol@example.org"),)
    finally:
        config.unlink()


def test_no_license_is_refused_saying_where_to_give_one():
    with pytest.raises(PackageRefused, match="--license"):
        load_info()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Alice", Author(name="Alice")),
        (
            "Alice Lab <0000-0002-1825-009X>",
            Author(name="Alice Lab", id="https://orcid.org/0000-0002-1825-009X"),
        ),
        ("A <https://alice.example>", Author(name="A", id="https://alice.example")),
    ],
)
def test_an_author_option_reads_a_name_and_an_orcid_url_or_email(text, expected):
    assert Author.parse(text) == expected


def test_a_config_with_an_unknown_key_or_a_bad_license_is_refused(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text('licence = "MIT"\n')
    with pytest.raises(PackageRefused, match="unknown keys licence"):
        load_info(config=config)
    with pytest.raises(PackageRefused, match="neither an SPDX id"):
        load_info(license="my license")
