"""``python -m precip_repro.cli``: the same as ``precip-repro``."""

from __future__ import annotations

import sys

from precip_repro.cli.main import main

sys.exit(main())
