"""Where ``copy_and_run`` puts a script on an instance: a temporary path of one shape.

Every run's are of this shape, so they normalise to ``{tmp}`` in any text — a script
printing its own path (``$0``) reads the same in a rerun or a replay — and readers can show
the script by its name instead (``show``, ``report``, ``diff``).
"""

from __future__ import annotations

import re
import secrets
from pathlib import PurePath
from typing import Final

__all__ = ["TEMP_PATH", "TEMP_PREFIX", "by_name", "temp_script_path"]

TEMP_PREFIX: Final = "/tmp/precip-exec."
TEMP_PATH: Final = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{12}")


def temp_script_path() -> str:
    """A fresh path on an instance for ``copy_and_run``'s script."""
    return f"{TEMP_PREFIX}{secrets.token_hex(6)}"


def by_name(cmd: str, local_script: object) -> str:
    """A ``copy_and_run`` command line with the script's temporary path shown as the name of
    the local script it was copied from (``sweep.sh 1000``, not ``/tmp/precip-exec.… 1000``)."""
    if not isinstance(local_script, str) or not cmd.startswith(TEMP_PREFIX):
        return cmd
    return TEMP_PATH.sub(PurePath(local_script).name, cmd, count=1)
