"""Planted bugs: each edits one answer cell of a lab's solution notebook and declares exactly
which checks it must fail. The grading tests plant each bug, grade the notebook and assert that
precisely the declared checks lose their points and every other check keeps them.

One module per lab, `tests/planted/<lab>.py`, defining `BUGS: list[Bug]`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bug:
    name: str             # short, for test ids: "nms-suppresses-at-ge"
    cell: str             # grade id of the answer cell to edit (the exercise name)
    old: str              # exact text in that cell's solution source (must occur exactly once)
    new: str              # its replacement
    fails: frozenset[str]  # check names (course.yml) that must fail; all others must pass

    def apply(self, source: str) -> str:
        count = source.count(self.old)
        if count != 1:
            raise ValueError(f"bug {self.name}: {self.old!r} occurs {count} times in cell {self.cell}")
        return source.replace(self.old, self.new)


def bug(name: str, cell: str, old: str, new: str, fails: set[str] | str) -> Bug:
    return Bug(name, cell, old, new, frozenset({fails} if isinstance(fails, str) else fails))


def plant(nb, b: Bug):
    """A copy of notebook `nb` (an nbformat node) with bug `b` planted in its answer cell."""
    import copy

    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == b.cell]
    if len(cells) != 1:
        raise ValueError(f"bug {b.name}: no single answer cell {b.cell!r} in the notebook")
    cells[0].source = b.apply(cells[0].source)
    return nb


def append_to_cell(nb, grade_id: str, code: str):
    """A copy of notebook `nb` with `code` appended to the cell whose grade id is `grade_id`
    (an attack added to an answer cell)."""
    import copy

    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source += "\n\n" + code
    return nb


def all_bugs() -> dict[str, list[Bug]]:
    """The planted bugs of every lab that has a module here, by lab id."""
    import importlib
    import pkgutil

    return {m.name: importlib.import_module(f"{__name__}.{m.name}").BUGS for m in pkgutil.iter_modules(__path__)}


def planted_source(module, b: Bug) -> str:
    """The source of `module.<b.cell>` (a reference module's exercise) with bug `b` planted."""
    import inspect
    import textwrap

    return b.apply(textwrap.dedent(inspect.getsource(getattr(module, b.cell))))
