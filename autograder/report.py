"""Reports of a grading run: one JSON per submission (written as soon as it is known),
grades.csv for the class, and the summary table printed at the end."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from .grade import Result

CSV_FIELDS = ["student", "lab", "check", "points", "max_points", "message"]


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def result_path(out: Path, result: Result) -> Path:
    return out / "results" / result.student / f"{result.lab}.json"


def write_result(out: Path, result: Result) -> None:
    atomic_write(result_path(out, result), json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")


def read_results(out: Path) -> dict[tuple[str, str], Result]:
    """Results already written under `out` (a resumed run skips what they cover)."""
    done = {}
    for path in sorted((out / "results").glob("*/*.json")):
        try:
            result = Result.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # unreadable: grade it again
        done[result.student, result.lab] = result
    return done


def grades_csv(results: list[Result]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        for c in r.checks:
            writer.writerow({"student": r.student, "lab": r.lab, "check": c.name, "points": c.points,
                             "max_points": c.max_points, "message": c.message})
    return buf.getvalue()


def _fmt(x: float) -> str:
    return f"{x:g}"


def summary_table(results: list[Result]) -> str:
    """One row per submission: score, the checks lost, and the first message."""
    rows = [("student", "lab", "score", "time", "lost")]
    for r in results:
        lost = [c.name for c in r.checks if not c.passed]
        rows.append((r.student, r.lab, f"{_fmt(r.score)}/{_fmt(r.max_score)}", f"{r.seconds:.1f}s",
                     ", ".join(lost) if lost else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * min(100, max(len(l) for l in lines)))
    return "\n".join(lines)


def failure_lines(results: list[Result], limit: int = 30) -> list[str]:
    """`student/lab check: message` for each lost check, for the terminal."""
    lines = [f"{r.student}/{r.lab} {c.name}: {c.message}" for r in results for c in r.checks if not c.passed]
    return lines[:limit] + ([f"... and {len(lines) - limit} more in grades.csv"] if len(lines) > limit else [])


def write_reports(out: Path, results: list[Result]) -> None:
    atomic_write(out / "grades.csv", grades_csv(results))
