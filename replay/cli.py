"""``precip-replay`` — placeholder until the replay engine lands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    print(
        "precip-replay: error: replay is not built yet (the record core comes first); "
        "use `precip-repro verify` and `precip-repro show` to audit a run",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
