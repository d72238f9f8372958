"""The dashboard page: one section per source, each a Plotly chart (or a note saying why there is
none and which command makes it), tables where a chart hides the text, as one HTML document.

The figures travel as one JSON document inside the page (``<`` escaped, so no report text can end
the script element); every other piece of report text is HTML-escaped. plotly.js is loaded from
``<asset_base>plotly.min.js``: ``dashboard/`` under the service's ``/dashboard``, the folder itself
in a static export, which therefore works opened from disk.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.dashboard import figures, performance
from flywheel.dashboard.assets import PLOTLY_JS, plotly_js
from flywheel.dashboard.data import Snapshot, gather
from flywheel.workdir import Workdir

SERVED_ASSETS = "dashboard/"  # relative to the service's /dashboard: /dashboard/plotly.min.js
ALERT_ROWS = 50  # the newest alerts in the table
STYLE = """
body{font-family:system-ui,sans-serif;margin:0 2em 3em;color:#222;max-width:1400px}
header{border-bottom:1px solid #ddd;margin-bottom:1em}h1{margin:.6em 0 .1em}h2{margin:1.6em 0 .3em}
nav a{margin-right:1em}.note{color:#555;margin:.2em 0 .6em}.empty{color:#8a5a00;background:#fff8e6;
padding:.6em 1em;border-left:3px solid #e0a800}code{background:#f2f2f2;padding:0 .25em}
table{border-collapse:collapse;font-size:.9em;margin-top:.6em}td,th{padding:3px 10px;
border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}.text{white-space:pre-wrap}
.chart{width:100%}#no-plotly{color:#b00}
"""


@dataclass(frozen=True)
class Section:
    """One part of the page. ``note``, ``empty`` and ``extra`` are HTML (escaped by their maker)."""

    key: str
    title: str
    figure: dict[str, Any] | None
    note: str = ""
    empty: str = ""  # shown when there is no figure
    extra: str = ""  # after the chart: a table


def build(
    config: FlywheelConfig, workdir: Workdir, client: Any | None, asset_base: str = SERVED_ASSETS
) -> str:
    """The page of ``config``'s use case from ``workdir`` and the registry ``client`` (None: none)."""
    snapshot = gather(workdir, client, config.registry.model_name)
    return render(snapshot, config, asset_base)


def export(config: FlywheelConfig, workdir: Workdir, client: Any | None, out: Path) -> Path:
    """Write the page as ``out/index.html`` with plotly.js and the newest HTML drift report beside
    it, for opening from disk or sharing; returns the page's path."""
    snapshot = gather(workdir, client, config.registry.model_name)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plotly_js(), out / PLOTLY_JS)
    if snapshot.drift_page is not None:
        (out / "reports").mkdir(exist_ok=True)
        shutil.copyfile(snapshot.drift_page, out / "reports" / snapshot.drift_page.name)
    page = out / "index.html"
    page.write_text(render(snapshot, config, asset_base=""), encoding="utf-8")
    return page


def render(snapshot: Snapshot, config: FlywheelConfig, asset_base: str) -> str:
    sections = [
        _performance(snapshot, config),
        _drift(snapshot, asset_base),
        _predictions(snapshot, config.spec.api.score_field),
        _versions(snapshot, config.registry.model_name),
        _retrains(snapshot),
        _rollout(snapshot),
        _alerts(snapshot),
    ]
    charts = {f"chart-{s.key}": _finite(s.figure) for s in sections if s.figure is not None}
    # inside <script>, "</script" or "<!--" would end or derail the element: no "<" survives
    embedded = json.dumps(charts, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    use_case = escape(config.use_case)
    body = "".join(_section(s) for s in sections)
    nav = "".join(f'<a href="#{s.key}">{escape(s.title)}</a>' for s in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Flywheel · {use_case} · monitoring</title><style>{STYLE}</style>
<link rel="icon" href="data:,"></head><body>
<header><h1>{use_case}: monitoring</h1>
<p class="note">Model <code>{escape(config.registry.model_name)}</code>; gathered
{figures.moment(snapshot.gathered_at)} UTC. Charts are interactive: hover, zoom, double-click to reset.</p>
<p id="no-plotly" hidden>plotly.js did not load ({escape(asset_base)}{PLOTLY_JS}): no chart can be drawn.</p>
<nav>{nav}</nav></header>
{body}
<script type="application/json" id="figures">{embedded}</script>
<script src="{escape(asset_base)}{PLOTLY_JS}"></script>
<script>
(function () {{
  var charts = JSON.parse(document.getElementById("figures").textContent);
  if (typeof Plotly === "undefined") {{ document.getElementById("no-plotly").hidden = false; return; }}
  Object.keys(charts).forEach(function (id) {{
    Plotly.newPlot(id, charts[id].data, charts[id].layout, {{displaylogo: false, responsive: true}});
  }});
}})();
</script></body></html>
"""


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null (reports may hold them; JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _section(s: Section) -> str:
    chart = f'<div class="chart" id="chart-{s.key}"></div>' if s.figure is not None else ""
    empty = f'<p class="empty">{s.empty}</p>' if s.figure is None and s.empty else ""
    note = f'<p class="note">{s.note}</p>' if s.note else ""
    return f'<section id="{s.key}"><h2>{escape(s.title)}</h2>{note}{empty}{chart}{s.extra}</section>\n'


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


def _performance(snapshot: Snapshot, config: FlywheelConfig) -> Section:
    title = "Performance over time"
    report = snapshot.performance
    if report is None:
        return Section(
            "performance",
            title,
            None,
            empty="No performance report yet: run <code>flywheel monitor performance</code> once predictions "
            "have been logged (<code>flywheel serve</code> or <code>flywheel simulate traffic</code>).",
        )
    rules = config.retrain
    figure = performance.figure(report.content, rules.performance_metric, rules.performance_bound)
    content = report.content
    estimates = any(isinstance(p, dict) and p.get("estimated") for p in content.get("periods") or [])
    note = (
        f"From <code>{escape(report.name)}</code>: {content.get('predictions', 0):,} predictions, labels "
        f"observed until {escape(str(content.get('observed_until', '?')))[:10]} (horizon "
        f"{escape(str(content.get('horizon_days', '?')))} days). Solid: realized from labels"
        + (
            "; dashed: estimated, shaded: its band; ✕: realized outside the band (concept shift)"
            if estimates
            else " (this report has no estimates)"
        )
        + "; bars: predictions and labelled predictions per period (right axis); grey: labels pending."
    )
    empty = (
        f"The newest performance report (<code>{escape(report.name)}</code>) has no periods: "
        "no logged prediction has a data time yet."
    )
    return Section("performance", title, figure, note=note, empty=empty)


def _drift(snapshot: Snapshot, asset_base: str) -> Section:
    title = "Drift per column"
    if not snapshot.drift:
        return Section(
            "drift",
            title,
            None,
            empty="No drift report yet: run <code>flywheel monitor drift</code> "
            "(or <code>--source log</code> for the served traffic).",
        )
    newest = snapshot.drift[-1]
    content = newest.content
    verdict = "dataset drift" if content.get("dataset_drift") else "no dataset drift"
    share = content.get("drifted_share")
    note = (
        f"{len(snapshot.drift)} drift report(s); the newest ({figures.moment(newest.created)} UTC, "
        f"{escape(str(content.get('current', '')))}): {verdict}"
        + (f", {share:.0%} of columns drifted" if isinstance(share, int | float) else "")
        + ". Red: drifted; hover for each column's statistic."
    )
    if snapshot.drift_page is not None:
        link = f"{escape(asset_base)}reports/{escape(snapshot.drift_page.name)}"
        note += f' <a href="{link}">The newest report in full</a>.'

    return Section("drift", title, figures.drift(snapshot.drift), note=note)


def _predictions(snapshot: Snapshot, score_name: str) -> Section:
    found = snapshot.predictions
    title = "Prediction distribution"
    error = f" One log could not be read: {escape(found.error)}." if found.error else ""
    if not found.scores:
        return Section(
            "predictions",
            title,
            None,
            empty="No prediction logged yet: serve traffic (<code>flywheel serve</code>) or run "
            f"<code>flywheel simulate traffic</code>.{error}",
        )
    note = (
        f"The newest {len(found.scores):,} predictions of {found.logs} log(s), answered "
        f"{escape(str(found.first))[:19]} … {escape(str(found.last))[:19]} UTC, by model version.{error}"
    )
    return Section("predictions", title, figures.predictions(found, score_name), note=note)


def _versions(snapshot: Snapshot, model_name: str) -> Section:
    title = "Model versions and promotions"
    history = snapshot.registry
    name = escape(model_name)
    if history is None or (not history.versions and history.error is None):
        return Section(
            "versions",
            title,
            None,
            empty=f"No version of <code>{name}</code> registered yet: "
            "run <code>flywheel pipeline run</code>.",
        )
    if history.error is not None:
        return Section("versions", title, None, empty=escape(history.error))
    champion = next((v["version"] for v in history.versions if "champion" in v["aliases"]), None)
    note = (
        f"{len(history.versions)} version(s) of <code>{name}</code>; champion "
        f"{'v' + escape(champion) if champion else 'none'}. "
        "Dots: registered (green: passed the quality gate); "
        "line: the champion over time; stars: promotions; triangles: rollbacks; diamonds: rollout decisions."
    )
    return Section("versions", title, figures.versions(history, snapshot.gathered_at), note=note)


def _retrains(snapshot: Snapshot) -> Section:
    title = "Retrain decisions"
    if not snapshot.retrains:
        return Section(
            "retrains",
            title,
            None,
            empty="No retrain decision yet: <code>flywheel retrain --check-only</code> records one, as does "
            "every tick of <code>flywheel loop</code>.",
        )
    newest = escape(str(snapshot.retrains[-1].content.get("outcome", "?")))
    note = f"{len(snapshot.retrains)} decision(s), the newest: {newest}."
    return Section(
        "retrains", title, figures.retrains(snapshot.retrains), note=note + " Hover for the triggers."
    )


def _rollout(snapshot: Snapshot) -> Section:
    title = "Rollout arms"
    history = snapshot.registry
    rollout = history.rollout if history is not None else None
    state = (
        f"Running: {escape(rollout['describe'])}, since {escape(str(rollout.get('started_at', '?')))[:19]}."
        if rollout
        else "No rollout running (<code>flywheel rollout start</code> starts one)."
    )
    rows = snapshot.performance.content.get("arms", []) if snapshot.performance is not None else []
    figure = figures.arms(rows)
    if figure is None:
        return Section(
            "rollout", title, None, empty=state + " No rollout arm in the newest performance report."
        )
    table = _table(
        ["arm", "version", "predictions", "labelled", "ROC-AUC", "PR-AUC"],
        [
            [escape(str(r.get(k, ""))) for k in ("arm", "version", "predictions", "labelled")]
            + [figures.number(r.get("roc_auc")), figures.number(r.get("pr_auc"))]
            for r in rows
            if isinstance(r, dict)
        ],
    )
    return Section(
        "rollout", title, figure, note=state + " Arms in the newest performance report:", extra=table
    )


def _alerts(snapshot: Snapshot) -> Section:
    title = "Alerts"
    if not snapshot.alerts:
        return Section("alerts", title, None, empty="No alert raised.")
    table = _table(
        ["raised at (UTC)", "kind", "text"],
        [
            [
                escape(str(figures.moment(a.get("created_at")) or a.get("created_at", ""))),
                escape(str(a.get("kind", ""))),
                f'<span class="text">{escape(str(a.get("text", "")))}</span>',
            ]
            for a in snapshot.alerts[:ALERT_ROWS]
        ],
    )
    shown = min(len(snapshot.alerts), ALERT_ROWS)
    note = f"The newest {len(snapshot.alerts)} alert(s) by kind; the newest {shown} below."
    return Section("alerts", title, figures.alerts(snapshot.alerts), note=note, extra=table)
