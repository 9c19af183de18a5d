"""The zevvy integration: Home Assistant as a meter-reading gateway for zevvy."""

from __future__ import annotations
