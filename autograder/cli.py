"""The `course` command: a thin layer over autograder's functions.

Exit codes: 0 done; 1 `build --check` found stale files or `validate` found a problem;
2 a usage or input error (bad course.yml, missing folder, unknown lab); 3 grading ran but the
grader itself failed on some submission; 4 `grade --fail-under` and a submission scored below.
Otherwise students' scores never change the exit code.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from .config import CourseError, load_course
from .i18n import LANGUAGES, set_language

_LANG_HELP = "the language students read: notebooks, messages, pages, README (default: course.yml `language`)"


def _build(args, course) -> int:
    from .build import build
    t0 = time.monotonic()
    changed = build(course, args.lab, check=args.check, languages=[args.lang] if args.lang else None,
                    report=lambda line: print(line, file=sys.stderr))
    rel = [str(p.relative_to(course.root)) if p.is_relative_to(course.root) else str(p) for p in changed]
    if args.check:
        for p in rel:
            print(f"stale: {p}")
        print(f"{len(rel)} stale file(s)" if rel else "up to date", file=sys.stderr)
        return 1 if rel else 0
    for p in rel:
        print(f"wrote {p}")
    print(f"built {len(course.select(args.lab))} lab(s) in {time.monotonic() - t0:.1f} s ({len(rel)} file(s) changed)", file=sys.stderr)
    return 0


def _grade(args, course) -> int:
    from .grade import find_submissions, parse_shard
    from .pipeline import GradeOptions, grade_to_folder
    from .progress import Progress
    from .report import failure_lines, summary_table

    out = Path(args.out)
    shard = parse_shard(args.shard) if args.shard else None
    found = find_submissions(Path(args.submissions), course, args.lab, shard)      # the class, walked once
    options = GradeOptions(args.lab, args.jobs, args.cell_timeout, args.notebook_timeout, args.memory_mb, args.engine,
                           args.device, sandboxed=not args.unsafe_no_sandbox, force=args.force,
                           gradebook=not args.no_gradebook, roster=Path(args.roster) if args.roster else None,
                           shard=shard, cluster=args.cluster, draw=args.draw)
    with Progress(len(found[0]), "grading") as bar:
        graded = grade_to_folder(Path(args.submissions), course, out, options, progress=bar.update, found=found)
    results, warnings, reused = graded.results, graded.warnings, graded.reused
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(summary_table(results))
    failures = failure_lines(results)
    if failures:
        print("\n" + "\n".join(failures))
    errors = [r for r in results if r.grader_error]
    for r in errors:
        print(f"grader error: {r.student}/{r.lab}: {r.grader_error}", file=sys.stderr)
    below = [r for r in results if args.fail_under is not None and r.score < args.fail_under / 100 * r.max_score]
    for r in below:
        print(f"below --fail-under {args.fail_under:g}%: {r.student}/{r.lab} {r.score:g}/{r.max_score:g}", file=sys.stderr)
    again = f" ({reused} unchanged since the last run, not graded again; --force regrades)" if reused else ""
    print(f"\n{len(results)} notebook(s) graded{again}; results in {out}/grades.csv and {out}/results/", file=sys.stderr)
    return 3 if errors else 4 if below else 0


def _merge(args, course) -> int:
    from .pipeline import merge_folders
    from .report import summary_table
    merged = merge_folders(Path(args.out), [Path(f) for f in args.folders], course, not args.no_gradebook)
    for w in merged.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(summary_table(merged.results))
    print(f"\n{len(merged.results)} result(s) from {len(args.folders)} folder(s) merged into {args.out} (nothing regraded)",
          file=sys.stderr)
    return 3 if any(r.grader_error for r in merged.results) else 0


def _validate(args, course) -> int:
    from .report import summary_table
    from .validate import validate
    results, problems = validate(course, args.lab, args.jobs)
    print(summary_table(results))
    for p in problems:
        print(f"FAIL {p}")
    print("all labs valid" if not problems else f"{len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


def _release(args, course) -> int:
    from .release import release
    done = release(course, Path(args.out), args.lab, force=args.force)
    for p in done.written:
        print(f"wrote {p}")
    for mine, new in done.kept:
        print(f"kept {mine}: changed since it was released; the new version is {new.name} beside it", file=sys.stderr)
    labs = len(course.select(args.lab))
    print(f"released {labs} lab(s) into {args.out} ({len(done.written)} files): students run `pip install -e .` there", file=sys.stderr)
    return 0


def _gradescope(args, course) -> int:
    from .gradescope import write_zip
    out = write_zip(course, args.lab, Path(args.out), leaderboard=args.leaderboard, unsafe_no_sandbox=args.unsafe_no_sandbox)
    print(f"wrote {out}: upload it as the programming assignment's autograder (Gradescope: Configure Autograder → Zip file)",
          file=sys.stderr)
    return 0


def _classroom(args, course) -> int:
    from .release import release
    done = release(course, Path(args.out), [args.lab], force=args.force, classroom=True)
    for mine, new in done.kept:
        print(f"kept {mine}: changed since it was written; the new version is {new.name} beside it", file=sys.stderr)
    print(f"wrote a GitHub Classroom template of lab {args.lab} into {args.out} ({len(done.written)} files): "
          f"push it as a template repository and make it the assignment's starter code", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Build, validate and grade the CNN course.")
    p.add_argument("--course", metavar="PATH",
                   help="course.yml to use, or its folder (default: the course.yml here or in a folder above)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="render templates into solutions/ and exercises/ notebooks")
    b.add_argument("--lab", action="append", metavar="ID", help="only this lab (repeatable)")
    b.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every stale file")
    b.add_argument("--lang", choices=tuple(LANGUAGES), help="only this language (default: English and every translation)")
    b.set_defaults(run=_build)

    g = sub.add_parser("grade", help="grade SUBMISSIONS/<student>/<lab>.ipynb")
    g.add_argument("submissions", metavar="SUBMISSIONS")
    g.add_argument("--lab", action="append", metavar="ID", help="only this lab (repeatable)")
    g.add_argument("--out", default="graded", metavar="DIR", help="where reports go (default: ./graded)")
    g.add_argument("--jobs", type=int, metavar="N", help="submissions graded at once (default: the cores)")
    g.add_argument("--cell-timeout", type=float, metavar="S", help="seconds per cell (default: course.yml)")
    g.add_argument("--notebook-timeout", type=float, metavar="S", help="seconds per notebook (default: course.yml)")
    g.add_argument("--fail-under", type=float, metavar="PCT",
                   help="exit 4 if any submission scores below PCT%% of its points (a course repository's CI)")
    g.add_argument("--roster", metavar="FILE",
                   help="the class list (one id per line, or a CSV with a student column): no notebook = 0, marked missing")
    g.add_argument("--no-gradebook", action="store_true", help="skip writing DIR/gradebook.db (nbgrader's)")
    g.add_argument("--shard", metavar="K/N", help="grade only the K-th of N fixed slices of the class (then `course merge`)")
    g.add_argument("--cluster", metavar="ADDR",
                   help="grade on a Dask cluster: a scheduler's address (tcp://host:8786), or `local` for a "
                        "LocalCluster of --jobs worker processes here; every worker needs this course at the same path")
    g.add_argument("--draw", type=int, metavar="N",
                   help="which random cases the checks give (default: a secret of DIR's key, the same on every rerun "
                        "into DIR); give every shard of a class graded into other folders the same N, kept to yourself")
    g.add_argument("--force", action="store_true", help="regrade everything, even unchanged submissions already in DIR")
    g.add_argument("--memory-mb", type=float, metavar="MB", help="resident memory per notebook (default: course.yml)")
    g.add_argument("--engine", choices=("fork", "kernel"), default="fork",
                   help="fork: a warm worker forks a fresh child per notebook (fast, default); "
                        "kernel: a fresh Jupyter kernel per notebook (as nbgrader)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where notebooks run: auto (default) is cuda where this machine has it; "
                        "course.yml grading.gpu decides the GPU check's points without CUDA")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox (submissions run with your rights; every result says so)")
    g.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    g.set_defaults(run=_grade)

    m = sub.add_parser("merge", help="join result folders (shards, machines) into one: reports and gradebook, nothing regraded")
    m.add_argument("out", metavar="OUT")
    m.add_argument("folders", metavar="DIR", nargs="+", help="output folders of `course grade`")
    m.add_argument("--no-gradebook", action="store_true", help="skip writing OUT/gradebook.db")
    m.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    m.set_defaults(run=_merge)

    r = sub.add_parser("release", help="write what students receive into OUT: exercises, public checks, data")
    r.add_argument("out", metavar="OUT")
    r.add_argument("--lab", action="append", metavar="ID", help="only this lab (repeatable)")
    r.add_argument("--force", action="store_true",
                   help="write into a non-empty OUT that is not an earlier release, or over released package files "
                        "changed since (other files are kept; a notebook the student changed is never overwritten)")
    r.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    r.set_defaults(run=_release)

    gs = sub.add_parser("gradescope", help="write a Gradescope autograder (.zip) for one lab")
    gs.add_argument("lab", metavar="LAB")
    gs.add_argument("out", metavar="OUT.zip")
    gs.add_argument("--leaderboard", action="store_true", help="post the scored accuracies to Gradescope's leaderboard")
    gs.add_argument("--unsafe-no-sandbox", action="store_true",
                    help="where Gradescope's container cannot start bubblewrap, grade anyway (the upload runs as root "
                         "beside the solution and can give itself full marks); default: grade nothing and say so")
    gs.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    gs.set_defaults(run=_gradescope)

    cr = sub.add_parser("classroom", help="write a GitHub Classroom template repository for one lab")
    cr.add_argument("lab", metavar="LAB")
    cr.add_argument("out", metavar="OUT")
    cr.add_argument("--force", action="store_true", help="write into a non-empty OUT that is not an earlier template")
    cr.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    cr.set_defaults(run=_classroom)

    v = sub.add_parser("validate", help="solution notebooks score full marks, blank exercises zero")
    v.add_argument("--lab", action="append", metavar="ID", help="only this lab (repeatable)")
    v.add_argument("--jobs", type=int, metavar="N", help="notebooks graded at once (default: the cores)")
    v.add_argument("--lang", choices=tuple(LANGUAGES), help=_LANG_HELP)
    v.set_defaults(run=_validate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        course = load_course(args.course)
        if getattr(args, "lang", None) and args.command != "build":     # build: which languages to build
            course = dataclasses.replace(course, language=args.lang)
        set_language(course.language)
        if getattr(args, "jobs", None) is not None and args.jobs < 1:
            raise CourseError(f"--jobs must be at least 1, got {args.jobs}")
        return args.run(args, course)
    except CourseError as e:
        print(f"course: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("course: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
