"""Korean and English from one source (issue 14): the catalogs, the Korean notebooks of lab
tensors, grading in either language, and the fallback to English of a lab not translated yet
(made so here, fixture `untranslated_lab`: every lab of the course has a Korean catalog, or will)."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder import i18n
from autograder.build import build, dumps, glossary
from autograder.catalogs import compiled_catalogs, domain_sources, untranslated
from autograder.config import CourseError, load_course
from tests.conftest import ROOT, lost_checks
from tests.planted import all_bugs, plant

HANGUL = re.compile(r"[\uac00-\ud7a3]")
LAB = "tensors"                    # translated into Korean: graded here in both languages
UNTRANSLATED = "forward"           # its Korean catalog taken away (fixture `untranslated_lab`): English stands in
# every lab with a Korean catalog gets the catalog, notebook and glossary tests
TRANSLATED = [lab.id for lab in load_course(ROOT / "course.yml").labs if i18n.translated(lab.id, "ko")]


@pytest.fixture(scope="module")
def ko(course):
    return dataclasses.replace(course, language="ko")


@pytest.fixture
def untranslated_lab(tmp_path, monkeypatch):
    """Lab UNTRANSLATED not translated into Korean, whether or not the course has its catalog: a
    copy of the locale tree without its `.po` and `.mo`, read in place of autograder/locale by
    i18n (which labs are translated, the catalogs messages are made from) and by catalogs (what
    the build compiles). The fallback to English is then the real one, as for a lab nobody has
    translated yet."""
    from autograder import catalogs
    locale = tmp_path / "locale"
    shutil.copytree(i18n.LOCALE_DIR, locale, ignore=shutil.ignore_patterns(f"{UNTRANSLATED}.po", f"{UNTRANSLATED}.mo", "*.tmp"))
    monkeypatch.setattr(i18n, "LOCALE_DIR", locale)
    monkeypatch.setattr(catalogs, "LOCALE_DIR", locale)
    i18n.reload()                        # forget the catalogs read from the real tree
    assert i18n.translated(LAB, "ko") and not i18n.translated(UNTRANSLATED, "ko")
    yield UNTRANSLATED
    i18n.reload()                        # and those read from the copy


# --- catalogs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain", [*TRANSLATED, i18n.COURSE_DOMAIN])
def test_every_msgid_has_a_korean_translation(domain):
    """Every msgid of a translated lab's template and checks, and of what every lab shares (the
    build's cells, the checks' helpers, the grader, pages, README, course.yml's titles), has a
    non-empty, non-fuzzy Korean translation: a new English string without one fails here."""
    assert len(untranslated("en", domain)) > 10          # the extraction finds the msgids
    missing = untranslated("ko", domain)
    assert not missing, f"untranslated in ko/{domain}.po (make messages LAB={domain} TO=ko): {missing}"


def test_catalogs_compile_deterministically_and_are_fresh():
    first, second = compiled_catalogs(), compiled_catalogs()
    assert first == second and first
    for path, data in first.items():
        assert path.read_bytes() == data, f"{path.name} is stale: run `course build`"


def test_translations_keep_the_placeholders():
    """A translation uses exactly the `{name}` fields of its msgid (else .format fails or drops one)."""
    from autograder.catalogs import read_catalog
    for domain in (*TRANSLATED, i18n.COURSE_DOMAIN):
        for message in read_catalog(i18n.catalog_path("ko", domain)):
            if not message.id:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            fields = set(re.findall(r"\{(\w+)[^{}]*\}", ids[0]))
            for text in strings:
                assert set(re.findall(r"\{(\w+)[^{}]*\}", text)) == fields, (domain, ids[0][:60])


# --- the notebooks -------------------------------------------------------------------------------

def _cells(nb):
    """What must be the same in every language: each cell's kind, id, nbgrader metadata (less the
    checksum of its text) and, for code, its source."""
    out = []
    for cell in nb.cells:
        meta = {k: v for k, v in cell.metadata.get("nbgrader", {}).items() if k != "checksum"}
        out.append((cell.cell_type, cell.get("id"), meta, cell.source if cell.cell_type == "code" else None))
    return out


@pytest.mark.parametrize("lab_id", TRANSLATED)
@pytest.mark.parametrize("kind", ["solution", "exercise"])
def test_korean_notebook_has_the_english_cells_ids_and_code(course, kind, lab_id):
    path = course.solution_path if kind == "solution" else course.exercise_path
    en, ko = (nbformat.read(path(lab_id, lang), as_version=4) for lang in ("en", "ko"))
    assert path(lab_id, "ko") == ROOT / "ko" / f"{kind}s" / lab_id / f"{lab_id}.ipynb"
    assert path(lab_id, "en") == ROOT / f"{kind}s" / lab_id / f"{lab_id}.ipynb"
    assert _cells(en) == _cells(ko)
    # every markdown cell translated, but a written answer's cell in the exercise: nbgrader's
    # "YOUR ANSWER HERE" in every language (the Korean release README names it so)
    prose = [(a.source, b.source) for a, b in zip(en.cells, ko.cells) if a.cell_type == "markdown"
             and not (kind == "exercise" and a.metadata.get("nbgrader", {}).get("grade_id", "").startswith("written_"))]
    assert all(a != b and HANGUL.search(b) for a, b in prose)
    stubs = [b.source for a, b in zip(en.cells, ko.cells) if (a.cell_type, a.source) == ("markdown", "YOUR ANSWER HERE")]
    assert stubs == ["YOUR ANSWER HERE"] * len(course.lab(lab_id).written) * (kind == "exercise")
    title = i18n.lab_title(course.lab(lab_id).title, "ko")
    assert HANGUL.search(title) and ko.metadata.course == {**en.metadata.course, "language": "ko", "title": title}


def _korean_prose(course, lab_id: str) -> str:
    nb = nbformat.read(course.solution_path(lab_id, "ko"), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown" and c.id not in ("header", "glossary"))
    lines = [line for line in text.splitlines() if not line.startswith("#")]      # headings are titles
    return re.sub(r"\*+", "", "\n".join(lines))


@pytest.mark.parametrize("lab_id", TRANSLATED)
def test_korean_terms_give_the_english_term_on_first_use(course, lab_id):
    """Each glossary term's first use in the Korean prose reads `한국어(English)`; the glossary cell
    ends the lab (before the hand-in) in both languages."""
    prose = _korean_prose(course, lab_id)
    terms = glossary(lab_id)
    assert terms, f"reference/notebooks/glossary.yml: no terms for {lab_id}"
    for term in terms:
        masked = prose
        for longer in (t["ko"] for t in terms if t["ko"] != term["ko"] and term["ko"] in t["ko"]):
            masked = masked.replace(longer, "□" * len(longer))      # 기울기 inside 기울기 소실
        at = masked.find(term["ko"])
        assert at >= 0, f"{term['ko']} is not used"
        after = masked[at + len(term["ko"]):]
        assert re.match(rf"\({re.escape(term['en'])}[),]", after, re.I), f"first use of {term['ko']}: {after[:40]!r}"
    for lang, heading in (("en", "## Glossary"), ("ko", "## 용어 정리")):
        cells = nbformat.read(course.solution_path(lab_id, lang), as_version=4).cells
        assert [c.id for c in cells[-3:]] == ["glossary", "hand-in-md", "hand-in"]
        assert cells[-3].source.startswith(heading) and all(t["ko"] in cells[-3].source for t in terms)


def test_untranslated_lab_falls_back_to_english(course, ko, untranslated_lab):
    """A lab without a Korean catalog: its English notebooks stand in, and its checks' own words
    stay English while the shared words around them are Korean."""
    import torch

    from autograder.checks import forward as checks
    assert LAB in TRANSLATED
    assert {"텐서", "배열", "합성곱 신경망", "표준화"} <= {t["ko"] for t in glossary(LAB)}
    assert ko.solution_path(untranslated_lab) == course.solution_path(untranslated_lab) == ROOT / "solutions" / untranslated_lab / f"{untranslated_lab}.ipynb"
    assert ko.exercise_path(untranslated_lab) == ROOT / "exercises" / untranslated_lab / f"{untranslated_lab}.ipynb"
    assert ko.exercise_path(LAB) == ROOT / "ko" / "exercises" / LAB / f"{LAB}.ipynb"

    def message() -> str:                 # a perceptron that answers 0 or 1, not -1 or +1
        with pytest.raises(AssertionError) as failure:
            checks.perceptron(lambda x, w, b: torch.where(x @ w + b > 0, 1.0, 0.0))
        return str(failure.value)

    english = message()
    what, hint = english.split(": expected ", 1)[0], english.split(" — ", 1)[1]
    assert what.startswith("perceptron(") and hint.startswith("the perceptron answers +1 or -1")
    with i18n.using("ko"):
        korean = message()
    assert korean.startswith(f"{what}: 기대값 ") and ", 실제값 " in korean and korean.endswith(f" — {hint}")


def test_build_check_covers_korean_and_names_untranslated_labs(tmp_path, capsys, untranslated_lab):
    """`course build --check` compares the Korean notebooks too (a stale one exits 1, named); the
    build says in one line which labs have no Korean yet, never silently."""
    from autograder.cli import main
    shutil.copy(ROOT / "course.yml", tmp_path / "course.yml")
    for rel in (f"solutions/{LAB}", f"exercises/{LAB}", f"ko/solutions/{LAB}", f"ko/exercises/{LAB}"):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    cli = ["--course", str(tmp_path), "build", "--lab", LAB, "--check"]
    assert main(cli) == 0
    capsys.readouterr()
    stale = tmp_path / "ko" / "exercises" / LAB / f"{LAB}.ipynb"
    nb = nbformat.read(stale, as_version=4)
    nb.cells[2].source = "손으로 고친 셀"
    stale.write_text(dumps(nb))
    assert main(cli + ["--lab", untranslated_lab, "--lang", "ko"]) == 1
    out, err = capsys.readouterr()
    assert out.split() == ["stale:", f"ko/exercises/{LAB}/{LAB}.ipynb"]
    notes = [line for line in err.splitlines() if "not translated" in line]
    assert notes == [f"ko: 1 of 2 lab(s) not translated yet, their English notebooks stand in: {untranslated_lab}"]


def test_course_language_is_validated(tmp_path):
    text = (ROOT / "course.yml").read_text()
    (tmp_path / "course.yml").write_text(text.replace("  language: en\n", "  language: fr\n"))
    with pytest.raises(CourseError, match=r"course\.language: expected one of en, ko, got 'fr'"):
        load_course(tmp_path / "course.yml")
    (tmp_path / "course.yml").write_text(text.replace("  language: en\n", ""))
    assert load_course(tmp_path / "course.yml").language == "en"           # the default


# --- messages ------------------------------------------------------------------------------------

def test_check_messages_follow_the_language():
    import torch

    from autograder.checks import tensors as checks
    from reference.tensors import iris_tensors

    def float64_labels():
        X, y = iris_tensors()
        return X, y.double()

    def message() -> str:
        with pytest.raises(AssertionError) as failure:
            checks.iris_tensors(float64_labels)
        return str(failure.value)

    english = message()
    assert english == ("iris_tensors() y dtype: expected torch.int64, got torch.float64 — the labels are class indices, "
                       "integers: .long() (nn.CrossEntropyLoss wants int64)")
    with i18n.using("ko"):
        korean = message()
        assert i18n.language() == "ko"
    assert korean == ("iris_tensors() y dtype: 기대값 torch.int64, 실제값 torch.float64 — 레이블은 클래스 인덱스, "
                      "즉 정수다: .long()을 쓴다(nn.CrossEntropyLoss는 int64를 받는다)")
    assert message() == english and i18n.language() == "en"
    with i18n.using("ko"):                # a helper's words come from the shared catalog
        with pytest.raises(AssertionError, match=r"^x: 기대값 shape \(2,\), 실제값 shape \(3,\)$"):
            from autograder.checks import expect_shape
            expect_shape(torch.zeros(3), (2,), "x")


def test_feedback_page_and_readme_in_korean(course, ko, untranslated_lab):
    from autograder.release import bundle, student_readme
    from autograder.report import feedback_html
    from autograder.results import CheckResult, Result

    result = Result("ada", LAB, "x.ipynb", [CheckResult("to_tensor", 0, 2, "to_tensor(...): 기대값 a, 실제값 b"),
                                            CheckResult("standardize", 2, 2)], [], 1.0)
    with i18n.using("ko"):
        page = feedback_html(result, "Tensors and data", comment="")
    assert '<html lang="ko">' in page and "텐서와 데이터: ada의 피드백" in page and "2 / 4점" in page
    assert "교수자 의견" in page and "아직 없음" in page and "<td>통과</td>" in page
    assert "Comment from your instructor" in feedback_html(result, "Tensors and data")
    readme = student_readme(ko, [ko.lab(LAB)])
    assert readme.startswith("# 밑바닥부터 만드는 CNN") and "## 1. 설치(한 번만)" in readme and "| `tensors` | 텐서와 데이터 |" in readme
    assert "## 1. Install (once)" in student_readme(course, [course.lab(LAB)])
    files = bundle(ko, [ko.lab(LAB), ko.lab(untranslated_lab)])
    assert files[f"exercises/{LAB}/{LAB}.ipynb"] == ROOT / "ko" / "exercises" / LAB / f"{LAB}.ipynb"
    assert files[f"exercises/{untranslated_lab}/{untranslated_lab}.ipynb"] == ROOT / "exercises" / untranslated_lab / f"{untranslated_lab}.ipynb"
    assert files["autograder/locale/LANGUAGE"] == "ko\n"
    assert "autograder/locale/ko/LC_MESSAGES/tensors.mo" in files and "autograder/locale/ko/LC_MESSAGES/course.mo" in files
    assert "autograder/locale/LANGUAGE" not in bundle(course, [course.lab(LAB)])


def test_a_korean_release_answers_in_korean(ko, tmp_path):
    """What Korean students get: the Korean exercise, and public checks that answer in Korean in
    their own Python (the release's locale/LANGUAGE; no COURSE_LANGUAGE set)."""
    from autograder.release import release
    out = tmp_path / "release"
    release(ko, out, [LAB])
    assert (out / "exercises" / LAB / f"{LAB}.ipynb").read_bytes() == ko.exercise_path(LAB).read_bytes()
    code = ("import autograder\nfrom autograder.checks import tensors as c\nassert autograder.__file__.startswith(%r)\n"
            "try:\n    c.to_tensor(lambda obj: 1)\nexcept AssertionError as e:\n    print(e)" % str(out))
    env = {k: v for k, v in os.environ.items() if k != "COURSE_LANGUAGE"} | {"PYTHONPATH": str(out)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "to_tensor([[1, 2, 3], [4, 5, 6]]): 기대값 torch.Tensor, 실제값 int — torch.Tensor를 반환한다"


def test_domain_sources_are_where_the_messages_are():
    for path in [*domain_sources(LAB), *domain_sources(i18n.COURSE_DOMAIN)]:
        assert path.is_file(), path


# --- grading in either language ------------------------------------------------------------------

@pytest.fixture(scope="module")
def graded(course, ko, tmp_path_factory):
    """One Korean class (the Korean course grades it): the Korean solution, blank exercise and a
    planted bug, and the English solution; and the Korean solution graded by the English course."""
    from autograder.grade import grade_class
    root = tmp_path_factory.mktemp("class-ko")
    solution = nbformat.read(ko.solution_path(LAB), as_version=4)
    bug = next(b for b in all_bugs()[LAB] if b.name == "standardize-sample-std")
    files = {"ko-solution": dumps(solution), "ko-blank": ko.exercise_path(LAB).read_text(),
             "ko-bug": dumps(plant(solution, bug)), "en-solution": course.solution_path(LAB).read_text()}
    for student, text in files.items():
        (root / student).mkdir()
        (root / student / f"{LAB}.ipynb").write_text(text)
    results, warnings = grade_class(root, ko, [LAB], jobs=2)
    assert not warnings
    english = tmp_path_factory.mktemp("class-en")
    (english / "ko-solution").mkdir()
    (english / "ko-solution" / f"{LAB}.ipynb").write_text(files["ko-solution"])
    en_results, _ = grade_class(english, course, [LAB], jobs=1)
    i18n.set_language(None)              # the grader set this process's language: back to the default
    return {r.student: r for r in results}, en_results[0], bug


def test_korean_solution_full_marks_blank_zero_in_korean(graded):
    by_student, _, _ = graded
    solution, blank = by_student["ko-solution"], by_student["ko-blank"]
    assert not solution.grader_error and solution.notes == []
    assert solution.score == solution.max_score - solution.pending_points == 5      # the written answer waits for a person
    assert blank.score == 0
    assert all(c.message == "아직 답하지 않음: 답 셀이 여전히 NotImplementedError를 일으킨다" for c in blank.checks if not c.pending)


def test_planted_bug_loses_its_check_with_a_korean_message(graded):
    by_student, _, bug = graded
    result = by_student["ko-bug"]
    lost = lost_checks(result)
    assert set(lost) == set(bug.fails)
    assert lost["standardize"].startswith("standardize([[1, 10], [3, 10]]): 기대값 ")
    assert "모표준편차: X.std(dim=0, correction=0)은 N으로 나눈다" in lost["standardize"]


def test_a_submission_in_either_language_is_graded(graded):
    by_student, ko_by_english_course, _ = graded
    english_by_korean_course = by_student["en-solution"]
    for result in (english_by_korean_course, ko_by_english_course):
        assert not result.grader_error and result.score == result.max_score - result.pending_points > 0, [
            (c.name, c.message) for c in result.checks]
        assert result.notes == []


@pytest.mark.parametrize("lab_id, expected", [("training", "MLP"), ("capstone", "여러분의 CNN")])
def test_hidden_split_verdicts_follow_the_language(course, lab_id, expected):
    """The grader's own verdict on a scored check (its accuracy on the hidden test split) is made
    in the grader's language, with the lab's hints from the lab's catalog; English as before."""
    from autograder.checks import submission_stem
    from autograder.grade import apply_scores
    from autograder.results import CheckResult, Result
    from autograder.scoring import resolve_dataset, scored_checks, scoring_labels

    lab = course.lab(lab_id)
    name, spec = next(iter(scored_checks(lab_id).items()))
    dataset = resolve_dataset(spec, course)
    wrong = [int(v + 1) % 10 for v in scoring_labels(dataset, course)]
    messages = {}
    for lang in ("en", "ko"):
        result = Result("s", lab_id, "s.ipynb", [CheckResult(name, lab.checks[name], lab.checks[name])])
        i18n.set_language(lang)
        try:
            apply_scores(result, {submission_stem(spec.model, dataset): wrong}, course, lab)
        finally:
            i18n.set_language(None)
        assert result.checks[0].points == 0 and result.checks[0].measured == 0.0
        messages[lang] = result.checks[0].message
    assert messages["en"].startswith(f"{spec.model} accuracy on the hidden test split: expected ≥ ")
    assert messages["en"].endswith(f"got 0.000 — {spec.low_hint}")
    assert HANGUL.search(messages["ko"]) and expected in messages["ko"] and spec.low_hint not in messages["ko"]
