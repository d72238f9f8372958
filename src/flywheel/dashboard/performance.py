"""The performance-over-time figure: per period of data time, the realized metric (from labels,
solid), the estimated one (dashed) inside its band (shaded), the periods whose realized value left
the band (concept shift), and the labelled predictions as bars on a second axis; periods whose
labels are pending are shaded.

A menu picks the metric among those the report has. Reports written before the estimates existed
(no ``estimated``/``band`` per period) show the realized metric alone.
"""

from __future__ import annotations

from datetime import date
from html import escape
from itertools import groupby
from typing import Any

from flywheel.dashboard.figures import BLUE, GREY, ORANGE, RED, layout, number

# metrics in the menu's order; others an estimate names come after them
METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "macro_f1", "brier", "log_loss")
LABELS = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "accuracy": "accuracy",
    "f1": "F1",
    "macro_f1": "macro-F1",
    "brier": "Brier score",
    "log_loss": "log loss",
}
PENDING, PARTIAL = "rgba(127,127,127,0.16)", "rgba(127,127,127,0.07)"


def label(metric: str) -> str:
    return LABELS.get(metric, escape(metric))


def _value(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _estimate(period: dict[str, Any], key: str, metric: str) -> Any:
    found = period.get(key)
    return found.get(metric) if isinstance(found, dict) else None


def _band(period: dict[str, Any], metric: str) -> tuple[float, float] | None:
    band = _estimate(period, "band", metric)
    if isinstance(band, list | tuple) and len(band) == 2 and all(_value(b) is not None for b in band):
        return float(band[0]), float(band[1])
    return None


def metrics_of(periods: list[dict[str, Any]]) -> list[str]:
    """The metrics some period has a realized or estimated value of, in the menu's order."""
    named = [m for p in periods for m in (p.get("estimated") or {}) if isinstance(p.get("estimated"), dict)]
    candidates = [*METRICS, *sorted(set(named) - set(METRICS))]
    return [
        m
        for m in candidates
        if any(
            _value(p.get(m)) is not None or _value(_estimate(p, "estimated", m)) is not None for p in periods
        )
    ]


def figure(
    report: dict[str, Any], metric: str = "roc_auc", bound: float | None = None
) -> dict[str, Any] | None:
    """The figure of a performance report (None without periods); ``metric`` is shown first when the
    report has it, with the retrain trigger's ``bound`` on it."""
    periods = [p for p in report.get("periods") or [] if isinstance(p, dict) and p.get("start")]
    if not periods:
        return None
    x = [str(p["start"]) for p in periods]
    metrics = metrics_of(periods)
    shown = metric if metric in metrics else (metrics[0] if metrics else None)
    data, groups = _counts(periods, x), [None, None]
    for m in metrics:
        traces = _metric(periods, x, m, bound if m == metric else None)
        data += traces
        groups += [m] * len(traces)
    for trace, group in zip(data, groups, strict=True):
        trace["visible"] = group is None or group == shown
    extra: dict[str, Any] = {}
    if len(metrics) > 1:
        extra["updatemenus"] = [
            {
                "type": "dropdown",
                "x": 0,
                "xanchor": "left",
                "y": 1.25,
                "yanchor": "top",
                "active": metrics.index(shown),
                "buttons": [
                    {
                        "label": label(m),
                        "method": "update",
                        "args": [
                            {"visible": [g is None or g == m for g in groups]},
                            {"yaxis2.title.text": label(m)},
                        ],
                    }
                    for m in metrics
                ],
            }
        ]
    shapes, notes = _pending(periods)
    top = max([p.get("predictions") or 0 for p in periods] + [1])
    if shown is None:
        notes.append(_note("no labelled period yet: nothing realized to show", 0.5, "center"))
    return {
        "data": data,
        "layout": layout(
            height=420,
            margin={"l": 70, "r": 70, "t": 80, "b": 50},
            barmode="overlay",
            xaxis={"type": "date", "title": {"text": "period start (data time)"}},
            # the counts on the first axis: plotly.js draws an overlaying axis's traces on top
            yaxis={  # the bars keep to the lower part of the plot, the lines above them readable
                "title": {"text": "predictions"},
                "side": "right",
                "showgrid": False,
                "range": [0, top * 2.5],
            },
            yaxis2={
                "title": {"text": label(shown) if shown else "metric"},
                "overlaying": "y",
                "tickmode": "auto",  # plotly.js 4 aligns an overlaying axis's ticks to the first's
                "side": "left",
            },
            shapes=shapes,
            annotations=notes,
            **extra,
        ),
    }


def _counts(periods: list[dict[str, Any]], x: list[str]) -> list[dict[str, Any]]:
    """Predictions and labelled predictions per period, as bars on the right axis."""
    hover = [
        f"{escape(str(p['start']))} – {escape(str(p.get('end', '')))}<br>{p.get('labelled', 0)} labelled of "
        f"{p.get('predictions', 0)} predictions ({p.get('observable', 0)} observable; "
        f"{escape(str(p.get('status', '?')))})"
        for p in periods
    ]
    spans = [_span_ms(p) for p in periods]
    # each bar spans its period (from its start), not centred on the start the lines are drawn at
    width = {"width": [s * 0.94 for s in spans], "offset": 0} if all(spans) else {}
    return [
        {
            "type": "bar",
            "name": name,
            "x": x,
            "y": [p.get(key, 0) for p in periods],
            **width,
            "marker": {"color": colour},
            "customdata": hover,
            "hovertemplate": "%{customdata}<extra></extra>",
        }
        for name, key, colour in (
            ("predictions", "predictions", "rgba(127,127,127,0.16)"),
            ("labelled", "labelled", "rgba(31,119,180,0.2)"),
        )
    ]


def _span_ms(period: dict[str, Any]) -> float | None:
    """A period's length in milliseconds (plotly.js measures bars on a date axis so)."""
    try:
        start, end = (
            date.fromisoformat(str(period["start"])[:10]),
            date.fromisoformat(str(period["end"])[:10]),
        )
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds() * 1000 if end > start else None


def _metric(
    periods: list[dict[str, Any]], x: list[str], metric: str, bound: float | None
) -> list[dict[str, Any]]:
    """The traces of one metric: its band, estimate, realized line, concept shifts and bound."""
    name = label(metric)
    realized = [_value(p.get(metric)) for p in periods]
    estimated = [_value(_estimate(p, "estimated", metric)) for p in periods]
    bands = [_band(p, metric) for p in periods]
    hover = [
        _hover(p, metric, r, e, b) for p, r, e, b in zip(periods, realized, estimated, bands, strict=True)
    ]
    traces: list[dict[str, Any]] = []
    if any(bands):
        for side, fill in ((1, "none"), (0, "tonexty")):  # the low edge fills up to the high one
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{name} estimate band",
                    "yaxis": "y2",
                    "x": x,
                    "y": [b[side] if b else None for b in bands],
                    "line": {"width": 0, "color": ORANGE},
                    "fill": fill,
                    "fillcolor": "rgba(255,127,14,0.18)",
                    "hoverinfo": "skip",
                    "showlegend": side == 0,
                }
            )
    if any(e is not None for e in estimated):
        traces.append(_line(f"{name} estimated", x, estimated, hover, ORANGE, "dash"))
    traces.append(_line(f"{name} realized", x, realized, hover, BLUE, "solid"))
    shifted = [i for i, p in enumerate(periods) if metric in (p.get("concept_shift") or [])]
    if shifted:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "concept shift (realized outside the band)",
                "yaxis": "y2",
                "x": [x[i] for i in shifted],
                "y": [realized[i] if realized[i] is not None else estimated[i] for i in shifted],
                "marker": {"symbol": "x", "size": 13, "color": RED},
                "text": [hover[i] for i in shifted],
                "hovertemplate": "concept shift<br>%{text}<extra></extra>",
            }
        )
    if bound is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"retrain below {number(bound, 3)}",
                "yaxis": "y2",
                "x": [x[0], str(periods[-1].get("end") or x[-1])],
                "y": [bound, bound],
                "line": {"color": GREY, "dash": "dot", "width": 1},
                "hoverinfo": "skip",
            }
        )
    return traces


def _line(
    name: str, x: list[str], y: list[float | None], hover: list[str], colour: str, dash: str
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x,
        "y": y,
        "yaxis": "y2",
        "line": {"color": colour, "dash": dash, "width": 2},
        "marker": {"size": 6},
        "connectgaps": False,
        "text": hover,
        "hovertemplate": "%{text}<extra></extra>",
    }


def _hover(
    period: dict[str, Any], metric: str, realized: float | None, estimated: float | None, band: tuple | None
) -> str:
    lines = [
        f"{escape(str(period['start']))} – {escape(str(period.get('end', '')))} "
        f"({escape(str(period.get('status', '?')))})",
        f"{label(metric)} realized {number(realized)}",
    ]
    if estimated is not None:
        lines.append(
            f"estimated {number(estimated)}" + (f" [{number(band[0])}, {number(band[1])}]" if band else "")
        )
    error = _value(_estimate(period, "estimation_error", metric))
    if error is not None:
        lines.append(f"realized − estimated {error:+.4f}")
    lines.append(f"{period.get('labelled', 0)} labelled of {period.get('predictions', 0)}")
    return "<br>".join(lines)


def _pending(periods: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shaded spans of periods whose labels are pending (darker) or partly observed, and a note on
    each pending span."""
    shapes, notes = [], []
    for status, run in groupby(periods, key=lambda p: p.get("status")):
        if status not in ("pending", "partial"):
            continue
        run = list(run)
        start, end = str(run[0]["start"]), str(run[-1].get("end") or run[-1]["start"])
        shapes.append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": start,
                "x1": end,
                "y0": 0,
                "y1": 1,
                "fillcolor": PENDING if status == "pending" else PARTIAL,
                "line": {"width": 0},
                "layer": "below",
            }
        )
        if status == "pending":
            notes.append({**_note("labels pending", 1.0, "left"), "x": start, "xref": "x"})
    return shapes, notes


def _note(message: str, y: float, align: str) -> dict[str, Any]:
    return {
        "text": message,
        "xref": "paper",
        "x": 0.5,
        "yref": "paper",
        "y": y,
        "xanchor": align,
        "yanchor": "top",
        "showarrow": False,
        "font": {"size": 11, "color": GREY},
    }
