"""What cells showed when they ran reaches nbgrader's autograded/ notebook (issue 12): printed
text, results, figures as PNG and errors, from either engine, capped where a submission prints
without end; a forged figure is dropped, and text stays text."""
from __future__ import annotations

import base64
import json

import nbformat
from tests.conftest import full_marks
import pytest

from autograder.pipeline import GradeOptions, grade_to_folder
from autograder.results import MAX_OUTPUT_IMAGE, MAX_OUTPUT_TEXT, capped_outputs

LAB = "tensors"
ADDED = {
    "script": 'print("<script>alert(1)</script>")',
    "flood": "for i in range(30000):\n    print(i)",
    "result": "6 * 7",
    "figure": "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.title('a line')",
    "error": "1 / 0",
}


@pytest.fixture(scope="module")
def autograded(course, tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    nb = json.loads(course.solution_path(LAB).read_text())
    for name, source in ADDED.items():
        nb["cells"].append({"cell_type": "code", "id": f"added-{name}", "metadata": {}, "execution_count": None,
                            "outputs": [], "source": source})
    (root / "class" / "ann").mkdir(parents=True)
    (root / "class" / "ann" / f"{LAB}.ipynb").write_text(json.dumps(nb))
    graded = grade_to_folder(root / "class", course, root / "out", GradeOptions([LAB], jobs=1))
    result = graded.results[0]
    assert full_marks(result), result.checks
    return nbformat.read(root / "out" / "autograded" / "ann" / LAB / f"{LAB}.ipynb", as_version=4)


def _outputs_of(nb, source):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source == source).outputs


def test_the_autograded_notebook_shows_what_each_cell_showed(autograded):
    nbformat.validate(autograded)
    given = [c for c in autograded.cells if c.cell_type == "code" and "print(" in c.source
             and not c.metadata.get("nbgrader", {}).get("grade")]
    assert given and any(o.output_type == "stream" and o.text.strip() for c in given for o in c.outputs)
    assert [(o.output_type, o.name, o.text) for o in _outputs_of(autograded, ADDED["script"])] == [
        ("stream", "stdout", "<script>alert(1)</script>\n")]                      # text, as the student printed it
    assert [(o.output_type, o.data["text/plain"]) for o in _outputs_of(autograded, ADDED["result"])] == [("execute_result", "42")]
    figure = [o for o in _outputs_of(autograded, ADDED["figure"]) if "image/png" in o.get("data", {})]
    assert len(figure) == 1 and base64.b64decode(figure[0].data["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    error = _outputs_of(autograded, ADDED["error"])
    assert [(o.output_type, o.ename) for o in error if o.output_type == "error"] == [("error", "ZeroDivisionError")]


def test_a_flood_of_output_is_cut(autograded):
    flood = "".join(o.text for o in _outputs_of(autograded, ADDED["flood"]) if o.output_type == "stream")
    assert flood.startswith("0\n1\n2\n") and MAX_OUTPUT_TEXT < len(flood) < MAX_OUTPUT_TEXT + 100 and "cut" in flood


def test_the_kernel_engine_keeps_the_same_outputs(tmp_path):
    """`--engine kernel`: nbclient's outputs (the inline backend's figures too), in the same form."""
    from autograder.execute import run_notebook_cells
    from autograder.results import NotebookRun
    cells = [(0, ADDED["script"], "answer"), (1, ADDED["flood"], "answer"), (2, ADDED["result"], "answer"),
             (3, ADDED["figure"], "answer"), (4, ADDED["error"], "answer")]
    outputs = {}
    outcomes = run_notebook_cells(cells, NotebookRun(60, 120, str(tmp_path)), outputs=outputs)
    assert [outcomes[i].status for i in range(5)] == ["ok"] * 4 + ["error"]
    assert outputs[0] == [["stdout", "<script>alert(1)</script>\n"]] and outputs[2] == [["result", "42"]]
    assert outputs[1][0][0] == "stdout" and len(outputs[1][0][1]) < MAX_OUTPUT_TEXT + 100 and "cut" in outputs[1][0][1]
    assert [k for k, _ in outputs[3]] == ["result", "png"]              # plt.title's Text, then the figure
    assert outputs[4] == [["error", "ZeroDivisionError: division by zero"]]


def test_what_is_kept_is_capped_and_typed():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    budget = [10 ** 6]
    kept = capped_outputs([["png", png], ["png", base64.b64encode(b"<svg onload=alert(1)>").decode()],
                           ["html", "<b>x</b>"], ["stdout", 42], "junk", ["stdout", "x" * (MAX_OUTPUT_TEXT + 5)],
                           ["png", "A" * (MAX_OUTPUT_IMAGE + 1)]], budget)
    assert [k for k, _ in kept] == ["png", "stdout", "stderr"]                      # a forged figure, HTML, junk: dropped
    assert kept[1][1].startswith("x" * MAX_OUTPUT_TEXT) and "cut" in kept[1][1]
    assert kept[2][1] == "[a figure too large to keep]\n"
    assert capped_outputs([["stdout", "y" * 100]], [50]) == [] and capped_outputs("not a list", [100]) == []
