"""The mapping file (TOML): what the recorded run used → what the replay uses.

::

    [images]                     # every image the run used, when a mapping is given
    "ami-0000004c" = "default"
    [instance_types]             # optional; types not listed map to themselves
    "m1.large" = "t3.large"
    [users]                      # optional
    "ec2-user" = "root"

    [e2.images]                  # the same per experiment; wins over the top level
    "default" = "ami-0abcdef1234567890"

    [e2.cloud]                   # where an EC2-compatible target is
    endpoint = "http://127.0.0.1:5000"   # left out on ec2: AWS's, or AWS_ENDPOINT_URL's
    region = "us-east-1"
    profile = "lab"              # credentials the AWS way: this profile (left out:
                                 # AWS_PROFILE, the AWS_* environment, SSO, a role) …
    # access_key_env = "LAB_KEY_ID"      # … or keys by the names of the environment
    # secret_key_env = "LAB_SECRET"      # variables holding them
    subnet_id = "subnet-0123"
    ssh_address = "private"
    login_user = "ubuntu"        # an image that refuses root: root's calls go through sudo

    [e3.cloud]                   # native OpenStack (--to e3=openstack-native): a clouds.yaml
    cloud = "chameleon"          # entry (left out: the OS_* environment of an openrc file)
    region = "CHI@UC"
    network = "sharednet1"       # optional: the project's only network by default
    floating_network = "public"  # optional: the cloud's only external network by default
    reservation = "…"            # optional: a Chameleon lease's reservation id

A ``[cloud]`` table at the top level applies to every experiment. Errors name the key and
its line, and come before anything is provisioned.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from precip_repro import ExperimentException

__all__ = ["CLOUD_KEYS", "MappingError", "ReplayMapping", "load_mapping"]

SECTIONS: Final = ("images", "instance_types", "users", "cloud")
CLOUD_KEYS: Final = (
    "cloud",
    "endpoint",
    "region",
    "profile",
    "access_key_env",
    "secret_key_env",
    "subnet_id",
    "security_groups",
    "key_name",
    "ssh_address",
    "login_user",
    "floating_addresses",
    "network",
    "floating_network",
    "reservation",
    "address_block",
    "boot_timeout",
    "boot_max_tries",
)
_TEXT_KEYS: Final = frozenset(
    {"endpoint", "region", "profile", "access_key_env", "secret_key_env", "subnet_id", "key_name",
     "login_user", "address_block", "cloud", "network", "floating_network", "reservation"}
)  # fmt: skip
_LIST_KEYS: Final = frozenset({"security_groups", "floating_addresses"})
MAX_MAPPING: Final = 1 << 20
"""The largest mapping file read (bytes): one names a run's images, types and clouds."""
_EXP_RE: Final = re.compile(r"e\d+")


class MappingError(ExperimentException, ValueError):
    """The mapping file is malformed, has an unknown key or misses an image."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path}" + (f", line {line}" if line else "") if path else "mapping"
        super().__init__(f"{where}: {message}")


def _line_of(text: str, key: str, section: str | None) -> int | None:
    """The line where ``key`` is defined (in ``section`` if given), for error messages."""
    lines = text.splitlines()
    start = 0
    if section:
        header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]\s*(#.*)?$")
        start = next((i for i, line in enumerate(lines) if header.match(line)), 0)
    pattern = re.compile(rf'^\s*["\']?{re.escape(key)}["\']?\s*=')
    for index in range(start, len(lines)):
        if pattern.match(lines[index]) or (
            index > start and re.match(rf"^\s*\[.*{re.escape(key)}.*\]", lines[index])
        ):
            return index + 1
    header_only = re.compile(rf"^\s*\[\s*{re.escape(key)}[\].]")
    return next((i + 1 for i, line in enumerate(lines) if header_only.match(line)), None)


@attrs.frozen(kw_only=True)
class ReplayMapping:
    """The parsed mapping; without a file, every value maps to itself."""

    given: bool
    text: str = ""
    path: Path | None = None
    top: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    per_exp: Mapping[str, Mapping[str, Mapping[str, Any]]] = attrs.field(factory=dict)

    def _table(self, exp: str, section: str) -> Mapping[str, Any]:
        merged = dict(self.top.get(section, {}))
        merged.update(self.per_exp.get(exp, {}).get(section, {}))
        return merged

    def image(self, exp: str, image: str) -> str:
        mapped = self._table(exp, "images").get(image)
        return str(mapped) if mapped is not None else image

    def instance_type(self, exp: str, instance_type: str) -> str:
        return str(self._table(exp, "instance_types").get(instance_type, instance_type))

    def user(self, exp: str, user: str) -> str:
        return str(self._table(exp, "users").get(user, user))

    def cloud(self, exp: str) -> dict[str, Any]:
        return dict(self._table(exp, "cloud"))

    def check_images(self, used: Mapping[str, set[str]], experiments: Iterable[str] = ()) -> None:
        """With a mapping file, every image each experiment used must be mapped, and every
        experiment it maps must be one of the run's (a mapping meant for ``e2`` given as
        ``[e3]`` would leave e2 mapped by the top tables alone, unsaid)."""
        if not self.given:
            return
        known = {*used, *experiments}
        for exp in sorted(set(self.per_exp) - known):
            raise MappingError(
                f"[{exp}] maps an experiment the run does not have (it has "
                f"{', '.join(sorted(known, key=lambda e: int(e[1:])))})",
                path=self.path,
                line=_line_of(self.text, exp, None),
            )
        missing = [
            f"{image!r} (used by {exp})"
            for exp, images in sorted(used.items())
            for image in sorted(images)
            if image not in self._table(exp, "images")
        ]
        if missing:
            raise MappingError(
                f"no mapping for image {', '.join(missing)}; add it under [images] (or "
                '[<exp>.images]), e.g. "old" = "new"',
                path=self.path,
                line=None,
            )


def _check_table(value: Any, section: str, text: str, path: Path, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MappingError(
            f"{where} must be a table", path=path, line=_line_of(text, section, None)
        )
    if section == "cloud":
        for key, setting in value.items():
            if key not in CLOUD_KEYS:
                raise MappingError(
                    f"unknown key {key!r} in [{where}]; valid keys: {', '.join(CLOUD_KEYS)}",
                    path=path,
                    line=_line_of(text, key, where),
                )
            wanted = _cloud_value_problem(key, setting)
            if wanted is not None:
                raise MappingError(
                    f"[{where}] {key} = {setting!r} is not valid: it must be {wanted}",
                    path=path,
                    line=_line_of(text, key, where),
                )
        return value
    for key, mapped in value.items():
        if not isinstance(mapped, str):
            raise MappingError(
                f"[{where}] {key!r} must map to a string, not {type(mapped).__name__}",
                path=path,
                line=_line_of(text, key, where),
            )
    return value


def _cloud_value_problem(key: str, value: Any) -> str | None:
    """What a ``[cloud]`` setting must be, when ``value`` is not that (None: it is)."""
    if key in _TEXT_KEYS:
        return None if isinstance(value, str) and value else "a non-empty string"
    if key in _LIST_KEYS:
        ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
        return None if ok else "a list of strings"
    if key == "ssh_address":
        return None if value in ("public", "private") else '"public" or "private"'
    if key == "boot_timeout":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number and 0 < value < float("inf") else "a number of seconds above 0"
    if key == "boot_max_tries":
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and value >= 1 else "an integer of at least 1"
    return None


def load_mapping(path: Path | None) -> ReplayMapping:
    """Read and validate a mapping file (None: every value maps to itself)."""
    if path is None:
        return ReplayMapping(given=False)
    try:
        with path.open("rb") as f:  # a pipe too: --map <(generate-mapping)
            raw = f.read(MAX_MAPPING + 1)
    except OSError as exc:
        raise MappingError(f"cannot read it: {exc.strerror or exc}", path=path) from None
    if len(raw) > MAX_MAPPING:
        raise MappingError(
            f"is larger than {MAX_MAPPING:,} bytes: not a mapping (it names images, instance "
            "types, users and clouds)",
            path=path,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MappingError(
            f"is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); TOML files are "
            "UTF-8: save it as UTF-8",
            path=path,
            line=line,
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise MappingError(
            f"is not valid TOML: {exc}", path=path, line=int(found.group(1)) if found else None
        ) from None
    except RecursionError:
        raise MappingError(
            "nests arrays or tables too deeply to be read: a mapping's values are strings, "
            "numbers and lists of strings",
            path=path,
        ) from None
    top: dict[str, Mapping[str, Any]] = {}
    per_exp: dict[str, dict[str, Mapping[str, Any]]] = {}
    for key, value in data.items():
        if key in SECTIONS:
            top[key] = _check_table(value, key, text, path, key)
        elif _EXP_RE.fullmatch(key) and isinstance(value, dict):
            per_exp[key] = {}
            for section, table in value.items():
                if section not in SECTIONS:
                    raise MappingError(
                        f"unknown key {key}.{section!r}; valid: {', '.join(SECTIONS)}",
                        path=path,
                        line=_line_of(text, f"{key}.{section}", None)
                        or _line_of(text, section, None),
                    )
                per_exp[key][section] = _check_table(table, section, text, path, f"{key}.{section}")
        else:
            raise MappingError(
                f"unknown key {key!r}; valid: {', '.join(SECTIONS)} or an experiment (e1, e2 …)",
                path=path,
                line=_line_of(text, key, None),
            )
    return ReplayMapping(given=True, text=text, path=path, top=top, per_exp=per_exp)
