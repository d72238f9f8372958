"""The dashboard's Plotly figures as plain dicts (``{"data": [...], "layout": {...}}``), built from
the gathered sections without Plotly's Python package: the page hands them to plotly.js as they are.

Each function takes one section's data and returns its figure, or None when there is nothing to
draw (the page then says why). Text that comes from reports (column names, reasons, alert texts) is
HTML-escaped before it goes into hover text, which plotly.js renders as markup. Times are UTC,
written as ``YYYY-MM-DD HH:MM:SS`` (plotly.js reads no time zones).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from flywheel.dashboard.data import Predictions, RegistryHistory, Report

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd"
# a retrain decision's outcome, coarsely, in the order of the timeline's rows (bottom to top)
OUTCOMES = {
    "no retrain": GREY,
    "would retrain": ORANGE,
    "retrain failed": RED,
    "not promoted": PURPLE,
    "rolling out": BLUE,
    "promoted": GREEN,
}
MAX_HOVER = 300  # characters of a report's text in a hover label


def layout(**extra: Any) -> dict[str, Any]:
    """The layout every figure starts from."""
    return {
        "height": 360,
        "margin": {"l": 70, "r": 70, "t": 30, "b": 50},
        "hovermode": "closest",
        # above the plot, right: below it the legend and the x axis's title overlap
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        **extra,
    }


def moment(value: datetime | str | None) -> str | None:
    """A time as plotly.js reads it (UTC, no zone), or None when it is no time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def number(value: Any, digits: int = 4) -> str:
    """A figure for a hover label: ``-`` when missing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}"


def text(value: Any) -> str:
    """Report text, escaped and cut for a hover label."""
    value = str(value)
    return escape(value if len(value) <= MAX_HOVER else value[: MAX_HOVER - 1] + "…")


def version_number(version: Any) -> int | None:
    try:
        return int(version)
    except (TypeError, ValueError):
        return None


def drift(reports: list[Report]) -> dict[str, Any] | None:
    """Columns × report time: drifted (red) or not, each cell's statistic in its hover; above it, the
    share of drifted columns per report against the dataset-drift threshold."""
    if not reports:
        return None
    times, seen = [], Counter()
    for report in reports:
        label = moment(report.created) or report.name
        seen[label] += 1
        times.append(label if seen[label] == 1 else f"{label} ({seen[label]})")  # two in one second
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for i, report in enumerate(reversed(reports)):  # the newest report's column order first
        prediction = report.content.get("prediction")
        entries = [
            *([prediction] if isinstance(prediction, dict) else []),
            *report.content.get("columns", []),
        ]
        for entry in entries:
            if isinstance(entry, dict) and "column" in entry:
                name = str(entry["column"]) + (" (prediction)" if entry is prediction else "")
                cells.setdefault(name, {})[len(reports) - 1 - i] = entry
    names = list(cells)
    z = [[_drifted(cells[n].get(j)) for j in range(len(times))] for n in names]
    hover = [[_drift_hover(n, times[j], cells[n].get(j)) for j in range(len(times))] for n in names]
    shares = [r.content.get("drifted_share") for r in reports]
    flagged = [bool(r.content.get("dataset_drift")) for r in reports]
    threshold = next(
        (r.content["share_threshold"] for r in reversed(reports) if "share_threshold" in r.content), None
    )
    data: list[dict[str, Any]] = [
        {
            "type": "heatmap",
            "x": times,
            "y": [escape(n) for n in names],
            "z": z,
            "text": hover,
            "hovertemplate": "%{text}<extra></extra>",
            "zmin": 0,
            "zmax": 1,
            "colorscale": [[0, "#e4efe4"], [0.5, "#e4efe4"], [0.5, RED], [1, RED]],
            "showscale": False,
            "xgap": 1,
            "ygap": 1,
            "name": "drifted",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": times,
            "y": shares,
            "yaxis": "y2",
            "name": "share of columns drifted",
            "line": {"color": GREY},
            "marker": {"color": [RED if f else GREY for f in flagged], "size": 8},
            "hovertemplate": "%{x}<br>%{y:.0%} of columns drifted<extra></extra>",
        },
    ]
    if threshold is not None:
        data.append(_level(times, threshold, "dataset-drift threshold", "y2"))
    return {
        "data": data,
        "layout": layout(
            height=max(320, 140 + 20 * len(names)),
            xaxis={"type": "category", "title": {"text": "report (UTC)"}, "automargin": True},
            yaxis={"domain": [0, 0.76], "autorange": "reversed", "automargin": True, "type": "category"},
            yaxis2={
                "domain": [0.82, 1],
                "range": [0, 1.05],
                "tickformat": ".0%",
                "title": {"text": "drifted"},
            },
            showlegend=False,
        ),
    }


def _drifted(entry: dict[str, Any] | None) -> int | None:
    return None if entry is None else int(bool(entry.get("drifted")))


def _drift_hover(name: str, time: str, entry: dict[str, Any] | None) -> str:
    if entry is None:
        return f"{escape(name)}<br>{time}<br>not in this report"
    psi = f"<br>PSI {number(entry.get('psi'), 3)}" if entry.get("psi") is not None else ""
    return (
        f"{escape(name)}<br>{time}<br>{text(entry.get('test', '?'))} {number(entry.get('score'))} "
        f"(threshold {number(entry.get('threshold'), 3)}){psi}<br>"
        f"{'drifted' if entry.get('drifted') else 'not drifted'}"
    )


def _level(x: list[Any], value: float, name: str, axis: str = "y") -> dict[str, Any]:
    """A dotted horizontal line at ``value`` across ``x``."""
    return {
        "type": "scatter",
        "mode": "lines",
        "x": [x[0], x[-1]],
        "y": [value, value],
        "yaxis": axis,
        "name": name,
        "line": {"color": GREY, "dash": "dot", "width": 1},
        "hovertemplate": f"{escape(name)}: {number(value, 3)}<extra></extra>",
    }


def predictions(found: Predictions, score_name: str, bins: int = 20) -> dict[str, Any] | None:
    """The newest predictions' scores in ``bins`` bins (a multiclass model's: the predicted
    classes), stacked by model version."""
    if not found.scores:
        return None
    multiclass = any(c is not None for c in found.classes)
    versions = sorted(
        set(found.versions), key=lambda v: (version_number(v) is None, version_number(v) or 0, v)
    )
    data = []
    for version in versions:
        if multiclass:
            counts = Counter(c for c, v in zip(found.classes, found.versions, strict=True) if v == version)
            names = sorted({str(c) for c in found.classes if c is not None})
            data.append(
                {
                    "type": "bar",
                    "x": [escape(n) for n in names],
                    "y": [counts.get(n, 0) for n in names],
                    "name": f"v{escape(version)}",
                    "hovertemplate": f"v{escape(version)}: %{{y}} predicted %{{x}}<extra></extra>",
                }
            )
            continue
        counts = Counter(
            min(int(s * bins), bins - 1)
            for s, v in zip(found.scores, found.versions, strict=True)
            if v == version
        )
        data.append(
            {
                "type": "bar",
                "x": [(b + 0.5) / bins for b in range(bins)],
                "y": [counts.get(b, 0) for b in range(bins)],
                "width": 1 / bins,
                "name": f"v{escape(version)}",
                "customdata": [f"{b / bins:.2f}–{(b + 1) / bins:.2f}" for b in range(bins)],
                "hovertemplate": f"v{escape(version)}: %{{y}} scored %{{customdata}}<extra></extra>",
            }
        )
    title = "predicted class" if multiclass else escape(score_name)
    return {
        "data": data,
        "layout": layout(
            barmode="stack",
            bargap=0.05,
            xaxis={"title": {"text": title}, **({} if multiclass else {"range": [0, 1]})},
            yaxis={"title": {"text": "predictions"}},
        ),
    }


def versions(history: RegistryHistory, now: datetime) -> dict[str, Any] | None:
    """Registered versions at their creation times, the champion over time (a step line), its
    promotions and rollbacks, and the rollout decisions."""
    if not history.versions:
        return None
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "registered",
            "x": [moment(v["created"]) for v in history.versions],
            "y": [version_number(v["version"]) for v in history.versions],
            "marker": {
                "size": 11,
                "color": [
                    {"true": GREEN, "false": RED}.get(v["gate_passed"], GREY) for v in history.versions
                ],
                "line": {"color": "#333", "width": 1},
            },
            "text": [_version_hover(v) for v in history.versions],
            "hovertemplate": "%{text}<extra></extra>",
        }
    ]
    data += _champion(history, now)
    numbers = [n for v in history.versions if (n := version_number(v["version"])) is not None]
    events = history.rollout_events
    if events:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "rollout decision",
                "x": [moment(e.get("at")) for e in events],
                "y": [version_number(e.get("challenger")) for e in events],
                "marker": {"symbol": "diamond", "size": 10, "color": BLUE},
                "text": [
                    f"rollout {text(e.get('action', '?'))}: {text(e.get('mode', '?'))} "
                    f"of v{text(e.get('challenger'))}"
                    + (f"<br>{text(e['reason'])}" if e.get("reason") else "")
                    for e in events
                ],
                "hovertemplate": "%{x}<br>%{text}<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": layout(
            xaxis={"type": "date", "title": {"text": "time (UTC)"}},
            yaxis={"title": {"text": "version"}, "tickprefix": "v", "dtick": 1, "range": _around(numbers)},
        ),
    }


def _around(numbers: list[int]) -> list[float] | None:
    """A version axis's range: the versions there are and half a step beyond (None: plotly's own)."""
    return [min(numbers) - 0.5, max(numbers) + 0.5] if numbers else None


def _version_hover(version: dict[str, Any]) -> str:
    gate = {"true": "passed", "false": "failed"}.get(version["gate_passed"], "?")
    aliases = f"<br>aliases: {text(', '.join(version['aliases']))}" if version["aliases"] else ""
    return (
        f"v{text(version['version'])} registered {moment(version['created'])}"
        f"<br>{text(version['model_type'])}<br>quality gate {gate}{aliases}"
    )


def _champion(history: RegistryHistory, now: datetime) -> list[dict[str, Any]]:
    moves = [
        m for m in history.moves if m.get("alias") == "champion" and version_number(m.get("to")) is not None
    ]
    if not moves:  # an alias set outside Flywheel: the champion since its creation
        current = next((v for v in history.versions if "champion" in v["aliases"]), None)
        if current is None:
            return []
        moves = [{"at": current["created"], "to": current["version"], "from": None, "reason": "?"}]
    line = {
        "type": "scatter",
        "mode": "lines",
        "name": "champion",
        "x": [moment(m["at"]) for m in moves] + [moment(now)],
        "y": [version_number(m["to"]) for m in moves] + [version_number(moves[-1]["to"])],
        "line": {"shape": "hv", "color": GREEN, "width": 3},
        "hovertemplate": "champion v%{y} at %{x}<extra></extra>",
    }
    back = [m for m in moves if (version_number(m.get("from")) or 0) > version_number(m["to"])]
    forward = [m for m in moves if m not in back]
    out = [line]
    for name, chosen, symbol, colour in (
        ("promotion", forward, "star", GREEN),
        ("rollback", back, "triangle-down", RED),
    ):
        if chosen:
            out.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": name,
                    "x": [moment(m["at"]) for m in chosen],
                    "y": [version_number(m["to"]) for m in chosen],
                    "marker": {
                        "symbol": symbol,
                        "size": 14,
                        "color": colour,
                        "line": {"color": "#333", "width": 1},
                    },
                    "text": [
                        f"{name}: champion v{text(m.get('from') or '-')} → v{text(m['to'])}"
                        f"<br>{text(m.get('reason') or '')}"
                        for m in chosen
                    ],
                    "hovertemplate": "%{x}<br>%{text}<extra></extra>",
                }
            )
    return out


def outcome_class(outcome: str) -> str:
    """The coarse class of a retrain decision's ``outcome`` (see ``Decision.outcome``)."""
    if outcome.startswith("promoted"):
        return "promoted"
    for name in ("rolling out", "not promoted", "retrain failed", "would retrain"):
        if name in outcome:
            return name
    return "no retrain"


def retrains(decisions: list[Report]) -> dict[str, Any] | None:
    """Every stored retrain decision on a timeline, one row per kind of outcome; the fired
    triggers, reasons and errors in the hover."""
    if not decisions:
        return None
    data: list[dict[str, Any]] = []
    for name, colour in OUTCOMES.items():
        chosen = [d for d in decisions if outcome_class(str(d.content.get("outcome", ""))) == name]
        if chosen:
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": name,
                    "x": [moment(d.created) for d in chosen],
                    "y": [name] * len(chosen),
                    "marker": {"size": 12, "color": colour},
                    "text": [_decision_hover(d.content) for d in chosen],
                    "hovertemplate": "%{x}<br>%{text}<extra></extra>",
                }
            )
    return {
        "data": data,
        "layout": layout(
            height=300,
            xaxis=_time_axis("decided at (UTC)", [x for trace in data for x in trace["x"]]),
            yaxis={
                "type": "category",
                "categoryorder": "array",
                "categoryarray": [t["name"] for t in data],  # the outcomes there are, in order
                "automargin": True,
            },
        ),
    }


def _time_axis(title: str, moments: list[str | None]) -> dict[str, Any]:
    """A date axis; events within an hour of each other get an hour around them (Plotly would
    otherwise zoom into milliseconds around a single event)."""
    axis: dict[str, Any] = {"type": "date", "title": {"text": title}}
    times = [datetime.fromisoformat(m) for m in moments if m]
    if times and max(times) - min(times) < timedelta(hours=1):
        middle = min(times) + (max(times) - min(times)) / 2
        axis["range"] = [moment(middle - timedelta(minutes=30)), moment(middle + timedelta(minutes=30))]
    return axis


def _decision_hover(decision: dict[str, Any]) -> str:
    fired = [t for t in decision.get("triggers", []) if isinstance(t, dict) and t.get("fired")]
    lines = [
        f"<b>{text(decision.get('outcome', '?'))}</b> (champion v{text(decision.get('champion') or '-')})"
    ]
    lines += [
        f"trigger {text(t.get('name'))}: {text(t.get('value'))} ({text(t.get('threshold'))})" for t in fired
    ]
    lines += ["no trigger fired"] if not fired else []
    lines += [text(r) for r in decision.get("reasons", [])[:4]]
    lines += [f"error: {text(decision['error'])}"] if decision.get("error") else []
    return "<br>".join(lines)


def arms(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Predictions and labelled predictions per rollout arm and version (None without arms)."""
    rows = [r for r in rows if isinstance(r, dict) and r.get("arm") not in (None, "-")]
    if not rows:
        return None
    names = [f"{escape(str(r['arm']))} v{escape(str(r.get('version')))}" for r in rows]
    hover = [
        f"{names[i]}<br>ROC-AUC {number(r.get('roc_auc'))}, PR-AUC {number(r.get('pr_auc'))}"
        for i, r in enumerate(rows)
    ]
    return {
        "data": [
            {
                "type": "bar",
                "name": key,
                "x": names,
                "y": [r.get(key, 0) for r in rows],
                "customdata": hover,
                "hovertemplate": f"%{{customdata}}<br>%{{y}} {key}<extra></extra>",
                "marker": {"color": colour},
            }
            for key, colour in (("predictions", BLUE), ("labelled", ORANGE))
        ],
        "layout": layout(height=300, barmode="group", yaxis={"title": {"text": "predictions"}}),
    }


def alerts(found: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The alerts on a timeline, one row per kind; the text in the hover."""
    if not found:
        return None
    kinds = sorted({str(a.get("kind", "?")) for a in found})
    data = []
    for kind in kinds:
        chosen = [a for a in found if str(a.get("kind", "?")) == kind]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": escape(kind),
                "x": [moment(a.get("created_at")) for a in chosen],
                "y": [escape(kind)] * len(chosen),
                "marker": {"size": 16, "symbol": "line-ns-open", "line": {"width": 2}},
                "text": [text(a.get("text", "")) for a in chosen],
                "hovertemplate": "%{x}<br>%{text}<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": layout(
            height=max(220, 90 + 35 * len(kinds)),
            showlegend=False,
            xaxis=_time_axis("raised at (UTC)", [x for trace in data for x in trace["x"]]),
            yaxis={"type": "category", "automargin": True},
        ),
    }
