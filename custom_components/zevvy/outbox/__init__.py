"""Persisted outbox: every reading waits here until zevvy confirmed it.

One outbox per config entry. ``format`` is the storage format (compact series
per queue and their JSON), ``store`` the persistence, ``policy`` what the outbox
accepts (duplicates, drop check, bound), ``core`` the ``Outbox`` itself with
its small read API (counts, ``views``, ``last_delivered``, ``is_waiting``) and
its reports (``OutboxReport``: held, rejected, dropped by the bound, removed).
Readings enter it through the pipeline (``ReadingPipeline.async_accept``).
"""

from .core import (
    Batch,
    BoundWatch,
    Outbox,
    OutboxReport,
    QueueView,
    QueueViews,
    ReportKind,
)
from .format import Destination, Series, is_meter_key, manual_key, meter_series
from .policy import AddResult
from .store import store_kwargs

__all__ = [
    "AddResult",
    "Batch",
    "BoundWatch",
    "Destination",
    "Outbox",
    "OutboxReport",
    "QueueView",
    "QueueViews",
    "ReportKind",
    "Series",
    "is_meter_key",
    "manual_key",
    "meter_series",
    "store_kwargs",
]
