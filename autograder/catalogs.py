"""The instructor's side of the translations (Babel): compile catalogs, find what is untranslated.

`babel.cfg` (the course root) maps the sources to Babel's extractors: Python (`_("...")`,
`ngettext`), jinja2 (`{% trans %}` blocks, `_()` in templates) and, for course.yml's titles,
`extract_course_yml` below. What goes into which catalog (see autograder.i18n):

    course.po    autograder/*.py, autograder/checks/__init__.py, course.yml
    <lab>.po     reference/notebooks/<lab>.py.j2, autograder/checks/<lab>.py, and the strings of
                 reference/<lab>.py marked `N_("...")`: data of the reference that the template
                 shows as prose, translated where it is shown (`{{ _(bug.symptom) }}`: the
                 debugging lab's table of symptoms); a reference module without marks adds none

`make messages LAB=<lab> TO=<lang>` (or `LAB=course`) runs `pybabel extract` and then
`pybabel init` (a new catalog) or `pybabel update` (an existing one) with these files.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterator

from .i18n import COURSE_DOMAIN, LOCALE_DIR, SOURCE

ROOT = Path(__file__).resolve().parent.parent
ANSWER_KEYWORD = "answer_"      # a template's model answer to a written question (answer_msgids)
PACKAGE = Path(__file__).resolve().parent


def domain_sources(domain: str) -> list[Path]:
    """The files whose msgids make up catalog `domain` (a lab's id, or "course")."""
    if domain == COURSE_DOMAIN:
        return [*sorted(PACKAGE.glob("*.py")), PACKAGE / "checks" / "__init__.py", ROOT / "course.yml"]
    return [ROOT / "reference" / "notebooks" / f"{domain}.py.j2", PACKAGE / "checks" / f"{domain}.py",
            *[p for p in [ROOT / "reference" / f"{domain}.py"] if p.is_file()]]


def extract_course_yml(fileobj: Any, keywords: Any, comment_tags: Any, options: dict) -> Iterator[tuple]:
    """Babel extractor (babel.cfg `[autograder.catalogs.extract_course_yml: course.yml]`): the
    course's title and every lab's, which feedback pages, READMEs and notebooks show."""
    import yaml

    root = yaml.compose(fileobj.read().decode("utf-8"))
    if not isinstance(root, yaml.MappingNode):
        return

    def value(node: yaml.MappingNode, key: str) -> yaml.Node | None:
        return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)

    course = value(root, "course")
    titles = [value(course, "title")] if isinstance(course, yaml.MappingNode) else []
    labs = value(root, "labs")
    for lab in (labs.value if isinstance(labs, yaml.SequenceNode) else []):
        if isinstance(lab, yaml.MappingNode):
            titles.append(value(lab, "title"))
    for node in titles:
        if isinstance(node, yaml.ScalarNode) and node.value:
            yield node.start_mark.line + 1, "_", node.value, []


def read_catalog(path: Path):
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        return read_po(f, abort_invalid=True)


def answer_msgids(domain: str) -> set[str]:
    """The model answers of the lab's written questions: `answer_("...")` in its template. Their
    translations live in its `.po` for the build (the solutions), never in a `.mo`, which ships
    to students and serves the grader."""
    from babel.messages.extract import extract_from_file

    template = ROOT / "reference" / "notebooks" / f"{domain}.py.j2"
    if not template.is_file():
        return set()
    return {message for _line, message, _comments, _context in
            extract_from_file("jinja2", str(template), keywords={ANSWER_KEYWORD: None})}


def compiled(path: Path, answers: bool = False) -> bytes:
    """The `.mo` of the `.po` at `path`, as Babel writes it (fuzzy entries left out: untranslated),
    without the model answers unless `answers` (the build's own translations). The same `.po`
    gives the same bytes."""
    from babel.messages.mofile import write_mo

    catalog = read_catalog(path)
    if not answers:
        for msgid in answer_msgids(path.stem):
            if msgid in catalog:
                del catalog[msgid]
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


def compiled_catalogs(answers: bool = False) -> dict[Path, bytes]:
    """Every catalog's `.mo` path → its bytes, compiled from the `.po` beside it (`compiled`)."""
    return {po.with_suffix(".mo"): compiled(po, answers) for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po"))}


def languages() -> list[str]:
    """English and every language with a catalog, English first."""
    return [SOURCE, *sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir())] \
        if LOCALE_DIR.is_dir() else [SOURCE]


def msgids(paths: list[Path]) -> dict[str, str]:
    """msgid → where it is used, extracted from `paths` with babel.cfg's extractors (a plural
    entry by its singular)."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file
    from babel.messages.frontend import parse_mapping_cfg
    from babel.util import pathmatch

    with (ROOT / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[str, str] = {}
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        pattern, method = next(((p, m) for p, m in method_map if pathmatch(p, rel)), (None, None))
        if method is None:
            continue
        for lineno, message, _comments, _context in extract_from_file(
                method, str(path), keywords={**DEFAULT_KEYWORDS, ANSWER_KEYWORD: None}, options=options_map.get(pattern, {})):
            key = message[0] if isinstance(message, tuple) else message
            found.setdefault(key, f"{rel}:{lineno}")
    return found


def untranslated(lang: str, domain: str) -> dict[str, str]:
    """The msgids of `domain`'s sources with no translation (missing, empty or fuzzy) in the
    `lang` catalog of `domain` or, as a fallback, of the shared one: msgid → where it is used."""
    catalogs = [read_catalog(p) for p in (LOCALE_DIR / lang / "LC_MESSAGES" / f"{d}.po" for d in dict.fromkeys([domain, COURSE_DOMAIN]))
                if p.is_file()]

    def done(msgid: str) -> bool:
        for catalog in catalogs:
            message = catalog.get(msgid)
            if message is None or message.fuzzy:
                continue
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if all(strings):
                return True
        return False
    return {m: where for m, where in msgids(domain_sources(domain)).items() if not done(m)}


def messages(domain: str, lang: str) -> Path:
    """Extract `domain`'s msgids with pybabel (babel.cfg's extractors) and create or update its
    catalog in `lang` (`pybabel update --init-missing`, fuzzy matching on: a changed English
    string keeps its old translation marked fuzzy, which counts as untranslated until a person
    checks it). Returns the `.po`."""
    import tempfile

    from babel.messages.frontend import CommandLineInterface

    from .i18n import LANGUAGES
    if lang == SOURCE or lang not in LANGUAGES:
        raise ValueError(f"not a language to translate into: {lang!r} (known: {', '.join(LANGUAGES)})")
    sources = [str(p.relative_to(ROOT)) for p in domain_sources(domain)]
    with tempfile.TemporaryDirectory(prefix="course-messages-") as tmp:
        pot = str(Path(tmp, f"{domain}.pot"))
        run = CommandLineInterface().run
        run(["pybabel", "-q", "extract", "-F", "babel.cfg", "-k", ANSWER_KEYWORD, "--add-location=file", "--sort-by-file",
             "--project=cnn-course", "-o", pot, *sources])
        run(["pybabel", "-q", "update", "--init-missing", "-i", pot, "-d", str(LOCALE_DIR.relative_to(ROOT)),
             "-D", domain, "-l", lang])
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


if __name__ == "__main__":
    import os
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m autograder.catalogs DOMAIN LANG   (DOMAIN: a lab's id, or `course`)")
    os.chdir(ROOT)                        # babel.cfg's patterns are relative to the course root
    print(messages(sys.argv[1], sys.argv[2]).relative_to(ROOT))
