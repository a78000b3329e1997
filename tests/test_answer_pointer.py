"""In a student's kernel, a locked cell that fails because of an answer written earlier says which
answer to fix (autograder.checks installs IPython's handler on import); other errors and the
checks' own one-line failures are shown as they were."""
from __future__ import annotations

import nbformat
from nbclient import NotebookClient

POINTER = "→ This error comes from `sgd_step`, written in an earlier cell"


def _run(tmp_path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return [[o for o in cell.outputs if o.output_type == "error"] for cell in nb.cells]


def test_a_locked_cell_names_the_answer_its_error_came_from(tmp_path):
    errors = _run(
        tmp_path,
        "from autograder.checks import losses as checks",
        "def sgd_step(params, lr):\n    return [p - lr * None for p in params]      # a wrong answer",
        "def train():\n    return sgd_step([1.0], 0.1)\ntrain()",                      # a locked demo cell
        "1 / 0",                                                                     # its own error
        "sgd_step([1.0], 0.1)",                                                      # the answer's own error, called here
        "checks.softmax(lambda z, dim=-1: z)",                                       # a check's verdict
        "try:\n    train()\nexcept TypeError as e:\n    saved = e",
        "raise saved",
        "raise saved",                                                               # shown again: one note still
    )
    demo, own, direct, check = errors[2], errors[3], errors[4], errors[5]
    again = errors[8][0].traceback
    assert sum(POINTER in line for line in again) == 1, again
    assert demo[0].ename == "TypeError" and POINTER in demo[0].traceback[-1]
    assert own[0].ename == "ZeroDivisionError" and not any("earlier cell" in line for line in own[0].traceback)
    assert POINTER in direct[0].traceback[-1]
    assert check[0].ename == "CheckFailed" and len(check[0].traceback) == 1 and "earlier cell" not in check[0].traceback[0]
    assert "earlier cell" not in demo[0].evalue          # the error's own text (what a grader reads) is unchanged


def test_answer_behind_reads_only_cell_frames():
    import sys

    from autograder.checks import answer_behind

    def library():
        raise ValueError("inside a library")

    try:
        library()
    except ValueError:
        assert answer_behind(sys.exc_info()[2]) is None       # no notebook cell on the stack
