"""What ran besides the calls: the experiment script and the modules of its own it
imported — told apart from what is installed in the interpreter (a notebook's kernel
launcher, pytest, libraries), which the record does not hold."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["installed", "is_users_script", "local_modules"]


def installed(path: Path) -> bool:
    """Whether ``path`` belongs to the interpreter's installation (a virtualenv included)."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return (
        "site-packages" in path.parts
        or "dist-packages" in path.parts
        or any(path.is_relative_to(p) for p in prefixes)
    )


def is_users_script(argv0: Path) -> bool:
    """Whether the program that runs is the user's experiment script — not an installed
    tool that runs their code (a notebook's ``ipykernel_launcher.py``, pytest, IPython):
    recording that as "the script" would mislead whoever reads the record."""
    return argv0.is_file() and not installed(argv0.resolve())


def local_modules(script: Path) -> list[tuple[str, Path]]:
    """The modules loaded from files beside ``script`` or below its directory (the
    experiment's own: ``from helper import …``), by name — not the script itself, not
    precip-repro, nor anything installed in the interpreter's prefix (a virtualenv kept
    in the project's directory included)."""
    script = script.resolve()
    home = script.parent
    found: dict[str, Path] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or name == "__main__":
            continue
        if name.partition(".")[0] in ("precip_repro", "replay"):
            continue
        path = Path(file).resolve()
        if path.suffix != ".py" or path == script or not path.is_relative_to(home):
            continue
        if installed(path):
            continue
        found[name] = path
    return sorted(found.items())
