"""course.yml: load, validate, and give the rest of the package typed access to it.

Every problem is one line naming the file, the key and what is wrong (`CourseError`); the CLI
prints it and exits non-zero.
"""
from __future__ import annotations

import datetime
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .i18n import LANGUAGES, translated

GPU_POLICIES = ("required", "preferred", "ignore")
HAND_IN_CHANNELS = ("folder", "nbgrader", "gradescope", "classroom")   # how students hand in (release README)
VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")  # Gradescope's, for hidden checks


class CourseError(Exception):
    """A problem the user can fix (bad path, bad course.yml, malformed notebook, unknown lab)."""


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    checks: dict[str, int]               # check name -> points, in notebook order
    thresholds: dict[str, float] = field(default_factory=dict)
    partial: frozenset[str] = frozenset()  # checks whose independent cases score in proportion
    due: datetime.datetime | None = None   # in UTC; a submission time after it is late
    written: dict[str, int] = field(default_factory=dict)  # written answers graded by hand -> points

    @property
    def max_points(self) -> int:
        return sum(self.checks.values()) + sum(self.written.values())


@dataclass(frozen=True)
class Course:
    path: Path                           # course.yml
    title: str
    seed: int
    data_root: str | None                  # torchvision data sets on disk (COURSE_DATA for notebooks)
    data_hidden: str | None                # a private MNIST test set (torchvision layout) for scoring
    cell_timeout: float
    notebook_timeout: float
    memory_mb: float | None                # resident memory per notebook (fork engine)
    gpu: str
    labs: tuple[Lab, ...]
    late_per_day: float | None = None      # share of the points lost per started day late
    late_max_days: int | None = None       # later than this many days: every point lost
    release_url: str | None = None         # what the notebooks' first cell pip-installs where `autograder` is missing
    hand_in: tuple[str, ...] = ("folder",)  # the channels students hand in through
    hidden_visibility: str = "after_due_date"  # Gradescope: when a check with hidden tests shows its result
    language: str = "en"                   # what students read: notebooks, check messages, pages, README

    def notebook_root(self, language: str | None = None) -> Path:
        """Where the built notebooks of `language` (default: the course's) live: the course root
        for English, the source language; `<root>/<language>/` for a translation."""
        language = language or self.language
        return self.root if language == "en" else self.root / language

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def data_root_path(self) -> Path | None:
        return (self.root / self.data_root).resolve() if self.data_root else None

    @property
    def hidden_path(self) -> Path | None:
        return (self.root / self.data_hidden).resolve() if self.data_hidden else None

    def lab(self, lab_id: str) -> Lab:
        for lab in self.labs:
            if lab.id == lab_id:
                return lab
        raise CourseError(f"unknown lab {lab_id!r}: course.yml has {', '.join(l.id for l in self.labs)}")

    def select(self, lab_ids: list[str] | None) -> list[Lab]:
        return [self.lab(i) for i in lab_ids] if lab_ids else list(self.labs)

    def built_language(self, lab_id: str, language: str | None = None) -> str:
        """The language lab `lab_id` is built in for `language` (default: the course's): that
        language where the lab is translated into it, else English, which stands in."""
        language = language or self.language
        return language if translated(lab_id, language) else "en"

    def solution_path(self, lab_id: str, language: str | None = None) -> Path:
        root = self.notebook_root(self.built_language(lab_id, language))
        return root / "solutions" / lab_id / f"{lab_id}.ipynb"

    def exercise_path(self, lab_id: str, language: str | None = None) -> Path:
        root = self.notebook_root(self.built_language(lab_id, language))
        return root / "exercises" / lab_id / f"{lab_id}.ipynb"


# --- a tiny schema: dict of key -> type spec; a spec is a type, a tuple of types, a nested
# --- dict, ("map", value_spec), ("list", item_spec) or ("choice", values).
_NUMBER = (int, float)
_SCHEMA: dict[str, Any] = {
    "course": {"title": str, "seed": int, "language": ("choice", tuple(LANGUAGES))},
    "data": {"root": (str, type(None)), "hidden": (str, type(None))},
    "grading": {"cell_timeout": _NUMBER, "notebook_timeout": _NUMBER, "memory_mb": _NUMBER,
                "gpu": ("choice", GPU_POLICIES), "late": {"per_day": _NUMBER, "max_days": int}},
    "labs": ("list", {"id": str, "title": str, "checks": ("map", int), "thresholds": ("map", _NUMBER),
                      "partial": ("names", str), "due": (str, datetime.date), "written": ("map", int)}),
    "release": {"url": (str, type(None)), "hand_in": ("list", ("choice", HAND_IN_CHANNELS)),
                "hidden_visibility": ("choice", VISIBILITIES)},
}
_OPTIONAL = {"language", "thresholds", "root", "hidden", "memory_mb", "partial", "late", "max_days", "due",
             "release", "url", "hand_in", "hidden_visibility", "written"}


def _due(value: Any, where: str) -> datetime.datetime:
    """A lab's due time in UTC: an ISO 8601 time (its offset, else UTC), or a date alone (the end
    of that day, UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise CourseError(f"{where}: not a time (write 2026-12-10T23:59:00+09:00): {value!r}") from None
    if not isinstance(value, datetime.datetime):       # a date: due at its end
        value = datetime.datetime.combine(value, datetime.time(23, 59, 59))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def _type_name(spec: Any) -> str:
    if isinstance(spec, dict):
        return "a mapping"
    if isinstance(spec, tuple) and spec and spec[0] in ("map", "list", "choice", "names"):
        return {"map": "a mapping", "list": "a list", "names": "a list of names",
                "choice": f"one of {', '.join(spec[1])}"}[spec[0]]
    types = spec if isinstance(spec, tuple) else (spec,)
    names = {int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _validate(value: Any, spec: Any, key: str, where: str) -> None:
    def bad(problem: str) -> CourseError:
        return CourseError(f"{where}: {key or '<top level>'}: {problem}")

    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise bad(f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if k not in spec:
                raise bad(f"unknown key {k!r} (known: {', '.join(spec)})")
        for k, sub in spec.items():
            path = f"{key}.{k}" if key else k
            if k not in value:
                if k in _OPTIONAL:
                    continue
                raise CourseError(f"{where}: {path}: missing")
            _validate(value[k], sub, path, where)
    elif isinstance(spec, tuple) and spec and spec[0] == "list":
        if not isinstance(value, list) or not value:
            raise bad("expected a non-empty list")
        for i, item in enumerate(value):
            _validate(item, spec[1], f"{key}[{i}]", where)
    elif isinstance(spec, tuple) and spec and spec[0] == "map":
        if not isinstance(value, dict) or not value:
            raise bad("expected a non-empty mapping")
        for k, v in value.items():
            _validate(v, spec[1], f"{key}.{k}", where)
    elif isinstance(spec, tuple) and spec and spec[0] == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("expected a list of check names")
    elif isinstance(spec, tuple) and spec and spec[0] == "choice":
        if value not in spec[1]:
            raise bad(f"expected {_type_name(spec)}, got {value!r}")
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        if isinstance(value, bool) or not isinstance(value, types):
            raise bad(f"expected {_type_name(spec)}, got {type(value).__name__} {value!r}")


def _has_reference_module(lab_id: str) -> bool:
    # without importing `reference` (which imports torch): look for reference/<id>.py
    spec = importlib.util.find_spec("reference")
    return spec is not None and any(Path(d, f"{lab_id}.py").is_file() for d in spec.submodule_search_locations or [])


def default_course_path() -> Path:
    """$COURSE_YML, else the course.yml of the working folder or the nearest folder above it (as
    git finds its repository). No fallback to the installed package's: outside a course it is an
    error."""
    if os.environ.get("COURSE_YML"):
        return Path(os.environ["COURSE_YML"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "course.yml").is_file():
            return folder / "course.yml"
    raise CourseError(f"no course.yml in {here} or a folder above it: run from a course root or pass --course")


def course_path(path: str | Path | None) -> Path:
    """What `--course PATH` names: a course.yml, or a folder holding one."""
    if path is None:
        return default_course_path()
    path = Path(path)
    if path.is_dir():
        if not (path / "course.yml").is_file():
            raise CourseError(f"{path}: a folder without a course.yml: --course names a course.yml or its folder")
        return path / "course.yml"
    return path


def load_course(path: str | Path | None = None) -> Course:
    """Read and validate course.yml; raise CourseError with one line on any problem."""
    path = course_path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"{where}: no such file (run from the course root or pass --course)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CourseError(f"{where}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise CourseError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    _validate(raw, _SCHEMA, "", where)

    labs, seen = [], set()
    for i, entry in enumerate(raw["labs"]):
        lab_id = entry["id"]
        if lab_id in seen:
            raise CourseError(f"{where}: labs[{i}].id: duplicate lab id {lab_id!r}")
        seen.add(lab_id)
        if not lab_id.isidentifier():
            raise CourseError(f"{where}: labs[{i}].id: {lab_id!r} is not a valid module name")
        if not _has_reference_module(lab_id):
            raise CourseError(f"{where}: labs[{i}].id: lab {lab_id!r} has no reference module reference/{lab_id}.py")
        for name, points in entry["checks"].items():
            if points < 0:
                raise CourseError(f"{where}: labs[{i}].checks.{name}: points must be >= 0, got {points}")
        thresholds = {k: float(v) for k, v in entry.get("thresholds", {}).items()}
        partial = entry.get("partial", [])
        unknown = [name for name in partial if name not in entry["checks"]]
        if unknown:
            raise CourseError(f"{where}: labs[{i}].partial: {unknown[0]!r} is not a check of lab {lab_id!r}")
        due = _due(entry["due"], f"{where}: labs[{i}].due") if "due" in entry else None
        written = dict(entry.get("written", {}))
        for name, points in written.items():
            if name in entry["checks"] or not name.isidentifier() or points < 0:
                problem = (f"{name!r} is also a check" if name in entry["checks"] else
                           f"{name!r} is not a name" if not name.isidentifier() else f"points must be >= 0, got {points}")
                raise CourseError(f"{where}: labs[{i}].written.{name}: {problem}")
        labs.append(Lab(lab_id, entry["title"], dict(entry["checks"]), thresholds, frozenset(partial), due, written))

    grading = raw["grading"]
    for key in ("cell_timeout", "notebook_timeout", "memory_mb"):
        if key in grading and grading[key] <= 0:
            raise CourseError(f"{where}: grading.{key}: must be > 0, got {grading[key]}")
    late = grading.get("late", {})
    release = raw.get("release", {})
    if late and not 0 < late["per_day"] <= 1:
        raise CourseError(f"{where}: grading.late.per_day: a share of the points in (0, 1], got {late['per_day']}")
    if late.get("max_days", 1) < 0:
        raise CourseError(f"{where}: grading.late.max_days: must be >= 0, got {late['max_days']}")
    return Course(
        path=path.resolve(),
        title=raw["course"]["title"],
        seed=raw["course"]["seed"],
        data_root=raw["data"].get("root"),
        data_hidden=raw["data"].get("hidden"),
        cell_timeout=float(grading["cell_timeout"]),
        notebook_timeout=float(grading["notebook_timeout"]),
        memory_mb=float(grading["memory_mb"]) if "memory_mb" in grading else None,
        gpu=grading["gpu"],
        labs=tuple(labs),
        late_per_day=float(late["per_day"]) if late else None,
        late_max_days=late.get("max_days"),
        release_url=release.get("url"),
        hand_in=tuple(dict.fromkeys(release.get("hand_in", ["folder"]))),
        hidden_visibility=release.get("hidden_visibility", "after_due_date"),
        language=raw["course"].get("language", "en"),
    )
