"""The drift report as one static HTML page: a summary, a table of every column's statistic, and
per column an inline SVG of reference vs current shares on the reference bins. Its size is fixed by
the number of columns and bins, never by the number of rows."""

from __future__ import annotations

from html import escape
from typing import Any

from flywheel.monitoring.drift import ColumnDrift, DriftReport, psi_level

WIDTH, HEIGHT, PAD = 520, 150, 24
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}.drift{color:#b00;font-weight:600}
.card{display:inline-block;margin:0 18px 22px 0;vertical-align:top}.legend span{margin-right:12px}
.ref{color:#4c72b0}.cur{color:#dd8452}
"""


def _bars(column: ColumnDrift) -> str:
    n = len(column.bins)
    if n == 0:
        return ""
    top = max([*column.reference_share, *column.current_share, 1e-9])
    slot = (WIDTH - 2 * PAD) / n
    bar = slot * 0.4
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT + 20}" role="img">']
    for i, (label, ref, cur) in enumerate(
        zip(column.bins, column.reference_share, column.current_share, strict=True)
    ):
        x = PAD + i * slot
        for offset, share, colour in ((0, ref, "#4c72b0"), (bar, cur, "#dd8452")):
            h = (HEIGHT - PAD) * share / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{HEIGHT - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)}: {share:.1%}</title></rect>'
            )
    parts.append(
        f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" stroke="#999"/>'
        f'<text x="{PAD}" y="{HEIGHT + 15}" font-size="10">{escape(column.bins[0])}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT + 15}" font-size="10" text-anchor="end">'
        f"{escape(column.bins[-1])}</text></svg>"
    )
    return "".join(parts)


def _row(c: ColumnDrift) -> str:
    psi = f"{c.psi:.3f} ({psi_level(c.psi)})" if c.psi is not None else ""
    flag = '<span class="drift">yes</span>' if c.drifted else "no"
    return (
        f"<tr><td>{escape(c.column)}</td><td>{c.kind}</td><td>{c.test}</td><td>{c.score:.4g}</td>"
        f"<td>{c.threshold:g}</td><td>{flag}</td><td>{psi}</td><td>{c.rows:,}</td></tr>"
    )


def render(report: DriftReport, meta: dict[str, Any]) -> str:
    columns = [*report.columns, *([report.prediction] if report.prediction else [])]
    verdict = "DATASET DRIFT" if report.dataset_drift else "no dataset drift"
    cards = "".join(
        f'<div class="card"><b>{escape(c.column)}</b> — {c.test} {c.score:.4g} '
        f"{'<span class=drift>drifted</span>' if c.drifted else ''}<br>{_bars(c)}</div>"
        for c in columns
    )
    skipped = meta.get("skipped_rows")
    skipped_note = f" {skipped:,} unreadable prediction-log rows were skipped." if skipped else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Drift: {escape(meta["current"])}</title><style>{STYLE}</style></head><body>
<h1>Drift report</h1>
<p>{escape(meta["current"])} ({report.current_rows:,} rows) vs the training data of champion
v{escape(str(meta["champion_version"]))} ({report.reference_rows:,} rows);
created {escape(meta["created_at"])}.{skipped_note}</p>
<p class="{"drift" if report.dataset_drift else ""}">{verdict}: {report.drifted_share:.0%} of columns drifted
(threshold {report.share_threshold:.0%}).</p>
<table><tr><th>column</th><th>type</th><th>test</th><th>score</th><th>threshold</th><th>drifted</th>
<th>PSI</th><th>rows</th></tr>{"".join(_row(c) for c in columns)}</table>
<h2>Distributions</h2><p class="legend"><span class="ref">■ reference (training)</span>
<span class="cur">■ current</span></p>{cards}</body></html>
"""
