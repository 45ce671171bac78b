"""Where an instance answers ssh, and whom its sessions run as inside."""

from __future__ import annotations

import attrs

__all__ = ["Endpoint"]


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where an instance answers ssh."""

    instance_id: str
    slot: str
    host: str
    port: int = 22
    session_user: str | None = None
    """Whom every session runs as inside, whatever account logs in (an ordinary user's
    local instance: root): the user messages name."""
    denied_hint: str | None = None
    """Added to a transfer refused for want of permission (see ``Cloud.denied_hint``)."""
