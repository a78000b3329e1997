"""The built-in process pool against a Dask LocalCluster on the same class, side by side in one run,
and what that means for a course of 8,000 notebooks on N machines. Prints figures; asserts only
that every notebook scores full marks both ways.

    .venv/bin/python benchmarks/cluster.py [--lab ID ...] [--copies N] [--jobs J]

The class: N copies (default 2) of the solution of each lab (default: every lab), graded with
--jobs J (default: the cores) by the pool (`grade_class(jobs=J)`) and by a LocalCluster of J
worker processes of one thread (`--cluster local --jobs J`). For each:
    wall        seconds for the whole class, start-up included (the cluster's start and the
                workers' warm-up count: a real run pays them)
    per nb      wall / notebooks
    throughput  notebooks per minute
    overhead    per notebook, the slot-seconds not spent in the notebooks' own cells:
                (wall x J - sum of the cells' seconds) / notebooks
    graded s    mean seconds one notebook takes in its slot (restore + run + judge + score)
    start s     what is left of wall: starting the pool or cluster and its warm-up, the last
                notebooks' tail (wall - sum of graded s / J)
Then the hours 8,000 notebooks of this lab mix take on N such machines (a Dask cluster of N
machines, J slots each): the cluster's start + 8,000 x its graded s / (J x N).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.config import load_course  # noqa: E402
from autograder.grade import grade_class  # noqa: E402

CLASS_SIZE = 8000
MACHINES = (1, 4, 16, 64)


def _class(course, labs, copies: int, folder: Path) -> int:
    for i in range(copies):
        for lab in labs:
            dest = folder / f"s{i:03d}" / f"{lab.id}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(course.solution_path(lab.id), dest)
    return copies * len(labs)


def _run(course, labs, folder: Path, jobs: int, cluster: bool) -> tuple[float, list]:
    t0 = time.perf_counter()
    ids = [lab.id for lab in labs]
    if cluster:
        from autograder.cluster import open_cluster
        with open_cluster("local", jobs) as client:
            results, _ = grade_class(folder, course, ids, cluster=client)
    else:
        results, _ = grade_class(folder, course, ids, jobs=jobs)
    wall = time.perf_counter() - t0
    bad = [(r.student, r.lab, r.score, r.max_score) for r in results if r.score != r.max_score - r.pending_points]
    assert not bad, bad
    return wall, results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lab", action="append")
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    course = load_course(ROOT / "course.yml")
    labs = course.select(args.lab)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        n = _class(course, labs, args.copies, Path(tmp))
        print(f"{n} notebooks ({args.copies} x the solution of {len(labs)} lab(s)), --jobs {args.jobs}, "
              f"{os.cpu_count()} cores", flush=True)
        for name, cluster in (("pool", False), ("LocalCluster", True)):
            wall, results = _run(course, labs, Path(tmp), args.jobs, cluster)
            cells = sum(r.compute_seconds for r in results)
            graded = sum(r.seconds for r in results) / n
            rows[name] = (wall, wall / n, 60 * n / wall, (wall * args.jobs - cells) / n, graded,
                          wall - graded * n / args.jobs)
    print(f"{'':<14}{'wall s':>8}{'per nb s':>10}{'nb/min':>8}{'overhead s':>12}{'graded s':>10}{'start s':>9}")
    for name, (wall, per, rate, overhead, graded, start) in rows.items():
        print(f"{name:<14}{wall:>8.1f}{per:>10.2f}{rate:>8.1f}{overhead:>12.2f}{graded:>10.2f}{start:>9.1f}")
    _, _, _, _, graded, start = rows["LocalCluster"]
    print(f"\n{CLASS_SIZE:,} notebooks of this mix on N machines like this one ({args.jobs} slots each):")
    for machines in MACHINES:
        hours = (start + CLASS_SIZE * graded / (args.jobs * machines)) / 3600
        print(f"  N = {machines:>3}: {hours:6.2f} h")


if __name__ == "__main__":
    main()
