"""A local stand-in for zevvy: identity server (device flow) and measurement API.

Used by the tests over real HTTP and by developers beside a real Home Assistant
(`python -m zevvy_sandbox --port 8765`). Depends only on aiohttp and the stdlib.
"""

from __future__ import annotations

from .models import (
    DEFAULT_SCOPE,
    ConflictMode,
    Fault,
    FaultTarget,
    IssuedTokens,
    RequestRecord,
    SandboxConfig,
    StoredReading,
)
from .server import SandboxError, ZevvySandbox

__all__ = [
    "DEFAULT_SCOPE",
    "ConflictMode",
    "Fault",
    "FaultTarget",
    "IssuedTokens",
    "RequestRecord",
    "SandboxConfig",
    "SandboxError",
    "StoredReading",
    "ZevvySandbox",
]
