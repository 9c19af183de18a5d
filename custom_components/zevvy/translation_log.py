"""Keep Home Assistant's log free of a false error about zevvy's texts.

Texts with a count or a choice use ICU message syntax (``{count, plural, one
{...} other {...}}``, ``{x, select, ...}``), which Home Assistant's frontend
renders in the reader's language. The backend checks the placeholders of a
translation again when it loads the same texts a second time, with Python's
``str.format`` parser, which cannot read ICU messages: it logs "Error while
parsing localized (de) string component.zevvy..." and keeps the text unchanged.
The text is right, the error is not: this filter drops exactly those records,
for zevvy's keys only.
"""

from __future__ import annotations

import logging
from typing import Final

TRANSLATION_LOGGER: Final = "homeassistant.helpers.translation"
_MESSAGE: Final = "Error while parsing localized (%s) string %s"
_PREFIX: Final = "component.zevvy."


class IcuParseErrorFilter(logging.Filter):
    """Drop the translation loader's parse error for zevvy's ICU texts."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for the false parse error of a zevvy text."""
        args = record.args
        return not (
            record.msg == _MESSAGE
            and isinstance(args, tuple)
            and len(args) == 2
            and str(args[1]).startswith(_PREFIX)
        )


def install() -> None:
    """Add the filter to the translation loader's logger (once)."""
    logger = logging.getLogger(TRANSLATION_LOGGER)
    # By name: the module may be imported again (a reloaded custom integration).
    if not any(
        type(f).__name__ == IcuParseErrorFilter.__name__ for f in logger.filters
    ):
        logger.addFilter(IcuParseErrorFilter())
