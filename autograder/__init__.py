"""The course machinery: configuration, build, checks, grading, reports.

`autograder.runtime` and `autograder.data` are the student-safe runtime that notebooks import;
they import nothing else of the project.
"""
import sys

# nbformat validates with jsonschema, which imports rfc3987_syntax where it is installed (jupyter
# events pulls it in) and builds 38 lark grammars on import: 2.5 s in every process that reads a
# notebook (the grader, each worker, the judges, each Gradescope run). Only jsonschema's "iri"
# string formats use it, and nothing here checks one: leave it out (an ImportError jsonschema
# expects). tests/test_config.py holds the notebooks' validation to what it was.
sys.modules.setdefault("rfc3987_syntax", None)
