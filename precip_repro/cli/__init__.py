"""precip-repro's command line (``precip-repro``): ``console`` is the console script,
``main`` the same for a caller in its own process (it returns the exit status)."""

from __future__ import annotations

from precip_repro.cli.main import console, main

__all__ = ["console", "main"]
