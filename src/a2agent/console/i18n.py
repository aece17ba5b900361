"""Console languages: English (the source strings) and Simplified Chinese.

Templates use Jinja's i18n extension (``{% trans %}``, ``_()``); the catalogues are Babel
``.po`` files under ``console/locales`` (extract with ``pybabel extract -F babel.cfg``), read
and compiled in memory once per process. The language is, in order: the switcher's choice
(a cookie, and the signed-in account's saved preference), then the browser's
``Accept-Language``, then English.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import pass_context

LOCALES = {"en": "English", "zh-CN": "简体中文"}
HTML_LANG = {"en": "en", "zh-CN": "zh-Hans"}
_CATALOGUE = {"zh-CN": "zh_CN"}
DEFAULT = "en"
COOKIE = "a2a_lang"
LOCALE_DIR = Path(__file__).parent / "locales"


@functools.cache
def translations(locale: str) -> NullTranslations:
    folder = _CATALOGUE.get(locale)
    if folder is None:
        return NullTranslations()
    path = LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as f:
        catalog = read_po(f, locale=folder)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def normalize(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().replace("_", "-")
    for code in LOCALES:
        if value.lower() == code.lower():
            return code
    if value.lower().startswith("zh"):
        # Simplified Chinese for zh, zh-CN, zh-Hans, zh-SG; traditional variants read it too
        return "zh-CN"
    if value.lower().startswith("en"):
        return "en"
    return None


def from_accept_language(header: str | None) -> str | None:
    """The best of our languages for an ``Accept-Language`` header (quality order)."""
    if not header:
        return None
    wanted: list[tuple[float, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            wanted.append((-q + i * 1e-6, tag.strip()))
    for _, tag in sorted(wanted):
        if tag == "*":
            return DEFAULT
        found = normalize(tag)
        if found:
            return found
    return None


def pick(cookie: str | None, saved: str | None, accept_language: str | None) -> str:
    return normalize(cookie) or normalize(saved) or from_accept_language(accept_language) or DEFAULT


@pass_context
def gettext(ctx: Any, message: str) -> str:
    return translations(ctx.get("locale") or DEFAULT).gettext(message)


@pass_context
def ngettext(ctx: Any, singular: str, plural: str, n: int) -> str:
    return translations(ctx.get("locale") or DEFAULT).ngettext(singular, plural, n)


def gettext_for(locale: str) -> Any:
    """A plain ``_`` for Python code (flash messages) in one language."""
    return translations(locale).gettext


def for_request(request: Any, saved: str | None) -> Any:
    """``_`` in the language of this request (``saved``: the viewer's stored choice)."""
    return gettext_for(pick(request.cookies.get(COOKIE), saved,
                            request.headers.get("accept-language")))

