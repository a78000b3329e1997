from __future__ import annotations

from pathlib import Path

import pytest

from autograder.config import load_course

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def course():
    return load_course(ROOT / "course.yml")


# The modules that take longest (most of it: grading real notebooks in sandboxes), first: with
# `-n 2 --dist loadscope` a worker takes the next module when it is free, so a long module
# collected last leaves the other worker idle at the end (minutes, on 2 cores).
LONGEST_FIRST = ["test_grading.py", "test_channels.py", "test_cluster.py", "test_integrity.py", "test_resume.py",
                 "test_formgrader.py", "test_faults.py", "test_shards.py", "test_layouts.py", "test_judge.py",
                 "test_build.py", "test_sandbox.py", "test_outputs.py", "test_i18n.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # stable: the rest keep their order
