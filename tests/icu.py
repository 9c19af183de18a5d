"""Render the integration's texts as Home Assistant's frontend does, for tests.

The frontend formats every translated text with ICU MessageFormat
(``intl-messageformat``): ``{name}`` arguments, ``{n, plural, =0 {...} one {...}
other {...}}`` with ``#`` for the number, and ``{key, select, a {...} other
{...}}``. This is the subset the integration's strings use, enough to render a
flow step, a repair or a notification in each language and look at what a
person reads. Unknown constructs raise, so a typo in a translation fails here
as it would show a broken text in the browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import json
from pathlib import Path
import re
from typing import Any

TRANSLATIONS = Path(__file__).parent.parent / "custom_components/zevvy/translations"
LANGUAGES = ("en", "de", "fr", "it")
_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")


def load(language: str) -> dict[str, Any]:
    """Return a language's translation file."""
    data: dict[str, Any] = json.loads(
        (TRANSLATIONS / f"{language}.json").read_text(encoding="utf-8")
    )
    return data


def lookup(language: str, path: str) -> str:
    """Return the text at a dotted path (``config.step.meters.description``)."""
    node: Any = load(language)
    for part in path.split("."):
        node = node[part]
    assert isinstance(node, str), path
    return node


def plural_category(language: str, number: float) -> str:
    """Return the CLDR plural category (cardinal) of a number."""
    if language == "fr":
        return "one" if 0 <= number < 2 and number == int(number) else "other"
    return "one" if number == 1 else "other"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def message(self, end: str | None = None) -> list[Any]:
        """Parse until ``end`` (a closing brace) or the end of the text."""
        parts: list[Any] = []
        literal = ""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "}" and end is not None:
                break
            if char == "}":
                raise ValueError(f"unbalanced }} at {self.pos}: {self.text!r}")
            if char == "{":
                if literal:
                    parts.append(literal)
                    literal = ""
                parts.append(self.argument())
                continue
            if char == "'" and self.text[self.pos + 1 : self.pos + 2] in ("{", "}"):
                raise ValueError(f"quoted brace at {self.pos}: {self.text!r}")
            literal += char
            self.pos += 1
        if end is not None and self.pos >= len(self.text):
            raise ValueError(f"missing }} in {self.text!r}")
        if literal:
            parts.append(literal)
        return parts

    def argument(self) -> tuple[Any, ...]:
        self.pos += 1  # {
        close = self.text.find("}", self.pos)
        comma = self.text.find(",", self.pos)
        if comma == -1 or comma > close:
            name = self.text[self.pos : close].strip()
            if not re.fullmatch(r"\w+", name):
                raise ValueError(f"bad argument {name!r} in {self.text!r}")
            self.pos = close + 1
            return ("arg", name)
        name = self.text[self.pos : comma].strip()
        second = self.text.find(",", comma + 1)
        kind = self.text[comma + 1 : second].strip()
        if kind not in ("plural", "select"):
            raise ValueError(f"unsupported {kind!r} in {self.text!r}")
        self.pos = second + 1
        options: dict[str, list[Any]] = {}
        while True:
            while self.text[self.pos].isspace():
                self.pos += 1
            if self.text[self.pos] == "}":
                self.pos += 1
                break
            brace = self.text.index("{", self.pos)
            key = self.text[self.pos : brace].strip()
            self.pos = brace + 1
            options[key] = self.message(end="}")
            self.pos += 1  # }
        if "other" not in options:
            raise ValueError(f"{kind} without other in {self.text!r}")
        return (kind, name, options)


def parse(text: str) -> list[Any]:
    """Parse a text; raise ValueError if the frontend could not format it."""
    return _Parser(text).message()


def arguments(text: str) -> set[str]:
    """Return the names of every argument a text uses (also nested ones)."""
    names: set[str] = set()

    def walk(parts: list[Any]) -> None:
        for part in parts:
            if isinstance(part, tuple):
                names.add(part[1])
                if part[0] != "arg":
                    for option in part[2].values():
                        walk(option)

    walk(parse(text))
    return names


def render(language: str, text: str, values: Mapping[str, Any]) -> str:
    """Format a text with the placeholders, like ``hass.localize`` does."""

    def walk(parts: list[Any], number: float | None) -> str:
        out = ""
        for part in parts:
            if isinstance(part, str):
                out += part if number is None else part.replace("#", f"{number:g}")
            elif part[0] == "arg":
                out += str(values[part[1]])
            elif part[0] == "select":
                options = part[2]
                out += walk(options.get(str(values[part[1]]), options["other"]), None)
            else:
                count = float(values[part[1]])
                options = part[2]
                exact = f"={count:g}"
                chosen = (
                    options[exact]
                    if exact in options
                    else options.get(plural_category(language, count), options["other"])
                )
                out += walk(chosen, count)
        return out

    return walk(parse(text), None)


def strings(node: Any, prefix: str = "") -> dict[str, str]:
    """Return every text of a translation file by dotted path."""
    if isinstance(node, str):
        return {prefix: node}
    found: dict[str, str] = {}
    for key, value in node.items():
        found.update(strings(value, f"{prefix}.{key}" if prefix else key))
    return found


def english_only_words(language: str) -> set[str]:
    """Return the words of en.json that the other language does not use.

    Such a word in a text shown in that language is English leaking in.
    """

    def words(texts: dict[str, str]) -> set[str]:
        return {
            word.casefold()
            for text in texts.values()
            for word in _WORD.findall(text)
            if len(word) > 2
        }

    return words(strings(load("en"))) - words(strings(load(language)))


def leaked_english(language: str, text: str, user_data: Iterable[str] = ()) -> set[str]:
    """Return the English words (of en.json) in a text shown in ``language``.

    Words of ``user_data`` (names the user chose, such as a register "Import")
    do not count.
    """
    english = english_only_words(language)
    own = {word.casefold() for data in user_data for word in _WORD.findall(data)}
    return {
        word
        for word in _WORD.findall(text)
        if word.casefold() in english and word.casefold() not in own
    }
