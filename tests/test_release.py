"""`course release`: the student bundle holds exercises, the student-safe package and its data —
no solution body, no hidden test, no grader — and its notebooks run their public checks in a
fresh environment where only the bundle is installed."""
from __future__ import annotations

import ast
import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

import autograder.build
from autograder.config import CourseError
from autograder.release import MANIFEST, PACKAGE_DIR, STUDENT_DISTRIBUTION, release, student_files
from tests.conftest import ROOT
from tests.test_config import run_cli

# labs whose notebooks run in the fresh environment: golden JSON (detection), the embedded data
# and a training run (training: an MLP in seconds), autograd by hand (backprop); skipped if
# course.yml lacks one
EXECUTED = ("backprop", "training", "detection")
# .ci/compat: COURSE_COMPAT="torch==2.6.0 torchvision==0.21.0" installs the bundle with those
# (downloaded) into a real venv instead, and COURSE_COMPAT_LABS=all runs every lab's notebooks
COMPAT = os.environ.get("COURSE_COMPAT", "").split()
if os.environ.get("COURSE_COMPAT_LABS") == "all":
    EXECUTED = tuple(lab["id"] for lab in yaml.safe_load((ROOT / "course.yml").read_text())["labs"])
GRADER_MODULES = ("build", "grade", "forked", "execute", "report", "gradebook", "cli", "config", "validate",
                  "notebook", "release")
MIN_LINE = 25   # solution lines at most this long ("return x", "loss.backward()") prove nothing


def no_build_check(monkeypatch, stale=()):
    """`course build --check` costs ~20 s for the whole course and test_build proves the
    committed notebooks fresh: here the release's call of it returns `stale`."""
    calls = []

    def fake_build(course, lab_ids=None, check=False, languages=None):
        assert check, "release must never build"
        calls.append(lab_ids)
        return [ROOT / p for p in stale]
    monkeypatch.setattr(autograder.build, "build", fake_build)
    return calls


@pytest.fixture(scope="module")
def bundle(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    with pytest.MonkeyPatch.context() as mp:
        calls = no_build_check(mp)
        written = release(course, out).written
    assert calls == [[lab.id for lab in course.labs]]
    return out, written


def bundle_texts(out: Path) -> dict[str, str]:
    """Every text file of the bundle (a notebook: its cells' sources, JSON escapes undone);
    binary files (weights) are left out."""
    texts = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if path.suffix == ".ipynb":
            texts[rel] = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        else:
            with path.open("rb") as f:
                if b"\0" in f.read(8192):
                    continue
            texts[rel] = path.read_text(encoding="utf-8", errors="replace")
    return texts


# ---------------------------------------------------------------- what the bundle holds
def test_bundle_layout(course, bundle):
    out, written = bundle
    labs = [lab.id for lab in course.labs]
    assert sorted(p.name for p in out.iterdir()) == sorted([".course-release.json", "README.md", "autograder",
                                                            "exercises", "pyproject.toml"])
    assert sorted(p.name for p in (out / "exercises").iterdir()) == sorted(labs)
    for lab in labs:
        assert [p.name for p in (out / "exercises" / lab).iterdir()] == [f"{lab}.ipynb"]
        assert (out / "exercises" / lab / f"{lab}.ipynb").read_bytes() == course.exercise_path(lab).read_bytes()
    package = sorted(p.relative_to(out / "autograder") for p in (out / "autograder").rglob("*") if p.is_file())
    assert package == sorted(p.relative_to(PACKAGE_DIR) for p in student_files())
    names = {p.as_posix() for p in package}
    assert {"__init__.py", "runtime.py", "data.py", "checks/__init__.py"} <= names
    assert {f"checks/{lab}.py" for lab in labs} <= names
    assert {f"golden/{p.name}" for p in (PACKAGE_DIR / "golden").glob("*.json")} <= names
    # shipped whenever the course has them
    assert ("pretrained.py" in names) == (PACKAGE_DIR / "pretrained.py").is_file()
    weights = PACKAGE_DIR / "weights"
    assert {n for n in names if n.startswith("weights/")} == {f"weights/{p.name}" for p in weights.glob("*") if p.is_file()}
    assert not {f"{m}.py" for m in GRADER_MODULES} & names
    grader_side = {p.name for p in PACKAGE_DIR.glob("*.py")} - {"__init__.py", "runtime.py", "data.py", "pretrained.py",
                                                                 "witness.py", "results.py", "handin.py", "i18n.py"}
    assert grader_side and not grader_side & names     # scoring.py, integrity.py, ... stay out by default
    everything = [p.relative_to(out) for p in out.rglob("*")]
    assert not [p for p in everything if {"reference", "solutions", "tests", "__pycache__"} & set(p.parts)]
    assert sorted(written) == sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == sorted(p.relative_to(out).as_posix() for p in written)
    for rel, text in bundle_texts(out).items():
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "import reference", "from reference"):
            assert marker not in text, f"{rel} contains {marker!r}"


def test_student_files_are_chosen_by_inclusion(tmp_path):
    """A new grader module stays out by default; pretrained.py and weights/ go in when present."""
    for rel in ("__init__.py", "runtime.py", "data.py", "grade.py", "scoring.py", "brand_new.py", "checks/__init__.py",
                "checks/lenet.py", "checks/__pycache__/lenet.cpython-311.pyc", "golden/detection.json", "golden/x.json.tmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    base = {"__init__.py", "runtime.py", "data.py", "checks/__init__.py", "checks/lenet.py", "golden/detection.json"}
    names = lambda: {p.relative_to(tmp_path).as_posix() for p in student_files(tmp_path)}
    assert names() == base
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "backbone.pt").write_bytes(b"\0")
    (tmp_path / "pretrained.py").write_text("")
    assert names() == base | {"pretrained.py", "weights/backbone.pt"}


def solution_regions(path: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Of a source notebook: (grade id, stripped lines) of every `### BEGIN SOLUTION` region, and
    the lines the notebook gives the student (outside solution regions and hidden tests, and the
    starter code an answer cell may begin with instead of the stub)."""
    regions, given = [], []
    for cell in nbformat.read(path, as_version=4).cells:
        grade_id, mode = cell.metadata.get("nbgrader", {}).get("grade_id"), None
        given += cell.metadata.get("course", {}).get("starter", "").splitlines()
        for line in cell.source.splitlines():
            marker = line.strip()
            if marker in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"):
                mode = [] if marker == "### BEGIN SOLUTION" else "hidden"
            elif marker in ("### END SOLUTION", "### END HIDDEN TESTS"):
                if isinstance(mode, list):
                    regions.append((grade_id, mode))
                mode = None
            elif isinstance(mode, list):
                mode.append(marker)
            elif mode is None:
                given.append(line)
    return regions, given


def leaks(regions, given: str, texts: dict[str, str]) -> list[str]:
    """Solution lines (stripped, longer than MIN_LINE, not also given by some notebook) found in
    `texts`. A check module may quote one line of a body (a hint like "self.params =
    list(params)", or its own torch oracle of a one-line formula); nothing else may hold any."""
    found = []
    for grade_id, lines in regions:
        body = [s for s in lines if len(s) > MIN_LINE and s not in given]
        for rel, text in texts.items():
            hits = [s for s in body if s in text]
            if len(hits) > (1 if rel.startswith("autograder/checks/") else 0):
                found.append(f"{rel}: {len(hits)} line(s) of solution {grade_id!r}: {hits[:2]}")
    return found


def test_bundle_holds_no_solution_body(course, bundle):
    out, _ = bundle
    texts = bundle_texts(out)
    sources = {lab.id: solution_regions(course.solution_path(lab.id)) for lab in course.labs}
    given = "\n".join(line for _, lines in sources.values() for line in lines)  # a later lab may give an earlier answer
    problems = []
    for lab_id, (regions, _) in sources.items():
        assert regions, f"solutions/{lab_id} has no solution region"
        problems += leaks(regions, given, texts)
        # the detector has teeth: every region with a long line is found in its own source notebook
        solution_text = {"x": "\n".join(c.source for c in nbformat.read(course.solution_path(lab_id), as_version=4).cells)}
        detectable = [r for r in regions if any(len(s) > MIN_LINE and s not in given for s in r[1])]
        assert len(leaks(detectable, given, solution_text)) == len(detectable)
    assert not problems, "\n".join(problems)


def test_bundle_catalogs_hold_no_model_answer(course, bundle):
    """Red team: every lab's written questions' model answers (English msgid and Korean
    translation) shipped in the compiled catalogs, one `GNUTranslations(...)._catalog` away. The
    build still translates them: the Korean solutions hold them."""
    import gettext

    from autograder.catalogs import answer_msgids, compiled
    from autograder.i18n import LOCALE_DIR
    out, _ = bundle
    catalogs = sorted(out.rglob("LC_MESSAGES/*.mo"))
    assert {p.stem for p in catalogs} >= {lab.id for lab in course.labs if lab.written}
    for path in catalogs:
        if path.stem == "course":
            continue
        answers = answer_msgids(path.stem)
        assert len(answers) == len(course.lab(path.stem).written), path.stem     # extraction finds them
        with path.open("rb") as f:
            assert not answers & set(gettext.GNUTranslations(f)._catalog), path
        po = LOCALE_DIR / path.parent.parent.name / "LC_MESSAGES" / f"{path.stem}.po"
        full = gettext.GNUTranslations(io.BytesIO(compiled(po, answers=True)))
        solution = "\n".join(c.source for c in nbformat.read(course.solution_path(path.stem, path.parent.parent.name),
                                                             as_version=4).cells)
        for answer in answers:
            translated = next(line for line in full.gettext(answer).splitlines() if line.strip())
            assert translated != next(line for line in answer.splitlines() if line.strip()), path   # translated ...
            assert translated in solution, path                                                        # ... and built


def test_student_pyproject_declares_what_the_bundle_imports(bundle):
    """Ranges, not the grader's pins (Colab keeps its torch), and the grader's pins inside them."""
    from packaging.requirements import Requirement

    out, _ = bundle
    student = tomllib.loads((out / "pyproject.toml").read_text())["project"]
    course = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert student["name"] == STUDENT_DISTRIBUTION and student["version"] == course["version"]
    requirements = [Requirement(r) for r in student["dependencies"]]
    declared = {r.name.lower() for r in requirements}
    for req in requirements:
        assert "==" not in str(req.specifier) and req.specifier, f"{req}: a range, not a pin"
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed.split("+")[0]), f"{req}: excludes the grader's {req.name} {installed}"
    imported = set()
    sources = [p.read_text() for p in (out / "autograder").rglob("*.py")]
    sources += [c.source for p in (out / "exercises").rglob("*.ipynb")
                for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    # google.colab: Colab's own, imported by autograder.handin only where it is loaded
    third_party = imported - set(sys.stdlib_module_names) - {"autograder", "__future__", "google"}
    distributions = importlib.metadata.packages_distributions()
    missing = {m: distributions.get(m) for m in third_party
               if not {d.lower() for d in distributions.get(m, [m])} & declared}
    assert not missing, f"imported by the bundle but not in its pyproject.toml: {missing}"


# ---------------------------------------------------------------- writing OUT safely
def test_release_refuses_what_it_must_not_overwrite(course, tmp_path, monkeypatch):
    no_build_check(monkeypatch)
    lab = course.labs[0].id
    mine = tmp_path / "notes" / "mine.txt"
    mine.parent.mkdir()
    mine.write_text("a student's own notes")
    with pytest.raises(CourseError, match="not empty and not an earlier release"):
        release(course, mine.parent, [lab])
    assert sorted(p.name for p in mine.parent.iterdir()) == ["mine.txt"]
    release(course, mine.parent, [lab], force=True)                     # --force writes, keeps other files
    assert mine.read_text() == "a student's own notes" and (mine.parent / "exercises" / lab).is_dir()

    out = tmp_path / "student"
    release(course, out, [lab, course.labs[1].id])
    (out / "extra.txt").write_text("kept")
    release(course, out, [lab])                                          # an earlier release is replaced
    assert not (out / "exercises" / course.labs[1].id).exists() and (out / "extra.txt").read_text() == "kept"
    package_file = out / "autograder" / "runtime.py"
    original = package_file.read_text()
    package_file.write_text("# changed")                                 # a released package file changed since
    with pytest.raises(CourseError, match="changed since the last release \\(autograder/runtime.py\\)"):
        release(course, out, [lab])
    assert package_file.read_text() == "# changed"
    release(course, out, [lab], force=True)
    assert package_file.read_text() == original


def test_release_never_overwrites_a_notebook_the_student_changed(course, tmp_path, monkeypatch):
    """With or without --force: the student's notebook stays, the new version goes beside it,
    and a later release still knows the notebook is the student's."""
    no_build_check(monkeypatch)
    lab = course.labs[0].id
    out = tmp_path / "student"
    release(course, out, [lab])
    notebook = out / "exercises" / lab / f"{lab}.ipynb"
    assert release(course, out, [lab]).kept == []                       # unchanged: replaced in place
    notebook.write_text('{"my": "work"}')
    for n, force in enumerate((False, True, False), 1):
        done = release(course, out, [lab], force=force)
        beside = notebook.with_name(f"{lab}.new.ipynb")
        assert done.kept == [(notebook, beside)] and notebook.read_text() == '{"my": "work"}'
        assert beside.read_bytes() == course.exercise_path(lab).read_bytes()
    beside.write_text('{"more": "work"}')                                # the student works in the new one too
    done = release(course, out, [lab])
    assert done.kept == [(notebook, notebook.with_name(f"{lab}.new-2.ipynb"))] and beside.read_text() == '{"more": "work"}'

    other = tmp_path / "not-a-release"                                   # no manifest: a same-named notebook is theirs
    (other / "exercises" / lab).mkdir(parents=True)
    (other / "exercises" / lab / f"{lab}.ipynb").write_text("{}")
    done = release(course, other, [lab], force=True)
    assert [new.name for _, new in done.kept] == [f"{lab}.new.ipynb"]
    assert (other / "exercises" / lab / f"{lab}.ipynb").read_text() == "{}"


def test_release_of_one_lab_ships_only_its_checks(course, tmp_path, monkeypatch):
    no_build_check(monkeypatch)
    everyone = {p.relative_to(PACKAGE_DIR).as_posix() for p in student_files()}
    for lab in ("detection", "transfer", "tensors"):
        out = tmp_path / lab
        release(course, out, [lab])
        names = {p.relative_to(out / "autograder").as_posix() for p in (out / "autograder").rglob("*") if p.is_file()}
        assert {n for n in names if n.startswith("checks/")} == {"checks/__init__.py", f"checks/{lab}.py"}
        assert {n for n in names if n.startswith("golden/")} == ({"golden/detection.json"} if lab == "detection" else set())
        assert bool({n for n in names if n.startswith("weights/")}) == (lab == "transfer")
        # the compiled catalogs: the shared one, and the lab's own where it is translated
        assert {n for n in names if n.startswith("locale/")} == {"locale/ko/LC_MESSAGES/course.mo"} | (
            {f"locale/ko/LC_MESSAGES/{lab}.mo"} if (PACKAGE_DIR / "locale" / "ko" / "LC_MESSAGES" / f"{lab}.mo").exists() else set())
        shared = {n for n in everyone if not n.startswith(("checks/", "golden/", "weights/", "locale/"))}
        assert shared <= names and names <= everyone

    for inside in (ROOT, ROOT / "exercises" / "x", ROOT / "autograder" / "x", ROOT.parent):
        with pytest.raises(CourseError, match="course folder|inside the course"):
            release(course, inside, [lab], force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(CourseError, match="not a folder"):
        release(course, tmp_path / "file", [lab])


def test_release_refuses_stale_notebooks(course, tmp_path, monkeypatch):
    lab = course.labs[0].id
    calls = no_build_check(monkeypatch, stale=[f"exercises/{lab}/{lab}.ipynb"])
    with pytest.raises(CourseError, match=f"stale or missing built files \\(exercises/{lab}/{lab}.ipynb\\): run `course build`"):
        release(course, tmp_path / "out", [lab])
    assert calls == [[lab]] and not (tmp_path / "out").exists()


def test_cli_release(tmp_path):
    """End to end with the real `course build --check` (one lab keeps it quick)."""
    lab = EXECUTED[0]
    proc = run_cli("release", str(tmp_path / "out"), "--lab", lab)
    assert proc.returncode == 0, proc.stderr
    notebook = tmp_path / "out" / "exercises" / lab / f"{lab}.ipynb"
    assert notebook.is_file() and "released 1 lab(s)" in proc.stderr
    notebook.write_text("{}")
    proc = run_cli("release", str(tmp_path / "out"), "--lab", lab)
    assert proc.returncode == 0 and f"kept {notebook}: changed since it was released; the new version is {lab}.new.ipynb" in proc.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("")
    for args, expected in ((["release", str(tmp_path / "other")], "not empty and not an earlier release"),
                           (["release", str(tmp_path / "new"), "--lab", "nosuch"], "unknown lab 'nosuch'")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("course: error:") and expected in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- a fresh environment
@pytest.fixture(scope="module")
def fresh_python(bundle, tmp_path_factory):
    """A venv without the course: the third-party packages of this one (a .pth naming its
    site-packages: the .pth files there, such as the course's editable install, are not run)
    and the bundle installed as its README says, `pip install -e .`."""
    out, _ = bundle
    env = tmp_path_factory.mktemp("venv") / "student"
    python = env / "bin" / "python"
    if COMPAT:                              # a real venv: the bundle's ranges resolved with these pins
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=60)
        proc = subprocess.run([python, "-m", "pip", "install", "-q", "-e", str(out), *COMPAT], capture_output=True,
                              text=True, timeout=1800, env={k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"})
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        versions = subprocess.run([python, "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__)"],
                                  capture_output=True, text=True, check=True).stdout
        print(f"compat venv: torch, torchvision {versions.strip()}")
        return python
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    site = Path(subprocess.run([python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site / "course-deps.pth").write_text("".join(f"{p}\n" for p in ours))
    proc = subprocess.run([python, "-I", "-B", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "-e", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=env, env=fresh_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def fresh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COURSE_", "VIRTUAL_ENV", "PIP_"))}
    # one thread per notebook, as the grader gives each worker: two notebooks run at once, and
    # torch's threads spinning against each other on a shared machine cost far more than they gain
    return env | {"MPLBACKEND": "Agg", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "COURSE_HANDIN_RUN": "1"}    # the hand-in cell's own run: test_export_* below


def test_fresh_environment_has_only_the_bundle(bundle, fresh_python, tmp_path):
    out, _ = bundle
    probe = ("import importlib.util, json, sys, autograder;"
             "print(json.dumps({'autograder': autograder.__file__, 'path': sys.path,"
             "'missing': [m for m in ('reference', 'autograder.grade', 'autograder.build', 'autograder.config')"
             " if importlib.util.find_spec(m) is None]}))")
    proc = subprocess.run([fresh_python, "-I", "-B", "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env=fresh_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert Path(facts["autograder"]).is_relative_to(out)
    assert facts["missing"] == ["reference", "autograder.grade", "autograder.build", "autograder.config"]
    assert not [p for p in facts["path"] if p and Path(p).resolve() == ROOT]


# Runs in the fresh environment: imports every module of the installed `autograder`, then runs
# each notebook's code cells in order in a forked child (a fresh namespace, cwd = its own folder,
# output to a log), at most as many at once as there are cores; writes one JSON per notebook.
RUNNER = r'''
import importlib, json, os, pkgutil, sys

def run(notebook, workdir, result):
    os.chdir(workdir)
    sys.path.insert(0, workdir)                      # as Jupyter does
    log = os.open("output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1), os.dup2(log, 2)
    with open(notebook, encoding="utf-8") as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    namespace, report = {"__name__": "__main__"}, []
    for cell in cells:
        meta = cell["metadata"].get("nbgrader", {})
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        error = None
        try:
            exec(compile(source, f"<cell {meta.get('grade_id')}>", "exec"), namespace)
        except BaseException as e:
            error = [type(e).__name__, (str(e).strip().splitlines() or [""])[0][:300]]
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
        report.append({"id": meta.get("grade_id"), "check": bool(meta.get("grade")), "error": error})
    with open(result, "w") as f:
        json.dump(report, f)

import autograder
imports = {}
for module in pkgutil.walk_packages(autograder.__path__, "autograder."):
    try:
        importlib.import_module(module.name)
        imports[module.name] = None
    except Exception as e:
        imports[module.name] = f"{type(e).__name__}: {e}"
running = set()
for notebook, workdir, result in json.load(open(sys.argv[1])):
    while len(running) >= (os.cpu_count() or 1):
        running.discard(os.wait()[0])
    sys.stdout.flush(), sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            run(notebook, workdir, result)
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(0)
    running.add(pid)
while running:
    running.discard(os.wait()[0])
print(json.dumps({"autograder": autograder.__file__, "imports": imports}))
'''


def answered(course, lab_id: str, exercise: Path) -> nbformat.NotebookNode:
    """The exercise with each answer cell replaced by the solution's (matched by grade id)."""
    solution = nbformat.read(course.solution_path(lab_id), as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(exercise, as_version=4)
    replaced = 0
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            cell.source = answers[meta["grade_id"]]
            replaced += 1
    assert replaced, f"exercises/{lab_id} has no answer cell"
    return nb


@pytest.fixture(scope="module")
def executed(course, bundle, fresh_python, tmp_path_factory):
    """{(form, lab): per-cell results} of the executed labs, as shipped and answered."""
    out, _ = bundle
    tmp = tmp_path_factory.mktemp("run")
    labs = [lab.id for lab in course.labs if lab.id in EXECUTED]
    jobs = []
    for form in ("answered", "shipped"):      # the longest (training) first
        for lab in labs:
            shipped = out / "exercises" / lab / f"{lab}.ipynb"
            workdir = tmp / form / lab
            workdir.mkdir(parents=True)
            notebook = shipped
            if form == "answered":
                notebook = workdir / f"{lab}.ipynb"
                nbformat.write(answered(course, lab, shipped), notebook)
            jobs.append((str(notebook), str(workdir), str(workdir / "result.json")))
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    (tmp / "runner.py").write_text(RUNNER)
    proc = subprocess.Popen([fresh_python, "-I", "-B", str(tmp / "runner.py"), str(tmp / "jobs.json")], cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fresh_env(),
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=3600 if len(EXECUTED) > 3 else 300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the runner and its forked notebooks
        proc.communicate()
        pytest.fail("the notebooks did not finish in time")
    assert proc.returncode == 0, stderr[-3000:]
    facts = json.loads(stdout.strip().splitlines()[-1])
    results = {}
    for notebook, workdir, result in jobs:
        form, lab = Path(workdir).parent.name, Path(workdir).name
        log = (Path(workdir) / "output.log").read_text(errors="replace")[-2000:]
        assert Path(result).exists(), f"{form} {lab}: the runner died\n{log}"
        results[form, lab] = json.loads(Path(result).read_text())
    return facts, results


def test_every_bundle_module_imports_in_the_fresh_environment(bundle, executed):
    out, _ = bundle
    facts, _ = executed
    assert Path(facts["autograder"]).is_relative_to(out)
    assert {f"autograder.checks.{lab}" for lab in EXECUTED} & set(facts["imports"])
    assert not {m: e for m, e in facts["imports"].items() if e}


@pytest.mark.parametrize("lab_id", EXECUTED)
def test_shipped_notebook_runs_its_checks(course, executed, lab_id):
    """As shipped: every cell runs, or stops at an unanswered cell (NotImplementedError) or at a
    name such a cell never defined — never a missing module, file or golden value."""
    if lab_id not in {lab.id for lab in course.labs}:
        pytest.skip(f"{lab_id} is not in course.yml")
    cells = executed[1]["shipped", lab_id]
    unanswered, problems = False, []
    for cell in cells:
        kind = cell["error"] and cell["error"][0]
        unanswered |= kind == "NotImplementedError"
        if kind and kind != "NotImplementedError" and not (kind == "NameError" and unanswered):
            problems.append(f"{cell['id']}: {': '.join(cell['error'])}")
    assert not problems, "\n".join(problems)
    assert unanswered and any(c["check"] for c in cells)


@pytest.mark.parametrize("lab_id", EXECUTED)
def test_answered_notebook_passes_its_checks(course, executed, lab_id):
    """With the solution's answers pasted into the answer cells, every cell runs and every
    visible check passes — against the bundle's golden values and data alone."""
    if lab_id not in {lab.id for lab in course.labs}:
        pytest.skip(f"{lab_id} is not in course.yml")
    cells = executed[1]["answered", lab_id]
    failed = [f"{c['id']}: {': '.join(c['error'])}" for c in cells if c["error"]]
    assert not failed, "\n".join(failed)
    assert sorted(c["id"] for c in cells if c["check"]) == sorted(f"check_{name}" for name in course.lab(lab_id).checks)


HAND_IN = "tensors"     # a lab that runs top to bottom in seconds


@pytest.mark.parametrize("form", ["answered", "shipped"])
def test_export_runs_the_notebook_and_writes_the_file_to_hand_in(course, bundle, fresh_python, tmp_path, form):
    """The last cell, `export(lab)`, in the fresh environment: runs the saved notebook top to
    bottom in a real Jupyter kernel, says which public checks pass, and writes
    hand-in/<lab>.ipynb (found from the working folder, as Jupyter starts kernels)."""
    out, _ = bundle
    shipped = out / "exercises" / HAND_IN / f"{HAND_IN}.ipynb"
    notebook = tmp_path / f"{HAND_IN}.ipynb"
    nbformat.write(answered(course, HAND_IN, shipped) if form == "answered" else nbformat.read(shipped, as_version=4),
                   notebook)
    env = {k: v for k, v in fresh_env().items() if k != "COURSE_HANDIN_RUN"}
    proc = subprocess.run([fresh_python, "-I", "-c", f"from autograder.handin import export; export({HAND_IN!r})"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = len(course.lab(HAND_IN).checks)
    handed = tmp_path / "hand-in" / f"{HAND_IN}.ipynb"
    assert f"wrote {handed}: hand in this file" in proc.stdout
    ran = nbformat.read(handed, as_version=4)
    if form == "answered":
        assert f"{checks} of {checks} public checks pass" in proc.stdout and "failed" not in proc.stdout
        assert all(c.get("execution_count") for c in ran.cells if c.cell_type == "code")
        last = ran.cells[-1]
        assert "not run here" in "".join(o.get("text", "") for o in last.outputs)   # no export inside the export
    else:
        assert f"0 of {checks} public checks pass" in proc.stdout
        assert proc.stdout.count("check failed:") == checks and "NotImplementedError" in proc.stdout
    elsewhere = subprocess.run([fresh_python, "-I", "-c", f"from autograder.handin import export; export({HAND_IN!r})"],
                               cwd=out, env=env, capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode != 0
    assert f"no saved notebook of lab {HAND_IN!r} found: pass its path" in elsewhere.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("url", ["path", "none"])
def test_first_cell_installs_the_course_package_where_it_is_missing(course, bundle, tmp_path, url):
    """As on Colab: a Python with the third-party packages but no `autograder`. The first cell
    pip-installs the package from course.yml's `release.url` (here the release folder, offline)
    and the notebook's imports then work; with no url it stops with how to install."""
    import dataclasses
    from autograder.build import install_cell

    out, _ = bundle
    env_dir = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(site, "course-deps.pth").write_text("".join(f"{p}\n" for p in ours))
    cell = install_cell(dataclasses.replace(course, release_url=str(out) if url == "path" else None))
    script = cell.source + "\nimport autograder.checks.tensors as checks\nprint(checks.__file__)\n"
    env = fresh_env() | {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"}   # offline; pip, setuptools from the .pth
    proc = subprocess.run([python, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if url == "path":
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        assert Path(proc.stdout.strip().splitlines()[-1]).is_relative_to(site)   # installed, not the course's
    else:
        assert proc.returncode != 0
        assert proc.stderr.strip().splitlines()[-1] == (
            "ModuleNotFoundError: the course package is not installed: run `pip install -e .` in your copy of the "
            "course (its README.md says how), then restart the kernel")


def test_export_on_colab_takes_the_browsers_notebook_and_downloads_the_file(course, bundle, tmp_path):
    """Colab keeps the notebook in the browser: export() asks for it (google.colab's
    `get_ipynb`, faked here as Colab answers), runs it, and offers hand-in/<lab>.ipynb for
    download — never a stale copy left in the working folder."""
    out, _ = bundle
    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    answered_nb = answered(course, HAND_IN, out / "exercises" / HAND_IN / f"{HAND_IN}.ipynb")
    (tmp_path / "browser.json").write_text(json.dumps(answered_nb))
    (fake / "_message.py").write_text(
        "import json, pathlib\n"
        f"def blocking_request(kind, timeout_sec=None):\n"
        f"    assert kind == 'get_ipynb'\n"
        f"    return {{'ipynb': json.loads(pathlib.Path({str(tmp_path / 'browser.json')!r}).read_text())}}\n")
    (fake / "files.py").write_text(
        f"def download(path):\n    open({str(tmp_path / 'downloaded.txt')!r}, 'w').write(str(path))\n")
    work = tmp_path / "content"
    work.mkdir()
    (work / f"{HAND_IN}.ipynb").write_text(course.exercise_path(HAND_IN).read_text())     # stale: not this one
    env = {k: v for k, v in fresh_env().items() if k != "COURSE_HANDIN_RUN"} | {"PYTHONPATH": str(tmp_path / "fake")}
    script = f"import google.colab\nfrom autograder.handin import export\nexport({HAND_IN!r})"
    proc = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    checks = len(course.lab(HAND_IN).checks)
    assert f"{checks} of {checks} public checks pass" in proc.stdout
    assert (tmp_path / "downloaded.txt").read_text() == str(work / "hand-in" / f"{HAND_IN}.ipynb")
