"""Values shared between the delivery and what shows it: status, decisions.

No Home Assistant objects and no behaviour: the coordinator publishes a
``ZevvyStatus``, the send-now action answers with a ``SendResult``, and repair
flows hand the pipeline a ``Decision``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .outbox import QueueView
from .sender import SendError


@dataclass(frozen=True, kw_only=True, slots=True)
class ZevvyStatus:
    """What the entities and diagnostics show: the coordinator's data."""

    connected: bool
    last_success: datetime | None
    last_collect: datetime | None
    last_error: SendError | None
    next_retry: datetime | None
    pending: int
    # Per queue key (a meter's subentry id): what its queue holds, read live
    # (``QueueViews``: each view made when read).
    meters: Mapping[str, QueueView] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    """Outcome of ``async_send_now``: readings sent and what is left."""

    sent: int
    pending: int
    held: int
    rejected: int
    error: SendError | None


class Decision(StrEnum):
    """What the user decided in a repair issue about a queue's readings."""

    ACCEPT_HELD = "accept_held"  # the meter was replaced: send them
    DISCARD_HELD = "discard_held"
    RETRY_REJECTED = "retry_rejected"
    DISCARD_REJECTED = "discard_rejected"
