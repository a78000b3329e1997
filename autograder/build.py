"""`course build`: templates + reference → source notebooks → nbgrader → solutions/ and exercises/.

A template (`reference/notebooks/<lab>.py.j2`) is jinja2 over a percent-format script; its
helpers pull code from `reference.<lab>` so no code is written twice (see
reference/notebooks/README.md). The rendered source notebook carries nbgrader schema-3
metadata and is written to `solutions/`; nbgrader's own GenerateAssignment turns it into the
student notebook in `exercises/`. Everything is deterministic, so `--check` can name stale files.

Every language is built from the same template: its prose is in `{% trans %}` blocks (jinja2's
i18n extension), translated through the gettext catalogs of autograder/locale (compiled here
into the `.mo` files the grader reads; see autograder.i18n). A translation's notebooks live
under `<language>/` (`ko/solutions/<lab>/<lab>.ipynb`), English's where they always were; the
cells, grade ids and code of every language are the same, only prose differs.
"""
from __future__ import annotations

import ast
import copy
import functools
import gettext as _gettext
import importlib
import inspect
import io
import json
import os
import re
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jinja2
import nbformat
import yaml

from .config import Course, CourseError, Lab
from .i18n import COURSE_DOMAIN, SOURCE

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "reference" / "notebooks"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GLOSSARY = TEMPLATE_DIR / "glossary.yml"
_HEADER = re.compile(r"^# %%(?: \[(?P<kind>markdown|solution|check|answer|written)\])?(?: id=(?P<id>[\w-]+))?\s*$")
# An answer cell may carry a starter: the code its exercise version starts with instead of
# nbgrader's "# YOUR CODE HERE" stub (a debugging lab hands out broken code to fix).
_STARTER = re.compile(r"^### BEGIN STARTER\n(?P<code>.*?)\n### END STARTER$", re.M | re.S)


# ---------------------------------------------------------------- code pulled from the reference
def _solution_regions(src: str) -> list[tuple[int, int]]:
    """Line ranges [start, end) of the bodies (after any docstring) of a function, or of every
    method of a class, in dedented source `src`."""
    node = ast.parse(src).body[0]
    funcs = [node] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else [
        n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    regions = []
    for f in funcs:
        body = f.body
        if ast.get_docstring(f) is not None:
            start, body = body[0].end_lineno, body[1:]
        else:
            start = body[0].lineno - 1
        if body:
            regions.append((start, f.end_lineno))
    return regions


def exercise_source(obj: Any) -> str:
    """The source of `obj` with every function body wrapped in nbgrader solution markers."""
    src = textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n"
    lines = src.splitlines()
    for start, end in reversed(_solution_regions(src)):
        body = lines[start:end]
        first = next(line for line in body if line.strip())
        indent = first[: len(first) - len(first.lstrip())]
        lines[start:end] = [f"{indent}### BEGIN SOLUTION", *body, f"{indent}### END SOLUTION"]
    return "\n".join(lines)


@dataclass
class _Helpers:
    """The functions a template calls; they also record which checks it used."""
    lab: Lab
    module: Any
    used: list[str]

    def _object(self, name: str) -> Any:
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise CourseError(f"reference/notebooks/{self.lab.id}.py.j2: reference.{self.lab.id} has no {name!r}") from None

    def exercise(self, name: str) -> str:
        return f"# %% [solution] id={name}\n{exercise_source(self._object(name))}"

    def code(self, name: str) -> str:
        """The reference's source of `name`, as text (for an `answer` cell's solution)."""
        return textwrap.dedent(inspect.getsource(self._object(name))).rstrip()

    def source(self, name: str) -> str:
        return "# %%\n" + self.code(name)

    def answer(self, cell_id: str, code: str, starter: str | None = None) -> str:
        text = f"# %% [answer] id={cell_id}\n### BEGIN SOLUTION\n{code.strip()}\n### END SOLUTION"
        if starter is not None:  # the exercise starts with this code instead of the stub
            text += f"\n### BEGIN STARTER\n{starter.strip()}\n### END STARTER"
        return text

    def written(self, name: str, model_answer: str) -> str:
        """A written answer graded by hand (its points: course.yml `written`); the source holds
        the model answer, the student's notebook nbgrader's "YOUR ANSWER HERE"."""
        if name not in self.lab.written:
            raise CourseError(f"reference/notebooks/{self.lab.id}.py.j2: written answer {name!r} is not in "
                              f"course.yml labs.{self.lab.id}.written")
        self.used.append(name)
        return f"# %% [written] id=written_{name}\n" + "\n".join(f"# {line}".rstrip() for line in model_answer.strip().splitlines())

    def check(self, name: str, code: str, hidden: str | None = None) -> str:
        if name not in self.lab.checks:
            raise CourseError(f"reference/notebooks/{self.lab.id}.py.j2: check {name!r} is not in course.yml labs.{self.lab.id}.checks")
        self.used.append(name)
        text = f"# %% [check] id=check_{name}\n{code.strip()}"
        if hidden:
            text += f"\n### BEGIN HIDDEN TESTS\n{hidden.strip()}\n### END HIDDEN TESTS"
        return text


# ---------------------------------------------------------------- languages
class _Missing(_gettext.NullTranslations):
    """The end of a translation's fallback chain: records each msgid no catalog translated."""

    def __init__(self) -> None:
        super().__init__()
        self.missed: dict[str, None] = {}

    def gettext(self, message: str) -> str:
        self.missed[message] = None
        return message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        self.missed[singular] = None
        return singular if n == 1 else plural


class Translator:
    """What a build in `language` translates lab `lab_id` with: the lab's catalog, then the shared
    one (both compiled from their `.po` by this build, never an older `.mo`), then English —
    recording the msgids that fell through to English (`missed`)."""

    def __init__(self, language: str, lab_id: str, catalogs: dict[Path, bytes] | None = None) -> None:
        from .i18n import catalog_path
        self.language = language
        self.missing = _Missing()
        self.translations: _gettext.NullTranslations = self.missing if language != SOURCE else _gettext.NullTranslations()
        if language == SOURCE:
            return
        catalogs = catalogs or {}
        for domain in (COURSE_DOMAIN, lab_id):     # the lab's catalog in front, the shared one behind it
            path = catalog_path(language, domain, ".mo")
            if path in catalogs:
                found = _gettext.GNUTranslations(io.BytesIO(catalogs[path]))
                found.add_fallback(self.translations)
                self.translations = found

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    @property
    def missed(self) -> list[str]:
        return list(self.missing.missed)


def _markdown(text: str) -> str:
    """A jinja2 filter: markdown as the lines of a percent-format markdown cell (`# ` a line, a
    bare `#` for an empty one), so that `{% trans %}` blocks hold plain markdown."""
    return "\n".join(f"# {line}".rstrip() for line in text.strip("\n").splitlines())


def render(lab: Lab, course: Course, translator: Translator | None = None) -> tuple[str, list[str]]:
    """Render the lab's template (its prose through `translator`, English by default); returns
    the percent-format text and the checks it used."""
    module = importlib.import_module(f"reference.{lab.id}")
    helpers = _Helpers(lab, module, [])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False, extensions=["jinja2.ext.i18n"])
    translator = translator or Translator(SOURCE, lab.id)
    env.install_gettext_translations(translator, newstyle=False)
    env.globals["answer_"] = translator.gettext      # a model answer (catalogs.answer_msgids: never in a .mo)
    env.filters["markdown"] = _markdown
    try:
        template = env.get_template(f"{lab.id}.py.j2")
        text = template.render(lab=lab, course=course, exercise=helpers.exercise, source=helpers.source,
                               answer=helpers.answer, code=helpers.code, check=helpers.check, written=helpers.written, reference=module)
    except jinja2.TemplateNotFound:
        raise CourseError(f"reference/notebooks/{lab.id}.py.j2: no such template for lab {lab.id!r}") from None
    except jinja2.TemplateError as e:
        raise CourseError(f"reference/notebooks/{lab.id}.py.j2:{getattr(e, 'lineno', '?')}: {e.message}") from None
    return text, helpers.used


# ---------------------------------------------------------------- percent format → notebook
def _nbgrader(kind: str, grade_id: str, points: int | None = None) -> dict:
    """nbgrader's cell metadata; a `written` cell is its "manually graded answer" (graded and
    answered, in Markdown)."""
    answered = kind in ("solution", "answer", "written")
    meta = {"grade": kind in ("check", "written"), "grade_id": grade_id, "locked": not answered,
            "schema_version": 3, "solution": answered}
    if points is not None:
        meta["points"] = points
    return meta


def parse_cells(text: str, lab: Lab) -> list[nbformat.NotebookNode]:
    """Split rendered percent-format text into nbformat cells with nbgrader metadata."""
    where = f"reference/notebooks/{lab.id}.py.j2"
    chunks: list[tuple[str, str | None, list[str], int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            chunks.append((m["kind"] or "code", m["id"], [], lineno))
        elif line.startswith("# %%"):
            raise CourseError(f"{where}: rendered line {lineno}: malformed cell header {line!r}")
        elif chunks:
            chunks[-1][2].append(line)
        elif line.strip():
            raise CourseError(f"{where}: rendered line {lineno}: text before the first '# %%' cell header")
    cells, ids = [], set()
    for n, (kind, cell_id, lines, lineno) in enumerate(chunks, 1):
        body = "\n".join(lines).strip("\n")
        if not body.strip():
            raise CourseError(f"{where}: rendered line {lineno}: empty cell")
        if kind in ("markdown", "written"):
            body = "\n".join(re.sub(r"^# ?", "", l) if l.startswith("#") else l for l in body.splitlines())
        grade_id = cell_id or f"{'md' if kind == 'markdown' else 'code'}-{n:02d}"
        if grade_id in ids:
            raise CourseError(f"{where}: rendered line {lineno}: duplicate cell id {grade_id!r}")
        ids.add(grade_id)
        points = (lab.checks[grade_id.removeprefix("check_")] if kind == "check" else
                  lab.written[grade_id.removeprefix("written_")] if kind == "written" else None)
        metadata = {"nbgrader": _nbgrader(kind, grade_id, points)}
        if "### BEGIN STARTER" in body or "### END STARTER" in body:
            body, metadata["course"] = _split_starter(body, kind, f"{where}: rendered line {lineno}")
        make = nbformat.v4.new_markdown_cell if kind in ("markdown", "written") else nbformat.v4.new_code_cell
        cells.append(make(body, id=grade_id, metadata=metadata))
    return cells


def _split_starter(body: str, kind: str, where: str) -> tuple[str, dict]:
    """An answer cell's body without its starter block, and the cell metadata holding the starter."""
    blocks = list(_STARTER.finditer(body))
    if kind not in ("solution", "answer"):
        raise CourseError(f"{where}: a starter block belongs to an answer cell, not a {kind} cell")
    if len(blocks) != 1 or body.count("### BEGIN STARTER") != 1 or body.count("### END STARTER") != 1 \
            or body[blocks[0].end():].strip():
        raise CourseError(f"{where}: one '### BEGIN STARTER' ... '### END STARTER' block, at the end of the cell")
    return body[:blocks[0].start()].rstrip("\n"), {"starter": blocks[0]["code"]}


def install_cell(course: Course) -> nbformat.NotebookNode:
    """The first code cell: where `autograder` is not importable (Colab, a fresh Jupyter), pip
    installs the student package from course.yml's `release.url`, or says how to install it."""
    if course.release_url:
        code = ("# The course package (data, helpers, public checks): installed here if this Python lacks it\n"
                "import importlib, importlib.util, subprocess, sys\n\n"
                'if importlib.util.find_spec("autograder") is None:\n'
                f'    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", {course.release_url!r}], check=True)\n'
                "    importlib.invalidate_caches()")
    else:
        code = ("# The course package (data, helpers, public checks) must be installed in this Python\n"
                "import importlib.util\n\n"
                'if importlib.util.find_spec("autograder") is None:\n'
                '    raise ModuleNotFoundError("the course package is not installed: run `pip install -e .` in your copy "\n'
                '                              "of the course (its README.md says how), then restart the kernel")')
    return nbformat.v4.new_code_cell(code, id="install", metadata={"nbgrader": _nbgrader("code", "install")})


def _english(message: str) -> str:
    return message


def hand_in_cells(lab: Lab, _: Callable[[str], str] = _english) -> list[nbformat.NotebookNode]:
    """The last cells: how to hand in, and the call that checks the notebook and writes the file."""
    text = _("## Hand in\n\n"
             "Save the notebook (Ctrl+S), then run the cell below. It runs the saved notebook from top to "
             "bottom in a fresh kernel, as the grader will, lists the public checks that pass and the cells "
             "that fail, and writes `hand-in/{lab}.ipynb` beside this notebook: the file to hand in. "
             "The grader runs the same checks and hidden ones (other inputs, a test split you never see).").format(lab=lab.id)
    code = f"from autograder.handin import export\n\nexport({lab.id!r})"
    return [nbformat.v4.new_markdown_cell(text, id="hand-in-md", metadata={"nbgrader": _nbgrader("markdown", "hand-in-md")}),
            nbformat.v4.new_code_cell(code, id="hand-in", metadata={"nbgrader": _nbgrader("code", "hand-in")})]


@functools.lru_cache(maxsize=4)
def _yaml(text: str):
    """YAML `text` parsed (libyaml's parser where PyYAML has it: 10 times faster), once per text."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def glossary(lab_id: str) -> list[dict[str, str]]:
    """The lab's terms from reference/notebooks/glossary.yml: [{"en": ..., "ko": ...}, ...]."""
    data = _yaml(GLOSSARY.read_text(encoding="utf-8")) if GLOSSARY.is_file() else {}
    terms = copy.deepcopy((data or {}).get(lab_id) or [])
    if not isinstance(terms, list) or not all(isinstance(t, dict) and isinstance(t.get(SOURCE), str) for t in terms):
        raise CourseError(f"{GLOSSARY.relative_to(TEMPLATE_DIR.parent.parent)}: {lab_id}: a list of terms, "
                          f"each a mapping with at least `{SOURCE}`")
    return terms


def glossary_cell(lab: Lab, language: str, _: Callable[[str], str] = _english) -> nbformat.NotebookNode | None:
    """The lab's glossary, a markdown cell (None for a lab without terms): each term in the
    notebook's language and in the others (English: every translation's column; a translation:
    English's). The data is language-neutral, so the cell is there in every language."""
    from .i18n import LANGUAGES
    terms = glossary(lab.id)
    if not terms:
        return None
    others = sorted({k for t in terms for k in t if k in LANGUAGES and k != SOURCE})
    columns = [SOURCE, *others] if language == SOURCE else [language, SOURCE]
    names = {"en": _("English"), "ko": _("Korean (한국어)")}
    rows = ["| " + " | ".join(names.get(c, c) for c in columns) + " |", "|" + "---|" * len(columns)]
    rows += ["| " + " | ".join(t.get(c, "") for c in columns) + " |" for t in terms]
    text = _("## Glossary\n\nThe terms of this lab, in English and as the Korean lecture notes name them:") + "\n\n" + "\n".join(rows)
    return nbformat.v4.new_markdown_cell(text, id="glossary", metadata={"nbgrader": _nbgrader("markdown", "glossary")})


def source_notebook(lab: Lab, course: Course, translator: Translator | None = None) -> nbformat.NotebookNode:
    """The nbgrader source notebook of `lab` (in `translator`'s language, English by default):
    solutions and hidden tests included."""
    translator = translator or Translator(SOURCE, lab.id)
    _ = translator.gettext
    language = translator.language
    text, used = render(lab, course, translator)
    where = f"reference/notebooks/{lab.id}.py.j2"
    missing = [c for c in [*lab.checks, *lab.written] if c not in used]
    twice = sorted({c for c in used if used.count(c) > 1})
    if missing or twice:
        problem = (f"checks or written answers of course.yml never used: {', '.join(missing)}" if missing
                   else f"used twice: {', '.join(twice)}")
        raise CourseError(f"{where}: {problem}")
    checks = importlib.import_module(f"autograder.checks.{lab.id}")
    for name in lab.checks:
        if not callable(getattr(checks, name, None)):
            raise CourseError(f"autograder/checks/{lab.id}.py: no check function {name!r} (course.yml labs.{lab.id}.checks)")
    cells = parse_cells(text, lab)
    starters = any("starter" in c.metadata.get("course", {}) for c in cells)
    where_to_answer = (_("fix the code in the answer cells") if starters
                       else _("answer in the cells marked `# YOUR CODE HERE`"))
    header = nbformat.v4.new_markdown_cell(
        _("*Generated from `reference/{lab}.py` and `reference/notebooks/{lab}.py.j2` by `course build` "
          "(instructors: edit those, not this notebook).* **Students:** {where_to_answer}, run the check cell "
          "below each, and hand in with the last cell, which writes `hand-in/{lab}.ipynb`.").format(
            lab=lab.id, where_to_answer=where_to_answer),
        id="header", metadata={"nbgrader": _nbgrader("markdown", "header")})
    terms = glossary_cell(lab, language, _)
    meta = {"lab": lab.id, "title": _(lab.title),
            "max_points": lab.max_points, "points": dict(lab.checks), "thresholds": dict(lab.thresholds)}
    if language != SOURCE:
        meta["language"] = language
    nb = nbformat.v4.new_notebook(cells=[header, install_cell(course), *cells, *([terms] if terms else []),
                                         *hand_in_cells(lab, _)], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        # points and thresholds as built: `course grade` warns when course.yml has changed since
        "course": meta,
    })
    nbformat.validate(nb)
    return nb


def dumps(nb: nbformat.NotebookNode) -> str:
    """Notebook JSON as nbformat (and so nbgrader) writes it: sorted keys, indent 1."""
    return nbformat.writes(nb) + "\n"


def generate_assignments(sources: dict[str, nbformat.NotebookNode]) -> dict[str, str]:
    """Run nbgrader's GenerateAssignment (Python API, no database) on source notebooks;
    return the released notebook text of each lab."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    _compile_validators_once()
    released = {}
    with tempfile.TemporaryDirectory(prefix="course-build-") as tmp:
        for lab_id, nb in sources.items():
            src = Path(tmp, "source", lab_id, f"{lab_id}.ipynb")
            src.parent.mkdir(parents=True)
            src.write_text(dumps(nb), encoding="utf-8")
            c = Config()
            c.CourseDirectory.root = tmp
            c.CourseDirectory.assignment_id = lab_id
            c.GenerateAssignment.no_database = True
            c.GenerateAssignment.force = True
            converter = GenerateAssignment(coursedir=CourseDirectory(config=c), config=c)
            # SaveCells records the cells in the gradebook; the build keeps no gradebook (the
            # grader restores cells from solutions/), so it is the one preprocessor left out.
            converter.preprocessors = [p for p in converter.preprocessors if p.__name__ != "SaveCells"]
            after = [p.__name__ for p in converter.preprocessors].index("ClearSolutions") + 1
            converter.preprocessors.insert(after, _starter_preprocessor())
            converter.log.setLevel("ERROR")
            try:
                converter.start()
            except Exception as e:  # nbgrader raises NbGraderException with the reason logged
                raise CourseError(f"nbgrader generate_assignment failed for lab {lab_id!r}: {e}") from None
            released[lab_id] = Path(tmp, "release", lab_id, f"{lab_id}.ipynb").read_text(encoding="utf-8")
    return released


def _compile_validators_once() -> None:
    """Half of `course build` went to compiling the same JSON schemas again and again:
    - nbconvert validates the notebook after each of nbgrader's preprocessors with
      `relax_add_props=True`, and nbformat 5.10 compiles a new fastjsonschema validator for every
      such call (about 0.1 s, a dozen per notebook; upstream, jupyter/nbconvert#1663);
    - nbgrader's metadata check calls `jsonschema.validate` on every graded cell, which checks
      nbgrader's schema against the meta-schema each time.
    Each is compiled once here and kept (nbformat's own cache keeps the strict validator, where
    nbformat would have put the relaxed one); what is valid and what is not stays the same."""
    from nbformat import validator
    if getattr(validator.get_validator, "compiles_once", False):
        return
    original, relaxed = validator.get_validator, {}

    def get_validator(version=None, version_minor=None, relax_add_props=False, name=None):
        if not relax_add_props:
            return original(version, version_minor, False, name)
        key = (version, version_minor, name, os.environ.get("NBFORMAT_VALIDATOR"))
        if key not in relaxed:
            strict = dict(validator.validators)
            relaxed[key] = original(version, version_minor, True, name)
            validator.validators.clear()
            validator.validators.update(strict)
        return relaxed[key]

    get_validator.compiles_once = True
    validator.get_validator = get_validator

    import jsonschema
    from nbgrader.nbgraderformat import common
    checked: dict[str, jsonschema.protocols.Validator] = {}

    class _Jsonschema:                     # what nbgrader's module calls `jsonschema`
        def __getattr__(self, name):
            return getattr(jsonschema, name)

        @staticmethod
        def validate(instance, schema, *args, **kwargs):
            if args or kwargs:
                return jsonschema.validate(instance, schema, *args, **kwargs)
            key = json.dumps(schema, sort_keys=True)
            if key not in checked:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                checked[key] = cls(schema)
            error = jsonschema.exceptions.best_match(checked[key].iter_errors(instance))
            if error is not None:
                raise error

    common.jsonschema = _Jsonschema()


def _starter_preprocessor() -> type:
    """An nbgrader preprocessor to run right after ClearSolutions: an answer cell with a starter
    (cell metadata `course.starter`) gets that code in the student's notebook instead of the
    "# YOUR CODE HERE" stub; the checksums computed after it are those of the starter."""
    from nbgrader.preprocessors import NbGraderPreprocessor

    class StarterCode(NbGraderPreprocessor):
        def preprocess_cell(self, cell, resources, index):
            course = cell.metadata.get("course", {})
            if "starter" in course:
                cell.source = course.pop("starter")
                if not course:
                    del cell.metadata["course"]
            return cell, resources

    return StarterCode


def golden_json(lab: Lab) -> str | None:
    """JSON of `reference.<lab>.golden()` if the lab records golden values for its checks."""
    module = importlib.import_module(f"reference.{lab.id}")
    golden: Callable[[], dict] | None = getattr(module, "golden", None)
    return None if golden is None else json.dumps(golden(), indent=1, sort_keys=True) + "\n"


def build(course: Course, lab_ids: list[str] | None = None, check: bool = False,
          languages: list[str] | None = None, report: Callable[[str], None] | None = None) -> list[Path]:
    """Build the selected labs in `languages` (default: English and every language with
    catalogs), and compile those languages' catalogs. With `check`, write nothing and return the
    stale or missing files; otherwise write them and return the files written. `report` is told,
    one line each, which labs a language has no translation of (their English notebook stands
    in) and which msgids a translated lab still lacks."""
    from .catalogs import compiled_catalogs, languages as catalog_languages
    from .i18n import LANGUAGES, catalog_path, reload, translated

    labs = course.select(lab_ids)
    languages = list(dict.fromkeys(languages or catalog_languages()))
    for language in languages:
        if language not in LANGUAGES:
            raise CourseError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    translated_anywhere = any(language != SOURCE for language in languages)
    compiled = compiled_catalogs(answers=True) if translated_anywhere else {}     # what the build translates with
    shipped = compiled_catalogs() if translated_anywhere else {}                  # the .mo files: no model answers
    outputs: dict[Path, str | bytes] = {}
    for language in languages:
        built = [lab for lab in labs if translated(lab.id, language)]
        behind = [lab.id for lab in labs if lab not in built]
        if behind and report:
            report(f"{language}: {len(behind)} of {len(labs)} lab(s) not translated yet, their English notebooks "
                   f"stand in: {', '.join(behind)}")
        sources = {}
        for lab in built:
            translator = Translator(language, lab.id, compiled)
            sources[lab.id] = source_notebook(lab, course, translator)
            if translator.missed and report:
                report(f"{language}: {lab.id}: {len(translator.missed)} string(s) not translated yet, English stands "
                       f"in: {textwrap.shorten(translator.missed[0], 60)!r}" + (" ..." if len(translator.missed) > 1 else ""))
        released = generate_assignments(sources) if sources else {}
        for lab in built:
            outputs[course.solution_path(lab.id, language)] = dumps(sources[lab.id])
            outputs[course.exercise_path(lab.id, language)] = released[lab.id]
        if language != SOURCE:
            for domain in [COURSE_DOMAIN, *(lab.id for lab in built)]:
                mo = catalog_path(language, domain, ".mo")
                if mo in shipped:
                    outputs[mo] = shipped[mo]
    for lab in labs:
        golden = golden_json(lab)
        if golden is not None:
            outputs[GOLDEN_DIR / f"{lab.id}.json"] = golden

    def stale(path: Path, data: str | bytes) -> bool:
        if not path.exists():
            return True
        return path.read_bytes() != data if isinstance(data, bytes) else path.read_text(encoding="utf-8") != data
    changed = [p for p, data in outputs.items() if stale(p, data)]
    if not check:
        for path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            data = outputs[path]
            tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data, encoding="utf-8")
            tmp.replace(path)
        if any(p.suffix == ".mo" for p in changed):
            reload()
    return changed
