"""roc-validator, the RO-Crate community's validator, run as its own command: installed in a
virtual environment of its own (``make test`` makes ``.venv-rocv``: it pins rich below what
import-linter needs), offline, in a network namespace of its own (``unshare -n``), from an
HTTP cache seeded with the JSON-LD context the ``rocrate`` package ships — so that a fetch
we did not foresee fails instead of passing silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import rocrate

REPO: Final = Path(__file__).resolve().parents[2]
CONTEXT_URL: Final = "https://w3id.org/ro/crate/1.3/context"
PROFILE: Final = "process-run-crate"


def validator_bin() -> Path:
    """``$PRECIP_ROC_VALIDATOR``, else the checkout's ``.venv-rocv``, else the main
    checkout's (a git worktree shares it), else the PATH's."""
    named = os.environ.get("PRECIP_ROC_VALIDATOR")
    candidates = [Path(named)] if named else []
    candidates.append(REPO / ".venv-rocv" / "bin" / "rocrate-validator")
    common = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if common:
        candidates.append(Path(common).parent / ".venv-rocv" / "bin" / "rocrate-validator")
    on_path = shutil.which("rocrate-validator")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise AssertionError(
        "roc-validator is not installed: `make .venv-rocv/bin/rocrate-validator` (make test "
        "does), or set PRECIP_ROC_VALIDATOR"
    )


def shipped_context() -> Path:
    """The RO-Crate 1.3 JSON-LD context as the ``rocrate`` package ships it."""
    path = Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld"
    assert json.loads(path.read_text())["@id"] == CONTEXT_URL
    return path


def seeded_cache(where: Path) -> Path:
    cache = where / "rocv-cache"
    python = validator_bin().parent / "python"
    subprocess.run(
        [str(python), str(Path(__file__).with_name("seed_cache.py")), str(cache),
         CONTEXT_URL, str(shipped_context())],
        check=True,
    )  # fmt: skip
    return cache


def _command(package: Path, cache: Path, *options: str) -> list[str]:
    return [
        "unshare", "-n",  # no network at all: loopback down, nothing else
        str(validator_bin()), "validate", "-p", PROFILE, "-l", "REQUIRED", "--offline",
        "--cache-path", str(cache), "--no-paging", "-w", "200", *options, str(package),
    ]  # fmt: skip


def validate_json(package: Path, cache: Path, out: Path) -> dict[str, Any]:
    """The validator's JSON report on a package directory."""
    done = subprocess.run(
        _command(package, cache, "-f", "json", "-o", str(out)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.is_file(), done.stdout + done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    report["exit_status"] = done.returncode
    report["log"] = done.stdout + done.stderr
    return report


def validate_text(package: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The validator's text report (its JSON report of a zip fails in roc-validator 0.13:
    "Object of type URI is not JSON serializable")."""
    return subprocess.run(
        _command(package, cache, "--show-skipped-checks"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
