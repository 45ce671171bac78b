"""precip-repro's command line (``precip-repro``): ``main`` is the console script."""

from __future__ import annotations

from precip_repro.cli.main import main

__all__ = ["main"]
