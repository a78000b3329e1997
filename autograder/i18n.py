"""Languages: the course is written once, in English, and translated with gettext catalogs.

English is the source: every message in the code (`_("...")`) and every `{% trans %}` block of
a template is its own msgid. A language's translations are Babel-made gettext catalogs:

    autograder/locale/<lang>/LC_MESSAGES/course.po   what every lab shares: the build's cells, the
                                                     checks' helpers, feedback pages, the README
    autograder/locale/<lang>/LC_MESSAGES/<lab>.po    one lab: its template's prose, its checks' hints

`course build` compiles each `.po` into the `.mo` beside it (Babel, deterministic, committed);
at run time this module reads the `.mo` with the standard library's `gettext` alone, so the
grader and the students' package need no Babel. A lab is translated into a language when its
`.po` is there; where a string has no translation its English stands in.

Which language a message is made in, first match wins: `using(lang)` (the judge, per notebook),
`set_language(lang)` (the `course` command and the grader: course.yml `language`), the
environment's `COURSE_LANGUAGE`, the `locale/LANGUAGE` file a Korean release writes into the
students' package, else English.

Student-safe: imports nothing but the standard library.
"""
from __future__ import annotations

import contextlib
import gettext as _gettext
import os
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

SOURCE = "en"                                 # the language of the msgids
LANGUAGES = {"en": "English", "ko": "한국어"}   # what course.yml `language` and --lang accept
COURSE_DOMAIN = "course"                      # the catalog every lab shares
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
RELEASED = LOCALE_DIR / "LANGUAGE"            # a release's language (only in a students' package)

_current: ContextVar[str | None] = ContextVar("course_language", default=None)
_process: str | None = None


def _known(lang: str | None) -> str | None:
    lang = (lang or "").strip()
    return lang if lang in LANGUAGES else None


@lru_cache(maxsize=1)
def _released() -> str | None:
    try:
        return _known(RELEASED.read_text(encoding="utf-8"))
    except OSError:
        return None


def language() -> str:
    """The language messages are made in now (see the module's docstring)."""
    return (_current.get() or _process or _known(os.environ.get("COURSE_LANGUAGE")) or _released() or SOURCE)


def set_language(lang: str | None) -> None:
    """This process's language (None: back to the environment's, the release's or English)."""
    global _process
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    _process = lang


@contextlib.contextmanager
def using(lang: str | None) -> Iterator[None]:
    """Messages made inside the block are in `lang` (None or an unknown code: unchanged)."""
    token = _current.set(_known(lang) or _current.get())
    try:
        yield
    finally:
        _current.reset(token)


def catalog_path(lang: str, domain: str, suffix: str = ".po") -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}{suffix}"


def translated(lab_id: str, lang: str) -> bool:
    """Whether lab `lab_id` has a catalog in `lang` (English always has it: the source)."""
    return lang == SOURCE or catalog_path(lang, lab_id).is_file() or catalog_path(lang, lab_id, ".mo").is_file()


@lru_cache(maxsize=None)
def translations(lang: str, domain: str = COURSE_DOMAIN) -> _gettext.NullTranslations:
    """The compiled catalog of `domain` in `lang`, falling back to the shared one, then to the
    English msgid (NullTranslations for English, or where no `.mo` is there)."""
    if lang == SOURCE or lang not in LANGUAGES:
        return _gettext.NullTranslations()
    fallback = translations(lang) if domain != COURSE_DOMAIN else _gettext.NullTranslations()
    path = catalog_path(lang, domain, ".mo")
    if not path.is_file():
        return fallback
    with path.open("rb") as f:
        found = _gettext.GNUTranslations(f)
    found.add_fallback(fallback)
    return found


def reload() -> None:
    """Forget the catalogs read so far (after `course build` wrote new ones)."""
    translations.cache_clear()
    _released.cache_clear()


def gettext(message: str) -> str:
    """`message` (a msgid of the shared catalog) in the current language."""
    return translations(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(language()).ngettext(singular, plural, n)


_ = gettext


class Domain:
    """A lab's catalog, for its check module: `_ = Domain("tensors").gettext` makes every
    `_("...")` there a msgid of `tensors.po` (the shared catalog's translation, if it has none)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def gettext(self, message: str) -> str:
        return translations(language(), self.name).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(language(), self.name).ngettext(singular, plural, n)


def lab_title(title: str, lang: str | None = None) -> str:
    """A course.yml title (the course's or a lab's) in `lang` (default: the current language):
    the shared catalog holds them (Babel extracts them from course.yml)."""
    return translations(lang or language()).gettext(title)


def translator(lang: str, domain: str = COURSE_DOMAIN) -> Callable[[str], str]:
    """The gettext of `domain` in `lang`, whatever the current language."""
    return translations(lang, domain).gettext
