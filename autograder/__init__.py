"""The course machinery: configuration, build, checks, grading, reports.

`autograder.runtime` and `autograder.data` are the student-safe runtime that notebooks import;
they import nothing else of the project.
"""
