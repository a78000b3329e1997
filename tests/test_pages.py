"""The HTML pages as a browser shows them: the class report and a feedback page rendered in
headless Chromium (Debian's `chromium`, which `make test` installs where it can), with a
screenshot check that the tables and plots are drawn — not only present in the markup."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from autograder.classreport import class_report_html
from autograder.report import feedback_html
from autograder.results import CheckResult, Result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: install it (apt-get install chromium; "
                                                          "`make test` does as root) to render the pages")


def screenshot(page: Path, tmp_path: Path, height: int = 2400) -> Image.Image:
    png = tmp_path / f"{page.stem}.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--window-size=1200,{height}",
                    f"--screenshot={png}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return Image.open(png).convert("RGB")


def count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels within `tolerance` of `colour` on every channel."""
    return sum(n for n, rgb in image.getcolors(image.width * image.height)
               if all(abs(a - b) <= tolerance for a, b in zip(rgb, colour)))


def _class(course) -> list[Result]:
    results = []
    for lab in course.labs[:3]:
        for i, student in enumerate(("ann", "bob", "cyd", "dee")):
            # check j is passed by 4 - j % 4 of the 4 students: 100%, 75%, 50%, 25%
            checks = [CheckResult(n, p if i >= j % 4 else 0, p, "" if i >= j % 4 else "x: expected 1, got 2")
                      for j, (n, p) in enumerate(lab.checks.items())]
            results.append(Result(student, lab.id, f"{student}.ipynb", checks, seconds=2.0 + i))
    return results


def test_class_report_draws_its_tables_and_plots(course, tmp_path):
    page = tmp_path / "class_report.html"
    page.write_text(class_report_html(_class(course), "Course: class report"))
    shot = screenshot(page, tmp_path)
    assert count(shot, (0x4c, 0x72, 0xb0)) > 2000                     # the histograms' bars
    bars = {name: count(shot, rgb) for name, rgb in (("red", (0xc4, 0x4e, 0x52)), ("orange", (0xdd, 0x84, 0x52)),
                                                      ("green", (0x55, 0xa8, 0x68)))}
    assert all(v > 300 for v in bars.values()), bars                  # pass-rate bars, coloured by rate
    assert count(shot, (0xdd, 0xdd, 0xdd), 3) > 1000                  # the tables' rules
    assert count(shot, (0x22, 0x22, 0x22), 30) > 3000                 # text


def test_feedback_page_draws_lost_points_and_the_comment_box(course, tmp_path):
    lab = course.labs[0]
    names = list(lab.checks)
    result = Result("bob", lab.id, "b.ipynb", [CheckResult(n, 0 if n == names[0] else p, p,
                                                           "thing: expected 1, got 2 — hint" if n == names[0] else "")
                                               for n, p in lab.checks.items()])
    page = tmp_path / "feedback.html"
    page.write_text(feedback_html(result, lab.title, {names[0]: "def f():\n    return 2"}, "Well done otherwise."))
    shot = screenshot(page, tmp_path, 1000)
    assert count(shot, (0xcf, 0x22, 0x2e), 30) > 30                   # the lost check's points, in red
    assert count(shot, (0x1a, 0x7f, 0x37), 30) > 30                   # the passed ones, in green
    assert count(shot, (0x4c, 0x72, 0xb0), 10) > 100                  # the comment box's rule
