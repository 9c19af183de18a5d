"""Shared fixtures for the zevvy tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from zevvy_sandbox import SandboxConfig, ZevvySandbox


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/zevvy in every test."""


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    """Sandbox settings for fast tests: short polling interval."""
    return SandboxConfig(interval=0.05)


@pytest.fixture
async def sandbox(
    socket_enabled: None, sandbox_config: SandboxConfig
) -> AsyncGenerator[ZevvySandbox]:
    """Run a zevvy sandbox on a free port of 127.0.0.1 for one test."""
    server = ZevvySandbox(sandbox_config)
    await server.start(host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        await server.stop()
