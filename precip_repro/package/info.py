"""What a package says of itself beyond the run: its name, description, license, authors and
date — from options, else the config file ``$PRECIP_HOME/package.toml``, else the run.

::

    # ~/.precip/package.toml: who you are, and the license you publish under
    license = "CC-BY-4.0"          # an SPDX id, or a license's URL
    [[authors]]
    name = "Alice Lab"
    id = "https://orcid.org/0000-0002-1825-0097"   # optional: an ORCID or a web page

The license has no default: a deposit without one cannot be reused, and guessing one for
somebody else's work is not ours to do.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro.exceptions import PackageRefused
from precip_repro.keys import precip_home

__all__ = ["CONFIG", "Author", "PackageInfo", "config_path", "load_info"]

CONFIG: Final = "package.toml"
_SPDX: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")


def config_path() -> Path:
    return precip_home() / CONFIG


@attrs.frozen(kw_only=True)
class Author:
    name: str
    id: str | None = None
    """An ORCID, a web page or a ``mailto:`` URL; None: known by name only."""

    @classmethod
    def parse(cls, text: str) -> Author:
        """``Name`` or ``Name <ORCID-or-URL-or-email>``."""
        found = re.fullmatch(r"\s*(.*?)\s*<\s*([^<>]+?)\s*>\s*", text)
        if found is None:
            return cls(name=text.strip())
        name, ref = found.groups()
        if "@" in ref and ":" not in ref:
            ref = f"mailto:{ref}"
        elif re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]", ref):
            ref = f"https://orcid.org/{ref}"
        return cls(name=name, id=ref)


@attrs.frozen(kw_only=True)
class PackageInfo:
    license: str
    """An SPDX id or a URL."""
    name: str | None = None
    description: str | None = None
    authors: tuple[Author, ...] = ()
    date_published: str | None = None
    """ISO 8601; None: the day the run finished (so that the same run gives the same
    package, byte for byte)."""

    @property
    def license_url(self) -> str:
        if "://" in self.license:
            return self.license
        return f"https://spdx.org/licenses/{self.license}"


def _from_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageRefused(f"cannot read the package config {path}: {exc}", path=path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PackageRefused(f"the package config {path} is not TOML: {exc}", path=path) from exc
    known = {"license", "name", "description", "authors", "date_published"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PackageRefused(
            f"the package config {path} has unknown keys {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(known))})",
            path=path,
        )
    return data


def _authors(raw: Any, path: Path) -> tuple[Author, ...]:
    if not isinstance(raw, list):
        raise PackageRefused(f"authors in {path} must be a list of tables", path=path)
    found = []
    for entry in raw:
        if isinstance(entry, str):
            found.append(Author.parse(entry))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            ref = entry.get("id")
            found.append(Author(name=entry["name"], id=str(ref) if ref else None))
        else:
            raise PackageRefused(
                f'an author in {path} needs a name (name = "…", id = "https://orcid.org/…")',
                path=path,
            )
    return tuple(found)


def load_info(
    *,
    license: str | None = None,
    name: str | None = None,
    description: str | None = None,
    authors: Sequence[str] = (),
    date_published: str | None = None,
    config: Path | None = None,
) -> PackageInfo:
    """Options first, then the config file (``config``, else ``$PRECIP_HOME/package.toml``).
    Raises :class:`PackageRefused` when no license is given either way."""
    path = config if config is not None else config_path()
    if config is not None and not config.is_file():
        raise PackageRefused(f"the package config {config} does not exist", path=config)
    data = _from_file(path)
    chosen = license or data.get("license")
    if not chosen or not isinstance(chosen, str):
        raise PackageRefused(
            f"a package needs a license: give --license SPDX-ID (CC-BY-4.0, MIT, …) or a URL, "
            f'or set license = "…" in {path}'
        )
    if "://" not in chosen and not _SPDX.fullmatch(chosen):
        raise PackageRefused(
            f"license {chosen!r} is neither an SPDX id (CC-BY-4.0, Apache-2.0, …) nor a URL"
        )
    found_authors = (
        tuple(Author.parse(a) for a in authors)
        if authors
        else _authors(data.get("authors", []), path)
    )
    return PackageInfo(
        license=chosen,
        name=name or _text(data, "name", path),
        description=description or _text(data, "description", path),
        authors=found_authors,
        date_published=date_published or _text(data, "date_published", path),
    )


def _text(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PackageRefused(f"{key} in {path} must be a string", path=path)
    return value
