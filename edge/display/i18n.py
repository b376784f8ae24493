"""Resident-facing words: gettext catalogues shipped as ``.po`` files, compiled in memory at start.

The catalogues live in ``edge/locale/<lang>/LC_MESSAGES/maskgate.po``. They are read with Babel's
``.po`` reader and compiled to a ``.mo`` in memory (Babel's ``write_mo``, the library equivalent of
``msgfmt``), so the package ships text a translator can edit and there is no build step to forget.
Every string a resident sees or hears is a ``msgid`` in :mod:`edge.display.messages`; a test checks
that both catalogues translate all of them and that nothing else reaches the screen.
"""

from __future__ import annotations

import gettext
import io
import logging
from functools import lru_cache
from pathlib import Path

from edge.errors import ConfigError

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "maskgate"
LANGUAGES = ("en", "zh_CN")


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@lru_cache(maxsize=None)
def translations(language: str) -> gettext.GNUTranslations:
    """The compiled catalogue for ``language`` (one of :data:`LANGUAGES`)."""
    if language not in LANGUAGES:
        raise ConfigError(f"display.language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(language).open("rb") as f:
        catalog = read_po(f, locale=language, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def translator(language: str):
    """``gettext`` for one language: ``tr(msgid) -> str``."""
    return translations(language).gettext
