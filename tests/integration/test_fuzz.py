"""The live prediction service fuzzed from its own OpenAPI schema with schemathesis's Python API: every
operation the schema lists, its examples and positive and negative generated data, the admin endpoint
with and without its token. No response is a 5xx, no body (nor the service log) holds a traceback,
every response is what the schema documents (status, content type, headers, body), and input the
schema forbids is rejected.

Bounded: a fixed number of cases per operation, variant and generation mode (about 575 requests,
25 s on two cores), drawn deterministically; every failure is collected and counted by kind, with a
curl command that reproduces it, instead of stopping at the first. The CLI run in
``test_service_hardening`` adds schemathesis's coverage phase (boundary values) to this.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis
import pyarrow.parquet as pq
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup

from flywheel.config import FlywheelConfig
from flywheel.features import snapshots
from flywheel.workdir import Workdir
from tests.servers import ADMIN_TOKEN, service

if TYPE_CHECKING:
    from schemathesis.core.failures import Failure

CASES = 60  # per operation, variant and generation mode (an operation without inputs has one case)
TRACEBACK_MARKERS = ("Traceback", 'File "')
ADMIN = "POST /v1/admin/reload"
# at least these: every operation the schema lists is fuzzed, these must be among them
OPERATIONS = {
    "GET /health",
    "GET /ready",
    "GET /metrics",
    "GET /v1/model",
    "POST /v1/predict",
    "POST /v1/predict/batch",
    "POST /v1/score",
    ADMIN,
}
# the prediction endpoints' success paths, reached with entities the service holds (the schema's
# example id is the use case's, not one of the test data's)
ANSWERED = ("POST /v1/predict", "POST /v1/predict/batch", "POST /v1/score")


def no_traceback(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """No response body shows a stack trace (this test's own check, run beside schemathesis's)."""
    found = [marker for marker in TRACEBACK_MARKERS if marker in response.text]
    assert not found, f"the body holds {found}: {response.text[:300]!r}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,  # input the schema forbids answered 2xx
    no_traceback,
]


@dataclass
class Tally:
    """What the run sent and what failed: cases by operation variant and mode, statuses, failures by
    kind (schemathesis's code and title), and one reproduction of each kind per variant."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: Counter[str] = field(default_factory=Counter)
    failures_by_variant: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: dict[tuple[str, str], str] = field(default_factory=dict)
    nothing_to_generate: list[str] = field(default_factory=list)

    def record(self, variant: str, mode: str, case: Case, response: Any, failures: list[Failure]) -> None:
        self.cases[f"{variant} [{mode}]"] += 1
        self.statuses[variant][response.status_code] += 1
        for failure in failures:
            kind = f"{failure.code} {failure.title}"
            self.failures[kind] += 1
            self.failures_by_variant[variant, kind] += 1
            self.samples.setdefault(
                (variant, kind),
                f"{case.as_curl_command()}\n  -> {response.status_code} {response.text[:300]!r}\n"
                f"  {failure.message[:400]}",
            )

    def report(self) -> str:
        lines = [f"{sum(self.cases.values())} cases:"]
        lines += [f"  {n:4d}  {name}" for name, n in sorted(self.cases.items())]
        if self.nothing_to_generate:
            lines.append(f"  (no negative data: {', '.join(self.nothing_to_generate)})")
        lines.append("statuses:")
        lines += [f"  {name}: {dict(sorted(c.items()))}" for name, c in sorted(self.statuses.items())]
        lines.append(f"{sum(self.failures.values())} failures:")
        lines += [f"  {n:4d}  {kind}" for kind, n in self.failures.most_common()]
        lines += [f"  {n:4d}  {v}: {kind}" for (v, kind), n in sorted(self.failures_by_variant.items())]
        lines += [f"--- {v}: {kind}\n{sample}" for (v, kind), sample in sorted(self.samples.items())]
        return "\n".join(lines)


def fuzz(
    operation: Any,
    variant: str,
    base: str,
    session: requests.Session,
    tally: Tally,
    headers: dict[str, str] | None = None,
    served: dict[str, Any] | None = None,
) -> None:
    """The operation's schema examples, then CASES positive and CASES negative generated cases (and
    with a ``served`` body, positive cases of its headers and query around it), each sent to the live
    service and checked; failures are tallied, never raised (there is nothing to shrink)."""
    settings = hypothesis.settings(
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )

    def draw(strategy: Any, mode: str, cases: int) -> None:
        @hypothesis.settings(settings, max_examples=cases)
        @hypothesis.given(strategy)
        def each(case: Case) -> None:
            response = case.call(base_url=base, session=session, timeout=30)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                tally.record(variant, mode, case, response, list(group.exceptions))
            else:
                tally.record(variant, mode, case, response, [])

        try:
            each()
        except Unsatisfiable:  # no parameter and no body to make invalid
            tally.nothing_to_generate.append(variant)

    for example in operation.get_strategies_from_examples(headers=headers):
        draw(example, "example", 1)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        draw(operation.as_strategy(generation_mode=mode, headers=headers), mode.value, CASES)
    if served is not None:
        draw(operation.as_strategy(headers=headers, body=served), "served", CASES // 4)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzzing_every_operation_finds_no_server_error_traceback_or_schema_violation(
    served_copy: Workdir, serving_config: FlywheelConfig, tmp_path: Path
) -> None:
    known = pq.read_table(snapshots.snapshot_files(served_copy)[-1]).column("customer_id").to_pylist()[:3]
    served = {
        "POST /v1/predict": {"customer_id": known[0]},
        "POST /v1/predict/batch": {"customer_ids": [*known, 0]},  # 0: no such customer
    }
    log = tmp_path / "server.log"
    tally = Tally()
    started = time.monotonic()
    with service(served_copy, serving_config, tmp_path, log=log) as (base, _), requests.Session() as session:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=schemathesis.Config())
        operations = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
        assert set(operations) >= OPERATIONS, sorted(operations)
        for label, operation in sorted(operations.items()):
            if label == ADMIN:
                token = {"authorization": f"Bearer {ADMIN_TOKEN}"}
                fuzz(operation, f"{label} (token)", base, session, tally, headers=token)
                fuzz(operation, f"{label} (no token)", base, session, tally)
            else:
                fuzz(operation, label, base, session, tally, served=served.get(label))
    print(f"\nschemathesis, {time.monotonic() - started:.0f} s: {tally.report()}")
    logged = log.read_text()

    assert not tally.failures, tally.report()
    assert not [marker for marker in TRACEBACK_MARKERS if marker in logged], logged[-3000:]
    # every operation was sent cases (the admin endpoint with and without the token), and the success
    # path of each prediction endpoint was reached, not only its validation
    assert set(tally.statuses) == (set(operations) - {ADMIN}) | {f"{ADMIN} (token)", f"{ADMIN} (no token)"}
    assert sum(tally.cases.values()) >= 300
    for label in ANSWERED:
        assert tally.cases[f"{label} [negative]"] == CASES, label
        assert 200 in tally.statuses[label], (label, tally.statuses[label])
    assert set(tally.statuses[f"{ADMIN} (token)"]) == {200}
    assert set(tally.statuses[f"{ADMIN} (no token)"]) == {401}
