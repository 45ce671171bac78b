"""``python -m precip_repro.cli``: the same as ``precip-repro``."""

from __future__ import annotations

from precip_repro.cli.main import console

console()
