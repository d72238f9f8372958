"""The dashboard in a real browser (Debian's chromium, driven headless by Playwright): served by a real
``flywheel serve`` for a workdir with traffic and reports, for one with nothing yet, and exported by
``flywheel dashboard --out`` and opened from disk. Every chart must have drawn its data, and the page
must log no error."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from typer.testing import CliRunner

from flywheel.cli.main import app as cli
from flywheel.config import FlywheelConfig, apply_overrides
from flywheel.monitoring import monitor, performance, traffic
from flywheel.monitoring.alerts import alert
from flywheel.retraining import retrain
from flywheel.workdir import Workdir
from tests.servers import ensure_apt_package, service, write_config

HOSTILE = '<img src=x onerror="window.pwned = 1"></script><script>window.pwned = 2</script>'
ALL_CHARTS = {"performance", "drift", "predictions", "versions", "retrains", "alerts"}  # no rollout: a note
# what a drawn chart holds in its SVG: markers and bars, lines, filled bands, a heatmap's image
DRAWN = """id => {
  const gd = document.getElementById(id);
  const marks = 'path.point, .barlayer .point path, path.js-line, path.js-fill, .heatmaplayer image';
  return {traces: (gd.data || []).length, drawn: gd.querySelectorAll(marks).length};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium from Debian's package (Playwright's own browser download needs the internet)."""
    started = time.monotonic()
    chromium = ensure_apt_package("chromium", "chromium")
    print(f"chromium at {chromium} ({time.monotonic() - started:.1f} s to find or install)")
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        yield found
        found.close()


@pytest.fixture(scope="module")
def config(training_config: FlywheelConfig) -> FlywheelConfig:
    return apply_overrides(training_config, {"serving.poll_seconds": 3600, "serving.log_flush_seconds": 0.1})


@pytest.fixture(scope="module")
def monitored(
    served_workdir: Workdir, config: FlywheelConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Workdir, str]]:
    """A copy of the session's served workdir after a while of the loop, as the demo leaves one:
    traffic served by a real ``flywheel serve`` (which keeps running), a performance report, drift
    reports of the snapshot and of the served traffic, a retrain decision and alerts. Yields the
    workdir and the service's base URL."""
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("dashboard")
    workdir = Workdir.at(folder / "wd")
    shutil.copytree(served_workdir.root, workdir.root)
    with service(workdir, config, folder, log=folder / "service.log") as (base, _):
        traffic.simulate(config, workdir, base, days=112, per_date=30)
        _until_logged(workdir, 480)
        performance.write(performance.evaluate(config, workdir), workdir)
        monitor.drift(config, workdir, source="snapshot")
        monitor.drift(config, workdir, source="log")
        retrain.retrain(config, workdir, check_only=True)
        alert(config, workdir, "rollout", f"a report text that must stay text: {HOSTILE}")
        print(f"served, with traffic and reports, in {time.monotonic() - started:.1f} s")
        yield workdir, base


def _until_logged(workdir: Workdir, rows: int, seconds: float = 30) -> None:
    import sqlite3

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with sqlite3.connect(workdir.prediction_log) as con:
            if con.execute("SELECT count(*) FROM predictions").fetchone()[0] >= rows:
                return
        time.sleep(0.1)
    raise AssertionError(f"the service did not log {rows} predictions in {seconds} s")


def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """``url`` in a new page, once its scripts ran; and the errors it logged (console and uncaught)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text} ({m.location.get('url')})") if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(url, wait_until="load")
    page.wait_for_function("document.readyState === 'complete'")
    return page, errors


def _charts(page: Page) -> dict[str, dict[str, Any]]:
    """Each chart's traces (Plotly's ``gd.data``) and the SVG elements it drew, by section."""
    ids = page.eval_on_selector_all(".chart", "nodes => nodes.map(n => n.id)")
    drawn = f"ids => ids.every(id => ({DRAWN})(id).drawn > 0)"
    with suppress(PlaywrightTimeout):  # the caller's assertion names the charts left empty
        page.wait_for_function(drawn, arg=ids, timeout=15_000)
    return {i.removeprefix("chart-"): page.evaluate(DRAWN, i) for i in ids}


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def test_the_served_dashboard_draws_every_chart(
    browser: Browser, monitored: tuple[Workdir, str], config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir, base = monitored
    started = time.monotonic()
    page, errors = _open(browser, f"{base}/dashboard")
    charts = _charts(page)
    seconds = time.monotonic() - started
    _screenshot(page, tmp_path / "dashboard.png")
    assert set(charts) == ALL_CHARTS, charts
    assert all(c["traces"] > 0 and c["drawn"] > 0 for c in charts.values()), charts
    assert errors == []
    assert page.evaluate("window.pwned") is None  # the hostile alert text stayed text
    assert HOSTILE in page.inner_text("#alerts table")
    assert "No rollout running" in page.inner_text("#rollout")
    newest = max(workdir.reports.glob("performance-*.json"))
    assert any(p["band"] for p in json.loads(newest.read_text())["periods"])  # estimates: drawn too
    names = page.evaluate("document.getElementById('chart-performance').data.map(t => t.name)")
    assert {"ROC-AUC realized", "ROC-AUC estimated", "ROC-AUC estimate band"} <= set(names), names
    assert page.title() == f"Flywheel · {config.use_case} · monitoring"
    # the metric menu redraws the performance chart with another metric
    page.click("#chart-performance .updatemenu-header-group")
    page.click("#chart-performance .updatemenu-item-text >> text=PR-AUC")
    page.wait_for_function(
        "document.getElementById('chart-performance').layout.yaxis2.title.text === 'PR-AUC'"
    )
    # the newest drift report's own page, linked from the dashboard
    with page.expect_navigation():
        page.click("#drift a")
    assert page.url.startswith(f"{base}/dashboard/reports/drift-") and "Drift report" in page.content()
    assert errors == []  # the drift report's page names its (empty) icon: no /favicon.ico request
    page.close()
    print(f"dashboard opened and every chart drawn in {seconds:.1f} s")


def test_a_workdir_with_nothing_yet_shows_what_to_run(
    browser: Browser, config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir = Workdir.at(tmp_path / "empty")
    workdir.root.mkdir()
    with service(workdir, config, tmp_path, wait_for="/health") as (base, _):
        page, errors = _open(browser, f"{base}/dashboard")
        notes = page.eval_on_selector_all("p.empty", "nodes => nodes.map(n => n.innerText)")
        _screenshot(page, tmp_path / "empty-dashboard.png")
        assert page.eval_on_selector_all(".chart", "nodes => nodes.length") == 0
        assert len(notes) == 7 and any("flywheel monitor performance" in n for n in notes), notes
        assert page.evaluate("typeof Plotly") == "object"  # the library loaded, with nothing to draw
        assert errors == []
        page.close()


def test_the_exported_dashboard_works_from_disk(
    browser: Browser, monitored: tuple[Workdir, str], config: FlywheelConfig, tmp_path: Path
) -> None:
    workdir, _ = monitored
    out = tmp_path / "shared"
    args = ["--config", str(write_config(config, tmp_path)), "--workdir", str(workdir.root)]
    done = CliRunner().invoke(cli, [*args, "dashboard", "--out", str(out)])
    assert done.exit_code == 0, done.output
    page, errors = _open(browser, (out / "index.html").as_uri())
    charts = _charts(page)
    assert set(charts) == ALL_CHARTS and all(c["drawn"] > 0 for c in charts.values()), charts
    link = page.get_attribute("#drift a", "href")
    assert link.startswith("reports/drift-") and (out / link).is_file()
    assert errors == []
    page.close()
