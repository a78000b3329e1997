"""The class report: one self-contained HTML page for the instructor (`DIR/class_report.html`).

Per lab: how many handed in, the mean and median score, full marks, zeros, grader errors; the
score distribution (a histogram per lab); each check's pass rate, lowest first (the exercise that
confused the class); the leaderboard of each check that measures an accuracy on the hidden split
(the capstone's: its top `LEADERS`); and the slowest notebooks. Plots are matplotlib PNGs inlined as data URLs,
so the page opens anywhere, offline, and can be mailed as one file.
"""
from __future__ import annotations

import base64
import html
import io
import statistics

from .report import leaderboard
from .results import Result

SLOWEST = 10
LEADERS = 10


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(labs: list[str], by_lab: dict[str, list[Result]], rates: dict[str, list[tuple[str, float]]]) -> dict[str, str]:
    """{'distribution': png, 'checks': png} as base64."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    figs = {}
    cols = min(4, len(labs))
    rows = -(-len(labs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, lab in zip(axes.flat, labs):
        handed = [r for r in by_lab[lab] if r.handed_in]
        shares = [100 * r.score / r.max_score if r.max_score else 0 for r in handed]
        ax.hist(shares, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="#4c72b0", edgecolor="white")
        ax.set_title(f"{lab} (n={len(handed)})", fontsize=10)
        ax.set_xlim(0, 100)
        ax.set_xlabel("score (% of points)", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(labs):]:
        ax.axis("off")
    fig.tight_layout()
    figs["distribution"] = _png(fig)
    plt.close(fig)

    names = [f"{lab} · {check}" for lab in labs for check, _ in rates[lab]]
    values = [100 * rate for lab in labs for _, rate in rates[lab]]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(names) + 0.8))
    ax.barh(range(len(names)), values, color=["#c44e52" if v < 50 else "#dd8452" if v < 80 else "#55a868" for v in values])
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("students who passed the check (%)", fontsize=8)
    fig.tight_layout()
    figs["checks"] = _png(fig)
    plt.close(fig)
    return figs


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
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{count} notebook(s) of {students} student(s).</p>
<h2>Labs</h2>
<table id="labs"><thead><tr><th>lab</th><th>handed in</th><th>missing</th><th>mean</th><th>median</th><th>full marks</th><th>zero</th><th>grader errors</th></tr></thead><tbody>
{lab_rows}
</tbody></table>
<h2>Score distribution</h2>
<img id="distribution" alt="score distribution per lab" src="data:image/png;base64,{distribution}">
<h2>Checks, hardest first</h2>
<img id="checks" alt="pass rate per check" src="data:image/png;base64,{checks}">
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
    figs = _figures(labs, by_lab, rates)
    return _PAGE.format(title=e(title), count=len(results), students=len({r.student for r in results}),
                        lab_rows="\n".join(lab_rows), check_rows="\n".join(check_rows), slow_rows="\n".join(slow_rows), leaders="".join(leaders),
                        distribution=figs["distribution"], checks=figs["checks"])
