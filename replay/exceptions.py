"""Why a replay stops before its end."""

from __future__ import annotations

from precip_repro import ExperimentException

__all__ = ["ReplayFailed"]


class ReplayFailed(ExperimentException):
    """The replay could not go on: a usage problem (``usage``) or the target cloud failed."""

    def __init__(self, message: str, *, usage: bool) -> None:
        self.usage = usage
        super().__init__(message)
