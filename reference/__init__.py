"""Reference implementation of every lab (instructor-only: it is the solution).

One module per lab id of course.yml. Re-exports the student-safe runtime names.
"""
from autograder.runtime import count_params, get_device, seed_everything

__all__ = ["count_params", "get_device", "seed_everything"]
