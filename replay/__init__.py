"""precip-replay: re-execute a recorded run on another cloud and check it step by step.

Imports only precip_repro's public API. The engine arrives with its own issue; until then
the command says so and exits with status 2.
"""

from __future__ import annotations
