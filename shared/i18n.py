"""Words said in the reader's language: Chinese first for the prefecture's people, English on
request.

Text a person reads is written in English and marked with `_` (gettext's marker, which
`pybabel extract` finds). `_` answers a `Message`: a str (the English text, so logs, tests and
stored records read as before) that also keeps its msgid and parameters, so that it can be said
again in another language by `localize`, from the gettext catalogues in `translations/`
(`messages.pot`, and `zh/LC_MESSAGES/messages.po` compiled to `.mo`; see docs/i18n.md). A
`Text` is several messages said one after another (a plan's reason); `dump` and `load` keep one
in a JSON column. Nothing here imports Flask at import time: the domain modules use `_` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from gettext import NullTranslations
from pathlib import Path
from typing import Any

TRANSLATIONS = Path(__file__).parent / "translations"
LANGUAGES = ("en", "zh")  # English unless the reader prefers Chinese
DEFAULT_LANGUAGE = "en"


class Message(str):
    """English text that remembers how it was made (msgid and parameters)."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, **params: Any) -> Message:
        self = super().__new__(cls, msgid % params if params else msgid)
        self.msgid, self.params = msgid, params
        return self


def _(msgid: str, **params: Any) -> Message:
    return Message(msgid, **params)


# Marshmallow's messages in validation errors, listed here so that `pybabel extract` puts them in
# the catalogue: `localize` finds a plain string by its English text.
LIBRARY_MESSAGES = (
    _("Missing data for required field."),
    _("Unknown field."),
    _("Field may not be null."),
    _("Invalid value."),
    _("Not a valid integer."),
    _("Not a valid number."),
    _("Not a valid string."),
    _("Not a valid boolean."),
    _("Not a valid list."),
    _("Not a valid date."),
    _("Not a valid datetime."),
    _("Not a valid mapping type."),
    _("Invalid input type."),
)


class Text(str):
    """Parts (messages or plain strings) said one after another."""

    parts: tuple[str, ...]

    def __new__(cls, parts: Iterable[str]) -> Text:
        parts = tuple(parts)
        self = super().__new__(cls, "".join(parts))
        self.parts = parts
        return self


def join(parts: Iterable[str], separator: str = "") -> Text:
    out: list[str] = []
    for part in parts:
        if out and separator:
            out.append(separator)
        out.extend(part.parts if isinstance(part, Text) else (part,))
    return Text(out)


def dump(text: str) -> list:
    """A JSON form of `text` that `load` reads back: a list of parts, each a plain string or
    [msgid, {name: value}] with values dumped alike."""
    parts = text.parts if isinstance(text, Text) else (text,)
    return [_dump_part(p) for p in parts]


def _dump_part(part: Any) -> Any:
    if isinstance(part, Text):
        return {"text": dump(part)}
    if isinstance(part, Message):
        return [part.msgid, {k: _dump_part(v) for k, v in part.params.items()}]
    return part if isinstance(part, int | float) or part is None else str(part)


def load(data: list | None) -> Text | None:
    if data is None:
        return None
    return Text(_load_part(p) for p in data)


def _load_part(part: Any) -> Any:
    if isinstance(part, dict) and "text" in part:
        return load(part["text"])
    if isinstance(part, list) and len(part) == 2 and isinstance(part[1], dict):
        return Message(part[0], **{k: _load_part(v) for k, v in part[1].items()})
    return part


@lru_cache(maxsize=8)
def catalogue(language: str) -> NullTranslations:
    """The compiled catalogue of `language` (English is the msgids themselves)."""
    from babel.support import Translations

    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS), [language])


def localize(text: Any, language: str | None = None) -> Any:
    """`text` in `language`; None: the current request's (English outside a request). A plain
    string is looked up as a msgid as it is (titles and constant messages); anything else is
    answered unchanged."""
    if not isinstance(text, str) or not text:
        return text
    return _say(text, catalogue(language or request_language()))


def _say(text: str, translations: NullTranslations) -> str:
    if isinstance(text, Text):
        return "".join(_say(p, translations) for p in text.parts)
    if isinstance(text, Message):
        said = translations.gettext(text.msgid)
        if not text.params:
            return said
        return said % {k: _say(v, translations) if isinstance(v, str) else v
                       for k, v in text.params.items()}
    return translations.gettext(text)


def request_language() -> str:
    """The language the request's Accept-Language prefers among ours; English outside one."""
    from flask import has_request_context

    if not has_request_context():
        return DEFAULT_LANGUAGE
    from flask_babel import get_locale

    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES \
        else DEFAULT_LANGUAGE


def best_language() -> str:
    """Flask-Babel's locale selector: the best of ours for the request's Accept-Language."""
    from flask import request

    for tag, _quality in request.accept_languages:  # best first; zh-CN, zh-Hans are zh
        primary = tag.replace("_", "-").split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def install(app) -> None:
    """Flask-Babel on `app`, choosing the language from Accept-Language (the words come from
    `catalogue`, the same for the CLI and the services)."""
    from flask_babel import Babel

    Babel(app, locale_selector=best_language)


def parse_language(value: str) -> str:
    """A language the CLI accepts (`zh`, `en`, or a locale such as zh_CN.UTF-8)."""
    base = value.replace("-", "_").split("_")[0].split(".")[0].lower()
    if base not in LANGUAGES:
        raise ValueError(f"unknown language {value!r} (use zh or en)")
    return base
