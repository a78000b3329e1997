"""The class report: one self-contained HTML page for the instructor (`DIR/class_report.html`).

Per lab: how many handed in, the mean and median score, full marks, zeros, grader errors; the
score distribution (a histogram per lab); each check's pass rate, lowest first (the exercise that
confused the class); the leaderboard of each check that measures an accuracy on the hidden split
(the capstone's: its top `LEADERS`); and the slowest notebooks. The plots are inline SVG, drawn
here in a few milliseconds (matplotlib cost every `course grade` 3 s), so the page opens
anywhere, offline, can be mailed as one file, and its labels are text.
"""
from __future__ import annotations

import html
import statistics

from .report import leaderboard
from .results import Result

SLOWEST = 10
LEADERS = 10


BAR = "#4c72b0"
BINS = 10                      # score histogram: 0-10 %, ..., 90-100 % (100 % in the last)


def _rate_colour(percent: float) -> str:
    return "#c44e52" if percent < 50 else "#dd8452" if percent < 80 else "#55a868"


def _svg(element_id: str, label: str, width: float, height: float, body: list[str]) -> str:
    """An inline SVG chart: drawn by the browser, text selectable, nothing to load."""
    return (f'<svg id="{element_id}" role="img" aria-label="{html.escape(label)}" viewBox="0 0 {width:g} {height:g}" '
            f'width="{width:g}" height="{height:g}" font-family="system-ui, sans-serif" font-size="11">\n'
            f'<title>{html.escape(label)}</title>\n' + "\n".join(body) + "\n</svg>")


def histograms(labs: list[str], by_lab: dict[str, list[Result]]) -> str:
    """Each lab's scores of handed-in notebooks, as a share of its points, in BINS bins."""
    e = html.escape
    cols = min(4, len(labs))
    pw, ph, left, top, bottom = 260, 170, 30, 22, 34          # one panel; its plot area's margins
    width, height = pw - left - 10, ph - top - bottom
    body = []
    for k, lab in enumerate(labs):
        x0, y0 = (k % cols) * pw, (k // cols) * ph
        handed = [r for r in by_lab[lab] if r.handed_in]
        counts = [0] * BINS
        for r in handed:
            share = 100 * r.score / r.max_score if r.max_score else 0
            counts[min(BINS - 1, max(0, int(share // (100 / BINS))))] += 1
        peak = max(counts) or 1
        ax, ay = x0 + left, y0 + top
        body.append(f'<text x="{x0 + pw / 2:g}" y="{y0 + 14:g}" text-anchor="middle" font-size="12">'
                    f'{e(lab)} (n={len(handed)})</text>')
        for i, n in enumerate(counts):
            h = height * n / peak
            body.append(f'<rect class="bar" x="{ax + i * width / BINS:.1f}" y="{ay + height - h:.1f}" '
                        f'width="{width / BINS:.1f}" height="{h:.1f}" fill="{BAR}" stroke="white" data-count="{n}">'
                        f'<title>{i * 100 // BINS}-{(i + 1) * 100 // BINS} %: {n}</title></rect>')
        body.append(f'<path d="M{ax} {ay}V{ay + height}H{ax + width}" fill="none" stroke="#555"/>')
        for tick in range(0, 101, 20):
            x = ax + width * tick / 100
            body.append(f'<text x="{x:.1f}" y="{ay + height + 12:g}" text-anchor="middle" font-size="9">{tick}</text>')
        body.append(f'<text x="{ax - 4:g}" y="{ay + 8:g}" text-anchor="end" font-size="9">{peak}</text>'
                    f'<text x="{ax - 4:g}" y="{ay + height:g}" text-anchor="end" font-size="9">0</text>')
        body.append(f'<text x="{ax + width / 2:g}" y="{ay + height + 26:g}" text-anchor="middle" font-size="9">'
                    'score (% of points)</text>')
    rows = -(-len(labs) // cols)
    return _svg("distribution", "score distribution per lab", cols * pw, rows * ph, body)


def pass_rate_bars(labs: list[str], rates: dict[str, list[tuple[str, float]]]) -> str:
    """One bar per check: the share of handed-in notebooks that passed it, coloured by that share."""
    e = html.escape
    rows = [(f"{lab} · {check}", 100 * rate) for lab in labs for check, rate in rates[lab]]
    label_width = min(360, 12 + 6.2 * max((len(name) for name, _ in rows), default=0))
    bar_height, width, top = 16, 420, 6
    body = []
    for i, (name, percent) in enumerate(rows):
        y = top + i * bar_height
        body.append(f'<text x="{label_width - 6:g}" y="{y + 11:g}" text-anchor="end">{e(name)}</text>'
                    f'<rect class="bar" x="{label_width:g}" y="{y + 2:g}" width="{width * percent / 100:.1f}" '
                    f'height="{bar_height - 4}" fill="{_rate_colour(percent)}" data-percent="{percent:.1f}">'
                    f'<title>{e(name)}: {percent:.0f}%</title></rect>')
    axis = top + len(rows) * bar_height
    body.append(f'<path d="M{label_width:g} {top}V{axis}H{label_width + width:g}" fill="none" stroke="#555"/>')
    for tick in range(0, 101, 20):
        body.append(f'<text x="{label_width + width * tick / 100:.1f}" y="{axis + 12}" text-anchor="middle" '
                    f'font-size="9">{tick}</text>')
    body.append(f'<text x="{label_width + width / 2:g}" y="{axis + 26}" text-anchor="middle" font-size="9">'
                'students who passed the check (%)</text>')
    return _svg("checks", "pass rate per check", label_width + width + 20, axis + 32, body)


def check_pass_rates(results: list[Result]) -> dict[str, list[tuple[str, float]]]:
    """{lab: [(check, share of handed-in submissions that passed it)]}, lowest share first."""
    rates: dict[str, list[tuple[str, float]]] = {}
    for lab in dict.fromkeys(r.lab for r in results):
        verdicts: dict[str, list[bool]] = {}          # written answers no one has scored yet: left out
        for r in results:
            if r.lab == lab and r.handed_in:
                for c in r.checks:
                    if not c.pending:
                        verdicts.setdefault(c.name, []).append(c.passed)
        shares = [(name, sum(v) / len(v)) for name, v in verdicts.items()]
        rates[lab] = sorted(shares, key=lambda s: s[1])
    return rates


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} th, td {{ text-align: left; padding: .3rem .7rem; border-bottom: 1px solid #ddd; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
svg {{ max-width: 100%; height: auto; display: block; margin: 1rem 0; }}
</style></head><body>
<h1>{title}</h1>
<p>{count} notebook(s) of {students} student(s).</p>
<h2>Labs</h2>
<table id="labs"><thead><tr><th>lab</th><th>handed in</th><th>missing</th><th>mean</th><th>median</th><th>full marks</th><th>zero</th><th>grader errors</th></tr></thead><tbody>
{lab_rows}
</tbody></table>
<h2>Score distribution</h2>
{distribution}
<h2>Checks, hardest first</h2>
{checks}
<table id="check-rates"><thead><tr><th>lab</th><th>check</th><th>passed</th></tr></thead><tbody>
{check_rows}
</tbody></table>
{leaders}<h2>Slowest notebooks</h2>
<table id="slowest"><thead><tr><th>student</th><th>lab</th><th>seconds</th><th>of which its cells</th></tr></thead><tbody>
{slow_rows}
</tbody></table>
</body></html>
"""


def class_report_html(results: list[Result], title: str = "Class report") -> str:
    """The instructor's page for `results` (empty string when there are none)."""
    if not results:
        return ""
    e = html.escape
    by_lab: dict[str, list[Result]] = {}
    for r in results:
        by_lab.setdefault(r.lab, []).append(r)
    labs = list(by_lab)
    rates = check_pass_rates(results)
    lab_rows = []
    for lab in labs:
        handed = [r for r in by_lab[lab] if r.handed_in]
        scores = [r.score for r in handed]
        top = by_lab[lab][0].max_score
        mean = f"{statistics.fmean(scores):.1f}" if scores else "-"
        median = f"{statistics.median(scores):g}" if scores else "-"
        lab_rows.append(
            f"<tr><td>{e(lab)}</td><td class='n'>{len(handed)}</td><td class='n'>{len(by_lab[lab]) - len(handed)}</td>"
            f"<td class='n'>{mean} / {top:g}</td><td class='n'>{median}</td>"
            f"<td class='n'>{sum(1 for s in scores if s >= top)}</td><td class='n'>{sum(1 for s in scores if s <= 0)}</td>"
            f"<td class='n'>{sum(1 for r in handed if r.grader_error)}</td></tr>")
    check_rows = [f"<tr><td>{e(lab)}</td><td>{e(check)}</td><td class='n'>{100 * rate:.0f}%</td></tr>"
                  for lab in labs for check, rate in rates[lab]]
    slow = sorted((r for r in results if r.handed_in), key=lambda r: -r.seconds)[:SLOWEST]
    slow_rows = [f"<tr><td>{e(r.student)}</td><td>{e(r.lab)}</td><td class='n'>{r.seconds:.1f}</td>"
                 f"<td class='n'>{r.compute_seconds:.1f}</td></tr>" for r in slow]
    leaders = []
    for (lab, check), ranked in leaderboard(results).items():
        rows = "\n".join(f"<tr><td class='n'>{rank}</td><td>{e(r.student)}</td><td class='n'>{value:.4f}</td>"
                         f"<td class='n'>{r.score:g} / {r.max_score:g}</td></tr>" for rank, value, r in ranked[:LEADERS])
        leaders.append(f"<h3>{e(lab)} · {e(check)}</h3>\n<table id='leaderboard-{e(lab)}-{e(check)}'><thead><tr><th>rank</th><th>student</th>"
                       f"<th>accuracy (hidden split)</th><th>score</th></tr></thead><tbody>\n{rows}\n</tbody></table>\n")
    if leaders:
        leaders.insert(0, f"<h2 id='leaderboard'>Leaderboard</h2>\n<p>The best {LEADERS} of each check that measures an "
                          "accuracy on the hidden split (all of them in <code>leaderboard.csv</code>).</p>\n")
    return _PAGE.format(title=e(title), count=len(results), students=len({r.student for r in results}),
                        lab_rows="\n".join(lab_rows), check_rows="\n".join(check_rows), slow_rows="\n".join(slow_rows), leaders="".join(leaders),
                        distribution=histograms(labs, by_lab), checks=pass_rate_bars(labs, rates))
