"""What running one cell came to: the only thing the engines report to the grader."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    status: str            # ok | error | timeout | died | memory | not_run
    ename: str = ""
    evalue: str = ""
    seconds: float = 0.0
