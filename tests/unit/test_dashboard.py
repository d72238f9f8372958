"""The monitoring dashboard: gathering its sections from a hand-written workdir, the figures built from
them, the page (empty states, escaping of report text), its routes and the static export."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from flywheel.cli.main import app as cli
from flywheel.config import FlywheelConfig, default_config
from flywheel.dashboard import data, figures, page, performance, routes
from flywheel.dashboard.assets import plotly_js
from flywheel.serving.predlog import INSERT, SCHEMA
from flywheel.workdir import Workdir

EVIL = "</script><script>alert('x')</script><b>&"
DRIFT_HTML = "drift-20240301T120000000000.html"


def _period(start: str, end: str, status: str, labelled: int, **figures_: Any) -> dict[str, Any]:
    return {
        "start": start,
        "end": end,
        "predictions": 100,
        "observable": 0 if status == "pending" else 100 if status == "observed" else 40,
        "labelled": labelled,
        "status": status,
        "roc_auc": None,
        "pr_auc": None,
        "brier": None,
        "mean_probability": 0.2,
        "observed_rate": None,
        "accuracy": None,
        "macro_f1": None,
        "log_loss": None,
        **figures_,
    }


def _estimates(roc_auc: float, low: float, high: float, shift: bool = False) -> dict[str, Any]:
    return {
        "estimated": {"roc_auc": roc_auc, "pr_auc": 0.5, "accuracy": 0.9, "f1": 0.4},
        "band": {"roc_auc": [low, high], "pr_auc": [0.45, 0.55], "accuracy": [0.88, 0.92], "f1": [0.3, 0.5]},
        "estimation_error": {"roc_auc": 0.01},
        "concept_shift": ["roc_auc"] if shift else [],
    }


PERIODS = [
    _period(
        "2024-01-01", "2024-01-15", "observed", 90, roc_auc=0.80, pr_auc=0.51, **_estimates(0.79, 0.75, 0.83)
    ),
    _period(
        "2024-01-15",
        "2024-01-29",
        "observed",
        88,
        roc_auc=0.66,
        pr_auc=0.40,
        **_estimates(0.80, 0.76, 0.84, True),
    ),
    _period(
        "2024-01-29", "2024-02-12", "partial", 35, roc_auc=0.78, pr_auc=0.49, **_estimates(0.78, 0.72, 0.84)
    ),
    _period("2024-02-12", "2024-02-26", "pending", 0, **_estimates(0.77, 0.70, 0.84)),
    _period("2024-02-26", "2024-03-11", "pending", 0, **_estimates(0.77, 0.70, 0.84)),
]
ARMS = [
    {"arm": "champion", "version": "1", "predictions": 300, "labelled": 150, "roc_auc": 0.8, "pr_auc": 0.5},
    {
        "arm": "challenger",
        "version": "2",
        "predictions": 200,
        "labelled": 60,
        "roc_auc": 0.82,
        "pr_auc": 0.52,
    },
]


def _drift(created: str, drifted: list[str], column: str = "tenure_days") -> dict[str, Any]:
    def entry(name: str, test: str = "ks") -> dict[str, Any]:
        return {
            "column": name,
            "kind": "numeric",
            "test": test,
            "score": 0.2 if name in drifted else 0.01,
            "threshold": 0.1,
            "drifted": name in drifted,
            "psi": 0.3,
            "rows": 500,
        }

    return {
        "champion_version": "1",
        "current": "snapshot 2024-03-01",
        "created_at": created,
        "reference_rows": 1000,
        "current_rows": 500,
        "dataset_drift": len(drifted) >= 1,
        "drifted_share": len(drifted) / 2,
        "share_threshold": 0.5,
        "prediction": entry("churn_probability", "wasserstein"),
        "columns": [entry(column), entry("orders_90d")],
    }


def _decision(decided_at: str, outcome: str, fired: bool) -> dict[str, Any]:
    return {
        "decided_at": decided_at,
        "champion": "1",
        "triggers": [{"name": "drift", "value": "50%", "threshold": "≥ 50%", "fired": fired, "detail": ""}],
        "retrain": fired,
        "reasons": ["drift: 50% of columns drifted"] if fired else [],
        "outcome": outcome,
        "error": None,
    }


def _log(path: Path, rows: list[tuple[str, str, float, str | None]]) -> None:
    """A prediction log with ``rows`` of (predicted_at, version, score, arm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as con, con:
        con.execute(SCHEMA)
        con.executemany(
            INSERT,
            [
                (f"r{i}", at, i, version, score, "{}", "/v1/predict", None, None, None, arm)
                for i, (at, version, score, arm) in enumerate(rows)
            ],
        )


@pytest.fixture
def workdir(tmp_path: Path) -> Workdir:
    """A workdir with two of each report, a prediction log, an HTML drift page and alerts."""
    workdir = Workdir.at(tmp_path / "wd")
    reports = workdir.reports
    reports.mkdir(parents=True)
    (reports / "performance-20240301T000000000000.json").write_text(json.dumps({"periods": []}))
    (reports / "performance-20240310T000000000000.json").write_text(
        json.dumps(
            {
                "horizon_days": 28,
                "observed_until": "2024-02-12T00:00:00+00:00",
                "predictions": 500,
                "periods": PERIODS,
                "arms": ARMS,
            }
        )
    )
    (reports / "drift-20240201T120000000000.json").write_text(
        json.dumps(_drift("2024-02-01T12:00:00+00:00", []))
    )
    (reports / "drift-20240301T120000000000.json").write_text(
        json.dumps(_drift("2024-03-01T12:00:00+00:00", ["tenure_days"], column=EVIL))
    )
    (reports / DRIFT_HTML).write_text("<html><body>the drift report</body></html>")
    (reports / "retrain-20240201T130000000000.json").write_text(
        json.dumps(_decision("2024-02-01T13:00:00+00:00", "no retrain", False))
    )
    (reports / "retrain-20240301T130000000000.json").write_text(
        json.dumps(_decision("2024-03-01T13:00:00+00:00", "promoted v2", True))
    )
    alerts = [
        {
            "text": "[flywheel churn] dataset drift",
            "kind": "drift",
            "use_case": "churn",
            "created_at": "2024-03-01T12:00:01+00:00",
            "details": {},
        },
        {
            "text": f"[flywheel churn] {EVIL}",
            "kind": "rollout",
            "use_case": "churn",
            "created_at": "2024-03-02T12:00:01+00:00",
            "details": {},
        },
    ]
    workdir.alerts_log.write_text("".join(json.dumps(a) + "\n" for a in alerts) + '{"half a line')
    _log(
        workdir.prediction_log,
        [
            (f"2024-03-0{1 + i % 5}T10:00:0{i % 10}+00:00", "1" if i < 6 else "2", i / 10, None)
            for i in range(10)
        ]
        + [("2024-03-05T11:00:00+00:00", "2", 0.99, "shadow")],
    )
    return workdir


class FakeVersion(SimpleNamespace):
    pass


class FakeRegistry:
    """What the dashboard asks of an MLflow client: versions, and the registered model's tags and
    aliases (alias moves, rollout decisions, the running rollout)."""

    def __init__(self, tags: dict[str, str], aliases: dict[str, str], fail: bool = False) -> None:
        self.tags, self.aliases, self.fail = tags, aliases, fail

    def search_model_versions(self, query: str) -> list[FakeVersion]:
        if self.fail:
            raise MlflowException("the tracking store is locked")
        return [
            FakeVersion(
                version=v,
                creation_timestamp=1_704_067_200_000 + int(v) * 86_400_000 * 20,
                tags={"gate.passed": "true" if v != "3" else "false", "model_type": "lightgbm"},
            )
            for v in ("1", "2", "3")
        ]

    def get_registered_model(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(tags=self.tags, aliases=self.aliases)


def _move(seq: int, at: str, old: str | None, new: str, reason: str) -> tuple[str, str]:
    return f"alias_move.{seq:05d}", json.dumps(
        {"seq": seq, "at": at, "alias": "champion", "from": old, "to": new, "reason": reason, "run_id": None}
    )


def _registry() -> FakeRegistry:
    rollout = {
        "id": "r1-v3",
        "mode": "canary",
        "challenger": "3",
        "champion": "1",
        "percent": 10.0,
        "floor": 0.05,
        "started_at": "2024-03-04T00:00:00+00:00",
    }
    tags = dict(
        [
            _move(1, "2024-01-21T00:00:00+00:00", None, "1", "no champion yet"),
            _move(2, "2024-02-10T00:00:00+00:00", "1", "2", f"ROC-AUC +0.02 {EVIL}"),
            _move(3, "2024-03-01T00:00:00+00:00", "2", "1", "rollback drill"),
        ]
    )
    tags["flywheel.rollout"] = json.dumps(rollout)
    tags["flywheel.rollout_event.00001.x"] = json.dumps(
        {"seq": 1, "at": rollout["started_at"], "action": "start", "reason": None, **rollout}
    )
    return FakeRegistry(tags, {"champion": "1", "challenger": "3"})


@pytest.fixture
def config() -> FlywheelConfig:
    return default_config()


def test_gather_reads_each_section_newest_first_where_it_matters(workdir: Workdir) -> None:
    snapshot = data.gather(workdir, _registry(), "churn-model")
    assert snapshot.performance.name == "performance-20240310T000000000000.json"
    assert [r.name for r in snapshot.drift] == [
        "drift-20240201T120000000000.json",
        "drift-20240301T120000000000.json",
    ]
    assert snapshot.drift[-1].created == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert snapshot.drift_page == workdir.reports / DRIFT_HTML
    assert [r.content["outcome"] for r in snapshot.retrains] == ["no retrain", "promoted v2"]
    assert [a["kind"] for a in snapshot.alerts] == [
        "rollout",
        "drift",
    ]  # newest first; the half line left out
    found = snapshot.predictions
    assert len(found.scores) == 10 and 0.99 not in found.scores  # the shadow's row answered no one
    assert found.first.startswith("2024-03-01") and found.last.startswith("2024-03-05")
    history = snapshot.registry
    assert [v["version"] for v in history.versions] == ["1", "2", "3"]
    assert history.versions[0]["aliases"] == ["champion"] and [m["to"] for m in history.moves] == [
        "1",
        "2",
        "1",
    ]
    assert history.rollout["describe"].startswith("rollout r1-v3: canary of v3")


def test_reports_are_bounded_and_an_unreadable_one_is_left_out(tmp_path: Path) -> None:
    for day in range(1, 6):
        (tmp_path / f"drift-202403{day:02d}T000000.json").write_text(json.dumps({"columns": []}))
    (tmp_path / "drift-20240306T000000.json").write_text('{"being written')
    found = data.stored_reports(tmp_path, "drift", limit=3)
    assert [r.name for r in found] == [f"drift-202403{d:02d}T000000.json" for d in (3, 4, 5)]
    assert found[0].created == datetime(2024, 3, 3, tzinfo=UTC)  # from the name: no created_at inside


def test_recent_predictions_are_the_newest_over_every_log_and_read_old_logs(tmp_path: Path) -> None:
    _log(tmp_path / "a.db", [(f"2024-03-01T10:00:0{i}+00:00", "1", 0.1 * i, None) for i in range(5)])
    with closing(sqlite3.connect(tmp_path / "legacy.db")) as con, con:  # before use cases were plug-ins
        con.execute(
            "CREATE TABLE predictions (request_id TEXT, predicted_at TEXT, customer_id, "
            "model_version TEXT, churn_probability REAL, features TEXT, endpoint TEXT)"
        )
        con.execute(
            "INSERT INTO predictions VALUES ('x', '2024-03-01T10:00:09+00:00', 1, '1', 0.95, '{}', 'p')"
        )
    found = data.recent_predictions(tmp_path, limit=3)
    assert found.scores == pytest.approx([0.3, 0.4, 0.95]) and found.logs == 2 and found.error is None
    assert data.recent_predictions(tmp_path / "nothing").scores == []


def test_performance_figure_shows_realized_estimated_band_shift_and_pending(config: FlywheelConfig) -> None:
    figure = performance.figure({"periods": PERIODS}, "roc_auc", 0.75)
    visible = {t["name"] for t in figure["data"] if t["visible"]}
    assert visible == {
        "predictions",
        "labelled",
        "ROC-AUC estimate band",
        "ROC-AUC estimated",
        "ROC-AUC realized",
        "concept shift (realized outside the band)",
        "retrain below 0.750",
    }
    realized = next(t for t in figure["data"] if t["name"] == "ROC-AUC realized")
    assert realized["y"] == [0.80, 0.66, 0.78, None, None] and realized["line"]["dash"] == "solid"
    band = [t for t in figure["data"] if t["name"] == "ROC-AUC estimate band"]
    assert [t["fill"] for t in band] == ["none", "tonexty"] and band[1]["y"][0] == 0.75
    shift = next(t for t in figure["data"] if t["name"].startswith("concept shift"))
    assert shift["x"] == ["2024-01-15"] and shift["y"] == [0.66]
    menu = figure["layout"]["updatemenus"][0]
    assert [b["label"] for b in menu["buttons"]] == ["ROC-AUC", "PR-AUC", "accuracy", "F1"]
    pending = [s for s in figure["layout"]["shapes"] if s["x0"] == "2024-02-12"]
    assert pending and pending[0]["x1"] == "2024-03-11"  # the two pending periods: one span
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["labels pending"]


def test_an_older_report_without_estimates_shows_realized_only() -> None:
    periods = [
        {k: v for k, v in p.items() if k not in ("estimated", "band", "estimation_error", "concept_shift")}
        for p in PERIODS
    ]
    figure = performance.figure({"periods": periods}, "roc_auc")
    assert {t["name"] for t in figure["data"]} == {
        "predictions",
        "labelled",
        "ROC-AUC realized",
        "PR-AUC realized",
    }
    assert performance.figure({"periods": []}) is None


def test_drift_figure_is_a_heatmap_of_columns_by_report_with_the_share_above(workdir: Workdir) -> None:
    figure = figures.drift(data.stored_reports(workdir.reports, "drift"))
    heatmap, share, threshold = figure["data"]
    assert heatmap["y"][0] == "churn_probability (prediction)" and "tenure_days" in heatmap["y"]
    row = heatmap["y"].index("tenure_days")
    assert heatmap["z"][row] == [0, None]  # not drifted in the older report; not in the newest
    assert heatmap["y"][1] == "&lt;/script&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;b&gt;&amp;"
    assert heatmap["x"] == ["2024-02-01 12:00:00", "2024-03-01 12:00:00"]
    assert share["y"] == [0.0, 0.5] and threshold["y"] == [0.5, 0.5]
    assert all("<script>" not in name for name in heatmap["y"])


def test_versions_figure_draws_the_champion_over_time_with_promotions_and_rollbacks() -> None:
    history = data.registry_history(_registry(), "churn-model")
    now = datetime(2024, 3, 10, tzinfo=UTC)
    figure = figures.versions(history, now)
    by_name = {t["name"]: t for t in figure["data"]}
    assert by_name["registered"]["marker"]["color"][2] == figures.RED  # v3 failed its gate
    assert by_name["champion"]["y"] == [1, 2, 1, 1] and by_name["champion"]["x"][-1] == "2024-03-10 00:00:00"
    assert by_name["promotion"]["y"] == [1, 2] and by_name["rollback"]["y"] == [1]
    assert "&lt;/script&gt;" in by_name["promotion"]["text"][1]
    assert by_name["rollout decision"]["y"] == [3]


def test_retrain_and_alert_timelines_and_rollout_arms(workdir: Workdir) -> None:
    snapshot = data.gather(workdir, None, "churn-model")
    retrains = figures.retrains(snapshot.retrains)
    assert {t["name"]: t["y"] for t in retrains["data"]} == {
        "no retrain": ["no retrain"],
        "promoted": ["promoted"],
    }
    assert "trigger drift: 50%" in retrains["data"][1]["text"][0]
    alerts = figures.alerts(snapshot.alerts)
    assert [t["name"] for t in alerts["data"]] == ["drift", "rollout"]
    assert "&lt;script&gt;" in alerts["data"][1]["text"][0]
    arms = figures.arms(ARMS)
    assert arms["data"][0]["x"] == ["champion v1", "challenger v2"] and arms["data"][0]["y"] == [300, 200]
    assert figures.arms([{"arm": "-", "version": "1", "predictions": 5}]) is None  # no rollout: no arms


def test_the_page_embeds_every_figure_and_escapes_report_text(
    workdir: Workdir, config: FlywheelConfig
) -> None:
    html = page.build(config, workdir, _registry())
    assert html.count('class="chart"') == 7  # every section has a chart
    assert "<script>alert(" not in html and "</script><script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(&#x27;x&#x27;)" in html  # the alerts table
    embedded = html.split('<script type="application/json" id="figures">')[1].split("</script>")[0]
    assert "<" not in embedded and "NaN" not in embedded
    charts = json.loads(embedded)
    assert set(charts) == {
        f"chart-{k}"
        for k in ("performance", "drift", "predictions", "versions", "retrains", "rollout", "alerts")
    }
    assert 'src="dashboard/plotly.min.js"' in html and f'href="dashboard/reports/{DRIFT_HTML}"' in html
    assert "<title>Flywheel · churn · monitoring</title>" in html
    assert "Running: rollout r1-v3: canary of v3" in html


def test_an_empty_workdir_gives_a_page_with_a_note_per_section(
    tmp_path: Path, config: FlywheelConfig
) -> None:
    html = page.build(config, Workdir.at(tmp_path / "nothing"), None)
    assert 'class="chart"' not in html and html.count('class="empty"') == 7
    for hint in (
        "flywheel monitor performance",
        "flywheel monitor drift",
        "flywheel simulate traffic",
        "flywheel pipeline run",
        "flywheel retrain --check-only",
        "No rollout running",
        "No alert raised",
    ):
        assert hint in html
    assert not (tmp_path / "nothing").exists()  # looking created nothing


def test_a_registry_that_cannot_be_read_is_a_note_not_an_error(
    workdir: Workdir, config: FlywheelConfig
) -> None:
    html = page.build(config, workdir, FakeRegistry({}, {}, fail=True))
    assert "the registry could not be read (MlflowException: the tracking store is locked)" in html
    assert 'id="chart-performance"' in html  # the other sections are unaffected


def test_nan_in_a_report_is_null_in_the_page(workdir: Workdir, config: FlywheelConfig) -> None:
    periods = [{**PERIODS[0], "roc_auc": float("nan")}]
    (workdir.reports / "performance-20240311T000000000000.json").write_text(json.dumps({"periods": periods}))
    html = page.build(config, workdir, None)
    assert "NaN" not in html


def _service(workdir: Workdir, config: FlywheelConfig) -> TestClient:
    app = FastAPI()
    app.state.flywheel = SimpleNamespace(config=config, workdir=workdir, client=None)
    app.router.routes.extend(routes.router.routes)
    return TestClient(app)


def test_routes_serve_the_page_plotly_and_drift_pages_only(workdir: Workdir, config: FlywheelConfig) -> None:
    client = _service(workdir, config)
    answer = client.get("/dashboard")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "No rollout running" in answer.text
    script = client.get("/dashboard/plotly.min.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.content == plotly_js().read_bytes()
    assert client.get(f"/dashboard/reports/{DRIFT_HTML}").text.endswith("the drift report</body></html>")
    for name in (
        "alerts.jsonl",
        "drift-20240301T120000000000.json",
        "drift-x.html",
        "..%2Fwd%2Freports%2F" + DRIFT_HTML,
        "drift-20990101T000000000000.html",
    ):
        assert client.get(f"/dashboard/reports/{name}").status_code == 404, name


def test_the_page_is_built_again_only_after_a_few_seconds(workdir: Workdir, config: FlywheelConfig) -> None:
    builds = []
    cache = routes.PageCache(seconds=60)
    assert cache.get(lambda: builds.append(1) or "one") == "one"
    assert cache.get(lambda: builds.append(1) or "two") == "one" and len(builds) == 1
    stale = routes.PageCache(seconds=0)
    stale.get(lambda: "one")
    assert stale.get(lambda: "two") == "two"


def test_the_service_imports_no_page_module_nor_plotly_and_lists_no_dashboard_in_its_schema(
    tmp_path: Path, config: FlywheelConfig
) -> None:
    probe = (
        "import sys; from flywheel.serving.app import create_app; from flywheel.config import default_config;"
        "from flywheel.workdir import Workdir;"
        f"app = create_app(default_config(), Workdir.at({str(tmp_path)!r}));"
        "paths = [r.path for r in app.routes];"
        "print('/dashboard' in paths, '/dashboard/plotly.min.js' in paths,"
        " any(p.startswith('/dashboard') for p in app.openapi()['paths']),"
        " 'flywheel.dashboard.page' in sys.modules, 'plotly' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True", "False", "False", "False"], done.stderr[-2000:]


def test_flywheel_dashboard_out_writes_a_page_that_needs_no_server(workdir: Workdir, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    done = CliRunner().invoke(cli, ["--workdir", str(workdir.root), "dashboard", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "index.html",
        "plotly.min.js",
        "reports",
        f"reports/{DRIFT_HTML}",
    ]
    html = (out / "index.html").read_text()
    assert 'src="plotly.min.js"' in html and f'href="reports/{DRIFT_HTML}"' in html
    assert "No version of <code>churn" in html and not workdir.mlflow_db.exists()  # no store created for it


def test_a_multiclass_log_shows_the_predicted_classes(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "predictions.db")) as con, con:
        con.execute(SCHEMA)
        con.executemany(
            INSERT,
            [
                (
                    f"r{i}",
                    f"2024-03-01T10:00:0{i}+00:00",
                    i,
                    "1",
                    0.6,
                    "{}",
                    "/v1/predict",
                    None,
                    c,
                    None,
                    None,
                )
                for i, c in enumerate(["good", "poor", "good", "standard"])
            ],
        )
    figure = figures.predictions(data.recent_predictions(tmp_path), "credit_probability")
    (bars,) = figure["data"]
    assert bars["x"] == ["good", "poor", "standard"] and bars["y"] == [2, 1, 1]
    assert figure["layout"]["xaxis"]["title"]["text"] == "predicted class"


def test_a_timeline_of_events_within_an_hour_spans_an_hour() -> None:
    """A single event would otherwise get an axis of milliseconds around it."""
    from flywheel.dashboard import figures

    axis = figures._time_axis("at", ["2026-12-04 23:24:43", None])
    assert axis["range"] == ["2026-12-04 22:54:43", "2026-12-04 23:54:43"]
    assert "range" not in figures._time_axis("at", ["2026-12-04 10:00:00", "2026-12-04 23:00:00"])
