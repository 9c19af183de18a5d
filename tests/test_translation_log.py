"""Loading zevvy's texts in every language leaves no error in the log.

zevvy's texts use ICU plurals and choices (the frontend renders them); Home
Assistant's backend checks placeholders with ``str.format`` when it loads texts
again and would log a false "Error while parsing localized string" for each.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
import logging

from homeassistant.core import HomeAssistant
from homeassistant.helpers import translation
from homeassistant.setup import async_setup_component
import pytest

from custom_components.zevvy.translation_log import (
    TRANSLATION_LOGGER,
    IcuParseErrorFilter,
)

from . import icu

CATEGORIES = ("config", "config_subentries", "issues", "exceptions", "entity")


@pytest.fixture(autouse=True)
async def fresh_translations(hass: HomeAssistant) -> AsyncGenerator[None]:
    """Load texts from the files in this test, as Home Assistant does once.

    The test plugin shares one translation cache across the session (loaded
    once); here it starts empty and is put back afterwards.
    """
    await translation.async_get_translations(hass, "en", "title")
    cache = hass.data[translation.TRANSLATION_FLATTEN_CACHE]
    shared = cache.cache_data
    cache.cache_data = type(shared)({}, {})
    yield
    cache.cache_data = shared


async def _load_twice(hass: HomeAssistant) -> None:
    """Load zevvy's texts, then again once more integrations are loaded."""
    for language in icu.LANGUAGES:
        for category in CATEGORIES:
            for integrations in (["zevvy"], ["zevvy", "sensor"], None):
                await translation.async_get_translations(
                    hass, language, category, integrations
                )
    assert await async_setup_component(hass, "sensor", {})
    await hass.async_block_till_done()
    for language in icu.LANGUAGES:
        for category in CATEGORIES:
            await translation.async_get_translations(hass, language, category)


async def test_texts_load_without_errors(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """Every language and category, loaded twice: no error about zevvy."""
    caplog.set_level(logging.ERROR)
    assert await async_setup_component(hass, "zevvy", {})
    await _load_twice(hass)
    assert [r.getMessage() for r in caplog.records if "zevvy" in r.getMessage()] == []


async def test_the_filter_is_what_keeps_the_log_clean(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the filter the same loads log the false error (so the test
    above can fail), and the filter keeps other integrations' errors."""
    logger = logging.getLogger(TRANSLATION_LOGGER)
    ours = [
        f for f in logger.filters if type(f).__name__ == IcuParseErrorFilter.__name__
    ]
    for found in ours:
        logger.removeFilter(found)
    try:
        caplog.set_level(logging.ERROR)
        assert await async_setup_component(hass, "zevvy", {})
        await _load_twice(hass)
        errors = [r.getMessage() for r in caplog.records]
        assert any(
            "Error while parsing localized (de) string component.zevvy." in e
            for e in errors
        )
    finally:
        for found in ours:
            logger.addFilter(found)
    other = logging.LogRecord(
        TRANSLATION_LOGGER,
        logging.ERROR,
        __file__,
        1,
        "Error while parsing localized (%s) string %s",
        ("de", "component.other.config.step.user.description"),
        None,
    )
    assert IcuParseErrorFilter().filter(other)
