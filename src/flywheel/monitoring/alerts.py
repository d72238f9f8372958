"""Alerts: drift, a performance drop, a failed gate, a failed retrain, a failed loop stage, a rejected
batch, the prediction log failing, a rollout's decision, a concept shift (realized performance outside
the band its estimate gave).

Every alert is logged and appended to ``reports/alerts.jsonl``; with ``alerts.webhook_url`` set it is
also POSTed as JSON with a Slack-compatible ``text`` field. A webhook that cannot be reached is
logged and never fails the operation that raised the alert.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.workdir import Workdir

_logger = logging.getLogger(__name__)
KINDS = (
    "drift",
    "performance",
    "gate_failed",
    "retrain_failed",
    "loop_failed",
    "batch_rejected",
    "prediction_log",
    "rollout",
    "concept_shift",
)


def raised_keys(workdir: Workdir, kind: str) -> set[str]:
    """The ``details.key`` of every alert of ``kind`` in the alerts file: a condition that persists
    (a period's concept shift) is alerted once, not at every check."""
    path = workdir.alerts_log
    if not path.exists():
        return set()
    keys = set()
    with path.open() as lines:
        for line in lines:
            try:
                found = json.loads(line)
            except ValueError:  # a line cut short by a crash: not an alert
                continue
            if not isinstance(found, dict):
                continue
            details = found.get("details")
            if found.get("kind") == kind and isinstance(details, dict) and "key" in details:
                keys.add(str(details["key"]))
    return keys


def alert(config: FlywheelConfig, workdir: Workdir, kind: str, text: str, **details: Any) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(KINDS)}")
    payload = {
        "text": f"[flywheel {config.use_case}] {text}",
        "kind": kind,
        "use_case": config.use_case,
        "created_at": datetime.now(UTC).isoformat(),
        "details": details,
    }
    _logger.warning("alert %s: %s", kind, text)
    workdir.reports.mkdir(parents=True, exist_ok=True)
    with workdir.alerts_log.open("a") as log:
        log.write(json.dumps(payload, default=str) + "\n")
    url = config.alerts.webhook_url
    if url:
        request = urllib.request.Request(
            url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=config.alerts.timeout_seconds) as response:
                response.read()
        except OSError as error:
            _logger.warning("alert webhook %s failed: %s", url, error)
    return payload
