"""The texts as Home Assistant's frontend formats them, in every language.

The frontend formats translations with ICU MessageFormat: a text that does not
parse shows broken in the browser; a placeholder one language lacks is a hole
in a sentence; a plural written as ``{count} readings`` reads "1 readings".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import icu

STRINGS = Path(__file__).parent.parent / "custom_components/zevvy/strings.json"


def test_english_is_strings_json() -> None:
    """en.json is strings.json (no references to resolve)."""
    assert icu.load("en") == json.loads(STRINGS.read_text(encoding="utf-8"))


@pytest.mark.parametrize("language", icu.LANGUAGES)
def test_every_text_formats_with_the_english_placeholders(language: str) -> None:
    """Every text parses and uses exactly the placeholders of the English one."""
    english = icu.strings(icu.load("en"))
    texts = icu.strings(icu.load(language))
    assert texts.keys() == english.keys()
    for path, text in texts.items():
        assert icu.arguments(text) == icu.arguments(english[path]), path


# (text, placeholders, the number's name, {language: (one, two)})
PLURALS = [
    (
        "issues.batch_rejected.fix_flow.step.init.description",
        {"device": "Grid", "register": "Import", "message": "bad"},
        "count",
        {
            "en": ("refused 1 reading of", "refused 2 readings of"),
            "de": ("hat 1 Zählerstand von", "hat 2 Zählerstände von"),
            "fr": ("a refusé 1 relevé de", "a refusé 2 relevés de"),
            "it": ("ha rifiutato 1 lettura di", "ha rifiutato 2 letture di"),
        },
    ),
    (
        "issues.outbox_overflow.fix_flow.step.confirm.description",
        {"limit": "10000"},
        "dropped",
        {
            "en": ("The oldest reading was dropped", "The 2 oldest readings were"),
            "de": ("Der älteste Zählerstand wurde", "Die 2 ältesten Zählerstände"),
            "fr": ("Le relevé le plus ancien a été", "Les 2 relevés les plus anciens"),
            "it": ("La lettura più vecchia è stata", "Le 2 letture più vecchie sono"),
        },
    ),
    (
        "config.progress.wait_for_approval",
        {"url": "https://x", "verification_uri": "https://x", "user_code": "AB"},
        "minutes",
        {
            "en": ("valid for 1 minute.", "valid for 2 minutes."),
            "de": ("ist 1 Minute gültig", "ist 2 Minuten gültig"),
            "fr": ("valable 1 minute.", "valable 2 minutes."),
            "it": ("valido per 1 minuto.", "valido per 2 minuti."),
        },
    ),
]


@pytest.mark.parametrize(("path", "values", "number", "expected"), PLURALS)
@pytest.mark.parametrize("language", icu.LANGUAGES)
def test_plurals_agree_for_one_and_two(
    language: str,
    path: str,
    values: dict[str, str],
    number: str,
    expected: dict[str, tuple[str, str]],
) -> None:
    """1 takes the singular, 2 the plural, in every language."""
    text = icu.lookup(language, path)
    one, two = expected[language]
    assert one in icu.render(language, text, {**values, number: "1"})
    assert two in icu.render(language, text, {**values, number: "2"})
