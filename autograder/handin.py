"""Hand in: the last cell of every lab calls `export(lab)`; GitHub Classroom's workflow calls
`python -m autograder.handin run|check`.

It runs the saved notebook from top to bottom in a fresh kernel (what the grader will do, less
the hidden checks), says which public checks pass and which cells fail, and writes the copy to
hand in — `hand-in/<lab>.ipynb`, the name the grader looks for — beside the notebook. On Colab
it takes the notebook from the browser and offers the file for download.

Under the grader (COURSE_GRADING) and inside its own run (COURSE_HANDIN_RUN) it does nothing.

In a GitHub Classroom repository (`course classroom`), `run NOTEBOOK` executes the notebook once
and records each public check's outcome in PUBLIC_RESULTS; then one `check LAB CHECK` per check
exits 0 or 1 with the check's line, which the autograding command grader turns into its points.
These are the public checks only: the grade comes from the instructor's `course grade`.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from autograder.i18n import gettext as _

HAND_IN_DIR = "hand-in"


def _lab_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("course", {}).get("lab")
    except (OSError, ValueError, AttributeError):
        return None


def _colab_notebook(lab: str) -> Path:
    """On Colab the notebook lives in the browser: fetch it and save it in the working folder
    (Colab's /content)."""
    from google.colab import _message  # type: ignore[import-not-found]
    nb = _message.blocking_request("get_ipynb", timeout_sec=60)["ipynb"]
    path = Path.cwd() / f"{lab}.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def find_notebook(lab: str, notebook: str | os.PathLike | None = None) -> Path:
    """The saved notebook of `lab`: `notebook` if given; else the one this kernel runs (Jupyter
    sets JPY_SESSION_NAME, VS Code __vsc_ipynb_file__), else `<lab>.ipynb` in the working folder
    (Jupyter starts a kernel in its notebook's folder). On Colab, the browser's, always (a copy
    an earlier export saved in the working folder would be stale)."""
    if not notebook and "google.colab" in sys.modules:
        return _colab_notebook(lab)
    candidates = [notebook] if notebook else []
    if not notebook:
        shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
        candidates += [os.environ.get("JPY_SESSION_NAME"),
                       shell and shell.user_ns.get("__vsc_ipynb_file__"),
                       Path.cwd() / f"{lab}.ipynb"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _lab_of(Path(candidate)) == lab:
            return Path(candidate)
    where = f"{notebook} is not a notebook of lab {lab!r}" if notebook else f"no saved notebook of lab {lab!r} found"
    raise FileNotFoundError(f"{where}: pass its path, export({lab!r}, 'path/to/{lab}.ipynb')")


def _outcomes(nb) -> tuple[list[str], dict[str, str], list[str]]:
    """(public checks passed, {check failed: its line}, other cells that raised, with theirs)."""
    passed, failed, broken = [], {}, []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        name = meta.get("grade_id", "cell")
        line = f"{errors[0]['ename']}: {str(errors[0]['evalue']).splitlines()[0] if errors[0]['evalue'] else ''}" if errors else ""
        if meta.get("grade"):
            check = name.removeprefix("check_")
            if errors:
                failed[check] = line
            else:
                passed.append(check)
        elif errors:
            broken.append(f"{name}: {line}")
    return passed, failed, broken


def run_notebook(path: Path, cell_timeout: float = 1200):
    """The notebook at `path`, executed top to bottom in a fresh kernel started in its folder
    (errors recorded in the cells, not raised)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(Path(path).resolve().parent)}})
    env = {**os.environ, "COURSE_HANDIN_RUN": "1", "MPLBACKEND": "agg"}
    language = nb.metadata.get("course", {}).get("language")
    if language and "COURSE_LANGUAGE" not in env:          # a translated notebook's checks speak its language
        env["COURSE_LANGUAGE"] = str(language)
    client.execute(env=env)
    return nb


def export(lab: str, notebook: str | os.PathLike | None = None, cell_timeout: float = 1200) -> Path | None:
    """Run the saved notebook of `lab` top to bottom in a fresh kernel and write the copy to hand
    in, `hand-in/<lab>.ipynb` beside it (outputs included). Save the notebook first (Ctrl+S):
    what is on disk is what is handed in. Returns the file written (None under the grader)."""
    if os.environ.get("COURSE_GRADING") or os.environ.get("COURSE_HANDIN_RUN"):
        print(_("hand in: not run here (the grader, or the hand-in check itself, runs this notebook)"))
        return None
    import nbformat

    path = find_notebook(lab, notebook)
    print(_("hand in: running {path} from top to bottom in a fresh kernel ...").format(path=path), flush=True)
    t0 = time.monotonic()
    nb = run_notebook(path, cell_timeout)
    passed, failed, broken = _outcomes(nb)
    out = path.parent / HAND_IN_DIR / f"{lab}.ipynb"
    out.parent.mkdir(exist_ok=True)
    nbformat.write(nb, out)
    print(_("ran in {seconds:.0f} s: {passed} of {total} public checks pass").format(
        seconds=time.monotonic() - t0, passed=len(passed), total=len(passed) + len(failed)))
    for check, line in failed.items():
        print("  " + _("check failed: {check}: {line}").format(check=check, line=line))
    for line in broken:
        print("  " + _("cell failed: {line}").format(line=line))
    print(_("wrote {path}: hand in this file (the grader also runs hidden checks)").format(path=out))
    if "google.colab" in sys.modules:
        from google.colab import files  # type: ignore[import-not-found]
        files.download(str(out))
    return out


PUBLIC_RESULTS = ".public-checks.json"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m autograder.handin", description="The public checks of a lab, for CI.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help=f"run NOTEBOOK top to bottom; record its checks in {PUBLIC_RESULTS}")
    r.add_argument("notebook")
    c = sub.add_parser("check", help="exit 0 if CHECK passed in the recorded run, else 1 with its line")
    c.add_argument("lab")
    c.add_argument("check")
    args = p.parse_args(argv)
    if args.command == "run":
        path = Path(args.notebook)
        if not path.is_file():
            print(f"handin: error: {path}: no such notebook", file=sys.stderr)
            return 2
        nb = run_notebook(path)
        passed, failed, broken = _outcomes(nb)
        lab = nb.metadata.get("course", {}).get("lab", path.stem)
        record = {"lab": lab, "passed": passed, "failed": failed,
                  "broken": broken}
        Path(PUBLIC_RESULTS).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"{lab}: {len(passed)} of {len(passed) + len(failed)} public checks pass")
        for line in [f"{check}: {why}" for check, why in failed.items()] + broken:
            print(f"  failed: {line}")
        return 0
    try:
        record = json.loads(Path(PUBLIC_RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"{args.check}: no recorded run ({PUBLIC_RESULTS}): run `python -m autograder.handin run` first")
        return 1
    if record.get("lab") != args.lab:
        print(f"{args.check}: the recorded run is of lab {record.get('lab')!r}, not {args.lab!r}")
        return 1
    if args.check in record["passed"]:
        print(f"{args.check}: passed")
        return 0
    print(f"{args.check}: {record['failed'].get(args.check, 'not run: the notebook has no such check cell, or stopped before it')}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
