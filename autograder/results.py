"""What grading produces, as plain data with its JSON: a cell's Outcome (what the engines
report), a CheckResult (the judge's verdict and points) and a submission's Result; and
NotebookRun, how either engine runs one notebook. The worker imports this module too: nothing
here imports the grader."""
from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Outcome:
    """What running one cell came to: the only thing the engines report about a cell."""
    status: str            # ok | error | timeout | died | memory | not_run
    ename: str = ""
    evalue: str = ""
    seconds: float = 0.0


# What a cell showed, as the grader keeps it for nbgrader's autograded/ notebook: [kind, text]
# pairs, kind one of OUTPUT_KINDS ("png": base64 of a PNG, the figures a cell left open). Untrusted
# (the student's code wrote them): capped where they are made, again in the worker and the grader.
OUTPUT_KINDS = ("stdout", "stderr", "result", "display", "png", "error")
MAX_OUTPUT_TEXT = 10_000          # characters kept of one text output
MAX_OUTPUT_IMAGE = 400_000        # base64 characters of one PNG (larger figures are left out)
MAX_OUTPUTS = 2_000_000           # characters of all the outputs one notebook keeps


def capped_outputs(items, budget: list[int]) -> list[list[str]]:
    """`items` ([kind, text] pairs) as the grader keeps them: unknown kinds and non-text dropped,
    text cut to MAX_OUTPUT_TEXT, a PNG over MAX_OUTPUT_IMAGE left out (a line says so), all within
    the characters left in `budget[0]` (which this lowers)."""
    kept = []
    for item in items if isinstance(items, list) else []:
        if not (isinstance(item, list) and len(item) == 2 and item[0] in OUTPUT_KINDS and isinstance(item[1], str)):
            continue
        kind, text = item
        if kind == "png" and len(text) > MAX_OUTPUT_IMAGE:
            kind, text = "stderr", "[a figure too large to keep]\n"
        elif kind == "png" and not _is_png(text):
            continue
        elif kind != "png" and len(text) > MAX_OUTPUT_TEXT:
            text = text[:MAX_OUTPUT_TEXT] + "\n[… output cut]\n"
        if len(text) > budget[0]:
            break
        budget[0] -= len(text)
        kept.append([kind, text])
    return kept


def _is_png(text: str) -> bool:
    import base64
    import binascii
    try:
        return base64.b64decode(text[:64], validate=True).startswith(b"\x89PNG\r\n\x1a\n") and \
            len(base64.b64decode(text, validate=True)) > 0
    except (binascii.Error, ValueError):
        return False


MAX_HEADER = 16 << 20      # of one probe record's JSON: the grader parses it (a larger one is no record)
JUDGE_SECONDS = 120.0      # judging one submission's checks takes longer: the rest fail


def record_path(folder: str, index: int) -> str:
    """Where the probe of check cell `index` writes its record (autograder.witness)."""
    return f"{folder}/{index}"


@dataclass(frozen=True)
class NotebookRun:
    """How an engine runs one notebook: both engines take it (`run_notebook_forked` in
    autograder.forked, `run_notebook_cells` in autograder.execute)."""
    cell_timeout: float
    notebook_timeout: float
    workdir: str
    env: dict = field(default_factory=dict)
    lab: str = ""                    # its check cells are probed (autograder.witness)
    probe_dir: str = ""              # where the probes' records go
    threads: int | None = None
    memory_mb: float | None = None   # the fork engine enforces it
    sandboxed: bool = False
    draw: int = 0                    # the grading run's (autograder.witness.draw): its check process's


def valid_text(value):
    """`value` (a str, or lists and dicts of them) with each lone surrogate replaced by U+FFFD.
    JSON's escapes ("\\ud800") and Python's str allow one; UTF-8 does not, so one in a message,
    an output or a cell would stop every report of the class from being written."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return type(value)(valid_text(v) for v in value)
    if isinstance(value, dict):
        return type(value)({valid_text(k): valid_text(v) for k, v in value.items()})
    return value


@dataclass
class CheckResult:
    name: str
    points: float
    max_points: float
    message: str = ""          # empty when the check passed
    measured: float | None = None  # what a scored check measured (an accuracy), for leaderboards
    by_hand: bool = False      # a written answer: scored by a person (formgrader), not by the grader
    pending: bool = False      # ... and not scored yet: 0 points for now, never a lost check

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass
class Result:
    student: str
    lab: str
    path: str
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)   # about the submission as a whole
    seconds: float = 0.0                             # restore + run + score, in the worker
    compute_seconds: float = 0.0                     # of which the notebook's own cells ran
    grader_error: str = ""                           # the grader itself failed (not the student)
    fingerprint: str = ""                            # of the submission and what graded it
    sandboxed: bool = True                           # False: --unsafe-no-sandbox
    submitted_at: str = ""                           # ISO 8601 UTC, from nbgrader's timestamp.txt
    handed_in: bool = True                           # False: on the roster, no notebook (0 points)
    late_penalty: float = 0.0                        # points taken off the checks' sum (course.yml grading.late)
    outputs: dict | None = field(default=None, repr=False, compare=False)   # {cell index: capped outputs}
    #                  of the run that made this result: kept beside it, never in its JSON (autograded/)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks) - self.late_penalty

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def pending_points(self) -> float:
        """Points of written answers no one has graded yet."""
        return sum(c.max_points for c in self.checks if c.pending)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outputs"}
        data.update(checks=[asdict(c) for c in self.checks], notes=list(self.notes))
        return {**data, "score": self.score, "max_score": self.max_score, "pending_points": self.pending_points}

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        d = {k: valid_text(v) for k, v in d.items() if k not in ("score", "max_score", "pending_points")}
        return cls(**{**d, "checks": [CheckResult(**c) for c in d["checks"]]})

    def with_valid_text(self) -> "Result":
        """This result with every text UTF-8 can write (`valid_text`): what reaches the reports."""
        result = Result.from_dict(self.to_dict())
        result.outputs = valid_text(self.outputs)
        return result


def read_records(blob: bytes, index: Any) -> dict[int, tuple[dict, bytes]]:
    """The probes' records the worker sent: {cell index: (header, data)}; a record that does not
    parse is left out (its check then fails: no record)."""
    records = {}
    if not isinstance(index, list):
        return records
    for entry in index[:1000]:
        try:
            cell, offset, size = (int(v) for v in entry)
            if offset < 0 or size < 8 or offset + size > len(blob):
                continue
            head, data_size = struct.unpack(">II", blob[offset:offset + 8])
            if 8 + head + data_size != size or head > MAX_HEADER:
                continue
            header = json.loads(blob[offset + 8:offset + 8 + head])
            if isinstance(header, dict):
                records[cell] = (header, blob[offset + 8 + head:offset + size])
        except (TypeError, ValueError, RecursionError):
            continue
    return records
