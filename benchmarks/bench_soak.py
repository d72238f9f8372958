"""Soak: minutes of bounded `wrk` load on `flywheel serve` (127.0.0.1) while a rollout is started,
shifted and aborted, the champion is swapped and a shadow rollout comes and goes; then a graceful stop
under load.

Criteria (one verdict line each): 0 failed requests (non-2xx and socket errors, as wrk counts them);
no prediction-log row lost: after SIGTERM the log's rows equal the service's own count of 200s before
the stop plus the 200s received during it, and every request id the client received is logged once;
the service exits 0; RSS (the process and its children) grows ≤ 10 % from the end of the warm-up to
the end; each phase is answered by the arms and versions its rollout state says; every shadow-mode
answer has its shadow row; the registry recorded the rollout decisions in order. The peer is the
service itself: each phase's p99 is shown as a ratio to that of the champion alone once warm (the
first phase after the warm-up without a rollout: the aborted canary's).

Load: one wrk run per phase, back to back (a gap of milliseconds), each phase's action taken a second
into its run, under load. Bounded means a fixed number of keep-alive connections and a target rate:
wrk has no rate option (wrk2 has), so the Lua script's ``delay()`` paces each connection at
``connections / rate`` seconds between requests (a little under the rate, by the latency; the default
300 req/s is about a third of what 8 closed-loop connections reach on the 2-core host); ``--rate 0``
is closed-loop. Entities are spread over the online store's (the newest snapshot's ids the service
finds). The script writes each answer's ``request_id`` (or its failed status) to a file per wrk
thread, so the check against the log is per request. wrk times a request from its write to its
response, so the pacing is left out of the latencies. The stop: a last 2-second wrk run, SIGTERM a
second into it; its failures (requests sent once the service stopped listening) are expected.

Actions are the CLI's commands (a separate process, as an operator runs them; ``--via api`` calls
the same functions in this process), each followed by ``POST /v1/admin/reload`` so the phase's state
is known to apply from that moment (the poller, every ``serving.poll_seconds`` = 1 s here, picks it
up too; with several workers the reload reaches one, so the state counts as applied
``2 × poll_seconds + 3`` s later instead). Rows are attributed to phases by ``predicted_at``. The
automatic rollout guards are off (``rollout.guards.min_predictions`` out of reach): the aborts are
the soak's own. The prediction cache is as configured (local by default: after the first pass over
the entities most answers are cache hits); ``--set serving.cache.backend=none`` soaks the full path.

Usage: python benchmarks/bench_soak.py [--workdir .flywheel] [--config configs/churn.yaml]
           [--seconds 600] [--connections 8] [--rate 300] [--workers 1] [--via cli|api] [--set K=V]
Needs `wrk` (Debian: apt-get install -y wrk) and a workdir with a champion, another version that
passed its quality gate and a materialized online store: `make demo` builds one (or `flywheel
--workdir /tmp/soak-wd demo`). The run leaves the other version as champion; a second run swaps back.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
RSS_GROWTH_BOUND = 0.10
# the service's automatic rollout guards never judge: the soak's aborts are its own (the demo's
# retrained version scores so differently that the prediction-drift guard aborts its canary at once)
GUARDS_OFF = 10**9
# the answers file of each wrk thread: a request id per 200, "!<status>" per other status
LUA = """
local bodies = @BODIES@
local delay_ms = @DELAY_MS@
local prefix = [==[@PREFIX@]==]
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  out = io.open(prefix .. tid .. ".txt", "w")
  i = tid * 7919
  n = 0
end
function request()
  i = i + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "application/json"}, bodies[i % #bodies + 1])
end
@DELAY@
function response(status, headers, body)
  if status == 200 then
    out:write((body:match('"request_id"%s*:%s*"(%x+)"') or "?"), "\\n")
  else
    out:write("!", status, "\\n")
  end
  n = n + 1
  if n % 200 == 0 then out:flush() end
end
"""


@dataclass
class Step:
    """One phase: its action (a CLI command, and the same as a call), and the (version, arm) pairs
    that answer once it applies, the shadow version scoring beside them, the rollout event it records."""

    name: str
    command: tuple[str, ...] | None
    call: Callable[[], Any] | None
    answers: set[tuple[str, str | None]]
    shadow: str | None = None
    event: str | None = None


@dataclass
class Phase:
    step: Step
    started: datetime  # wrk started
    applied: datetime  # the action's state is served from here on
    action_seconds: float = 0.0
    wrk: dict[str, float] = field(default_factory=dict)
    answered: list[str] = field(default_factory=list)  # request ids the client got with a 200
    failed: Counter = field(default_factory=Counter)  # other statuses the client got
    rss_kib: int = 0  # at the phase's end
    settled: Counter = field(default_factory=Counter)  # (version, arm) of its rows once applied
    rows: int = 0  # its log rows (non-shadow)


@dataclass
class Stop:
    """The graceful stop under load: a last wrk run, SIGTERM ``after`` seconds into it."""

    phase: Phase
    server_ok: int  # the service's own count of /v1/predict 200s before this run
    pending: int  # prediction-log rows queued just before SIGTERM
    signalled: datetime
    exit_code: int | None
    drained: int = 0  # rows answered after SIGTERM (the graceful drain)


@dataclass
class SoakReport:
    phases: list[Phase]
    stop: Stop
    rss: list[tuple[float, int]]  # (seconds since the warm-up ended, KiB) samples
    rss_warm_kib: int
    rss_end_kib: int  # before the stop
    logged: int  # non-shadow /v1/predict rows written since the service started
    duplicates: int  # request ids logged more than once (non-shadow)
    unlogged: int  # request ids the client got with a 200 that are not in the log
    shadow_rows: int
    shadow_missing: int  # shadow-mode answers without their shadow row
    events: list[str]  # rollout decisions recorded during the run

    @property
    def requests(self) -> int:
        """Requests answered in the phases (the stop's are apart: its failures are expected)."""
        return sum(int(p.wrk["requests"]) for p in self.phases)

    @property
    def failed(self) -> int:
        return sum(int(p.wrk["non_2xx"] + p.wrk["socket_errors"]) for p in self.phases)

    @property
    def answered(self) -> int:
        """200s the client received, the stop's included."""
        return sum(len(p.answered) for p in [*self.phases, self.stop.phase])

    @property
    def rss_growth(self) -> float:
        return self.rss_end_kib / self.rss_warm_kib - 1

    def mismatched_phases(self) -> list[str]:
        """Phases whose settled rows were answered by another (version, arm) than the state says, or
        a canary missing one of its arms."""
        return [p.step.name for p in [*self.phases, self.stop.phase] if set(p.settled) != p.step.answers]

    def verdicts(self, expected_events: list[str]) -> list[tuple[str, bool, str]]:
        stop = self.stop
        received = len(stop.phase.answered)
        return [
            (
                "0 failed requests",
                self.failed == 0,
                f"{self.failed} of {self.requests:,}"
                + "".join(f"; {n} × {status}" for p in self.phases for status, n in p.failed.items()),
            ),
            (
                "no log row lost (graceful stop under load)",
                self.unlogged == 0 and self.duplicates == 0 and self.logged == stop.server_ok + received,
                f"{self.logged:,} rows = {stop.server_ok:,} answered before the stop + {received} during it "
                f"({stop.drained} after SIGTERM, {stop.pending} queued at SIGTERM); {self.unlogged} of "
                f"{self.answered:,} answers received not logged, {self.duplicates} duplicated",
            ),
            ("graceful stop exits 0", stop.exit_code == 0, f"exit code {stop.exit_code}"),
            (
                f"RSS growth ≤ {RSS_GROWTH_BOUND:.0%} after warm-up",
                self.rss_growth <= RSS_GROWTH_BOUND,
                f"{self.rss_warm_kib / 1024:.0f} → {self.rss_end_kib / 1024:.0f} MiB "
                f"({self.rss_growth:+.1%}; max {max(k for _, k in self.rss) / 1024:.0f} MiB)",
            ),
            (
                "each phase served by its state's arms",
                not self.mismatched_phases(),
                ", ".join(self.mismatched_phases()) or "all phases",
            ),
            (
                "every shadow-mode answer has its shadow row",
                self.shadow_missing == 0,
                f"{self.shadow_missing} missing of {self.shadow_rows:,} shadow rows",
            ),
            (
                "rollout decisions recorded in order",
                self.events == expected_events,
                " → ".join(self.events) or "none",
            ),
        ]


# -- the plan -----------------------------------------------------------------------------------


def versions_to_use(config: Any, workdir: Any) -> tuple[str, str]:
    """(the champion, the newest other version that passed its gate): the one rolled out and
    swapped in; the champion comes back in shadow."""
    from flywheel.registry import registry
    from flywheel.rollout import state

    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    if state.current(client, name) is not None:
        raise SystemExit(f"{name} has a rollout running; `flywheel rollout abort` it first")
    rows = registry.list_versions(config, workdir)
    champion = next((r["version"] for r in rows if "champion" in r["aliases"]), None)
    others = [r["version"] for r in rows if r["gate_passed"] == "true" and r["version"] != champion]
    if champion is None or not others:
        raise SystemExit(
            f"{workdir.root} needs a champion and another version that passed its gate "
            "(`flywheel demo` builds both)"
        )
    return champion, others[-1]


def plan(config: Any, workdir: Any, champion: str, challenger: str) -> list[Step]:
    """Warm-up → canary 10 % → shifted to 50 % → aborted → the challenger swapped in as champion →
    the old champion in shadow → aborted."""
    from flywheel.registry import registry
    from flywheel.rollout import state

    def promote() -> None:
        decision = registry.promote(config, workdir, challenger, force=True)
        if not decision.promoted:
            raise RuntimeError(f"v{challenger} not promoted: {decision.reason}")

    old, new = champion, challenger
    canary = {(old, "champion"), (new, "challenger")}
    return [
        Step("warm-up", None, None, {(old, None)}),
        Step(
            "canary 10 %",
            ("rollout", "start", "--mode", "canary", "--version", new, "--percent", "10"),
            functools.partial(state.start, config, workdir, "canary", new, 10),
            canary,
            event="start",
        ),
        Step(
            "canary 50 %",
            ("rollout", "shift", "--percent", "50"),
            functools.partial(state.shift, config, workdir, None, 50),
            canary,
            event="shift",
        ),
        Step(
            "aborted",
            ("rollout", "abort", "--reason", "soak"),
            functools.partial(state.abort, config, workdir, "soak"),
            {(old, None)},
            event="abort",
        ),
        Step("champion swapped", ("model", "promote", new, "--force"), promote, {(new, None)}),
        Step(
            "shadow",
            ("rollout", "start", "--mode", "shadow", "--version", old),
            functools.partial(state.start, config, workdir, "shadow", old),
            {(new, "champion")},
            shadow=old,
            event="start",
        ),
        Step(
            "shadow aborted",
            ("rollout", "abort", "--reason", "soak"),
            functools.partial(state.abort, config, workdir, "soak"),
            {(new, None)},
            event="abort",
        ),
    ]


def phase_seconds(seconds: float, phases: int) -> list[int]:
    """Whole seconds per phase (wrk's -d): a tenth (at least 3 s) for the warm-up, the rest shared."""
    warm = max(3, round(seconds / 10))
    rest = max(3, round((seconds - warm) / (phases - 1)))
    return [warm] + [rest] * (phases - 1)


# -- the service and its figures -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@contextlib.contextmanager
def serve(
    config_path: str | None, workdir: Path, workers: int, token: str, log: Path, sets: tuple[str, ...] = ()
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`flywheel serve` polling every second with an admin token (and the ``sets`` overrides), until
    /ready; stopped by SIGTERM when the caller has not stopped it."""
    port = free_port()
    argv = [str(BIN / "flywheel"), *(["--config", config_path] if config_path else [])]
    argv += ["--workdir", str(workdir), "--set", "serving.poll_seconds=1"]
    argv += ["--set", f"rollout.guards.min_predictions={GUARDS_OFF}"]
    argv += [arg for value in sets for arg in ("--set", value)]
    argv += ["--set", f"serving.admin_token={token}", "serve", "--port", str(port)]
    argv += ["--workers", str(workers)]
    with log.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, process)
            yield base, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)


def wait_ready(base: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError):
            if http(base, "GET", "/ready")[0] == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the service did not become ready (exit code {process.poll()})")
        time.sleep(0.3)


def entity_bodies(config: Any, workdir: Any, base: str, limit: int) -> list[dict[str, Any]]:
    """Request bodies over the online store's entities: the newest snapshot's ids the service finds
    (asked through /v1/predict/batch, whose rows the checks leave out). A use case whose callers send
    their record gets the example record with each id (it never answers 404)."""
    import pyarrow.parquet as pq

    from flywheel.features import snapshots
    from flywheel.serving.schemas import bodies

    names = bodies(config.spec)
    snapshot_key = config.spec.snapshot.entity.join_key
    latest = snapshots.snapshot_files(workdir)[-1]
    ids = pq.read_table(latest, columns=[snapshot_key]).column(snapshot_key).to_pylist()[:limit]
    if names.request:
        example = config.spec.api.example
        return [{**example, names.key: i, snapshot_key: e} for i, e in enumerate(ids)]
    found = []
    for at in range(0, len(ids), config.serving.max_batch):
        status, answer = http(
            base, "POST", "/v1/predict/batch", {names.keys: ids[at : at + config.serving.max_batch]}
        )
        if status != 200:
            raise RuntimeError(f"/v1/predict/batch answered {status}: {str(answer)[:300]}")
        found += [p[names.key] for p in answer["predictions"]]
    if not found:
        raise RuntimeError(f"none of the newest snapshot's {len(ids)} entities is in the online store")
    return [{names.key: e} for e in found]


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants (the workers of `serve --workers N`), in KiB."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, grown = {pid}, True
    while grown:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    total = 0
    for member in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class RssSampler:
    """Samples the service's RSS every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every, self.samples = pid, every, []
        self.zero = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> int:
        """Restart the clock at the end of the warm-up; returns the RSS then."""
        self.zero = time.monotonic()
        now = self.sample()
        self._thread.start()
        return now

    def sample(self) -> int:
        kib = tree_rss_kib(self.pid)
        self.samples.append((time.monotonic() - self.zero, kib))
        return kib

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.sample()


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{", 1)[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


# -- wrk ----------------------------------------------------------------------------------------


def wrk_script(folder: Path, bodies: list[dict[str, Any]], connections: int, rate: float) -> Path:
    """The Lua script of one wrk run, its answers written to ``folder/answers-<thread>.txt``."""
    listed = ",\n".join(f"[==[{json.dumps(body)}]==]" for body in bodies)
    delay_ms = connections * 1000 / rate if rate > 0 else 0
    script = (
        LUA.replace("@DELAY_MS@", f"{delay_ms:.3f}")
        .replace("@PREFIX@", str(folder / "answers-"))
        .replace("@DELAY@", "function delay() return delay_ms end" if rate > 0 else "")
        .replace("@BODIES@", "{\n" + listed + "\n}")  # last: a body may hold anything but ]==]
    )
    path = folder / "soak.lua"
    path.write_text(script)
    return path


def start_wrk(base: str, script: Path, connections: int, seconds: int) -> subprocess.Popen:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    argv = [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s"]
    argv += ["--timeout", "10s", "--latency", "-s", str(script), f"{base}/v1/predict"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_wrk(out: str) -> dict[str, float]:
    """Requests, errors and latencies (ms) from wrk's report."""

    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if found is None:
        raise RuntimeError(f"wrk's report has no request count:\n{out}")
    figures = {"requests": float(found.group(1)), "seconds": ms(*found.group(2, 3)) / 1000}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        hit = re.search(rf"{label}\s+([\d.]+)(us|ms|s|m)\b", out)
        figures[key] = ms(*hit.groups()) if hit else float("nan")
    stats = re.search(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)", out)
    figures["max"] = ms(*stats.groups()) if stats else float("nan")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["socket_errors"] = float(sum(map(int, errors.groups()))) if errors else 0.0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(non_2xx.group(1)) if non_2xx else 0.0
    return figures


def read_answers(folder: Path) -> tuple[list[str], Counter]:
    answered, failed = [], Counter()
    for path in sorted(folder.glob("answers-*.txt")):
        for line in path.read_text().split():
            if line.startswith("!"):
                failed[int(line[1:])] += 1
            else:
                answered.append(line)
    return answered, failed


# -- the run ------------------------------------------------------------------------------------


def act(step: Step, via: str, cli: list[str]) -> None:
    if via == "api":
        step.call()
        return
    done = subprocess.run([*cli, *step.command], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"flywheel {' '.join(step.command)} failed: {done.stderr[-2000:]}")


def apply(base: str, token: str, workers: int, poll_seconds: float) -> None:
    """Make the registry's new state the served one: an admin reload (the poller's refresh, now);
    with several workers the reload reaches one, so wait out the others' polls instead."""
    if workers > 1:
        time.sleep(2 * poll_seconds + 3)
        return
    status, answer = http(base, "POST", "/v1/admin/reload", token=token)
    if status != 200:
        raise RuntimeError(f"/v1/admin/reload answered {status}: {answer}")


def run_phases(
    base: str,
    steps: list[Step],
    seconds: list[int],
    bodies: list[dict[str, Any]],
    folder: Path,
    *,
    connections: int,
    rate: float,
    act_step: Callable[[Step], None],
    token: str,
    workers: int = 1,
    poll_seconds: float = 1.0,
    sampler: RssSampler,
    on_phase: Callable[[Phase], None] = lambda phase: None,
) -> tuple[list[Phase], int]:
    """Each step's wrk run with its action taken a second (a fifth of a short phase) in, under load;
    returns the phases and the RSS at the end of the warm-up (the sampler starts then)."""
    phases: list[Phase] = []
    rss_warm = 0
    for index, (step, length) in enumerate(zip(steps, seconds, strict=True)):
        started = datetime.now(UTC)
        wrk, run_folder = run_wrk(base, folder / f"phase-{index}", bodies, connections, rate, length)
        phase = Phase(step, started, started)
        if step.command is not None:
            time.sleep(min(1.0, length / 5))
            clock = time.perf_counter()
            act_step(step)
            apply(base, token, workers, poll_seconds)
            phase.applied, phase.action_seconds = datetime.now(UTC), time.perf_counter() - clock
        finish_wrk(wrk, run_folder, phase, timeout=length + 120)
        phase.rss_kib = sampler.start() if index == 0 else sampler.sample()
        if index == 0:
            rss_warm = phase.rss_kib
        phases.append(phase)
        on_phase(phase)
    return phases, rss_warm


def run_wrk(
    base: str, folder: Path, bodies: list[dict[str, Any]], connections: int, rate: float, seconds: int
) -> tuple[subprocess.Popen, Path]:
    folder.mkdir(parents=True)
    script = wrk_script(folder, bodies, connections, rate)
    return start_wrk(base, script, connections, seconds), folder


def finish_wrk(wrk: subprocess.Popen, folder: Path, phase: Phase, timeout: float) -> None:
    out, _ = wrk.communicate(timeout=timeout)
    if wrk.returncode != 0:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {out}")
    phase.wrk = parse_wrk(out)
    phase.answered, phase.failed = read_answers(folder)


def stop_under_load(
    base: str,
    process: subprocess.Popen,
    last: Step,
    bodies: list[dict[str, Any]],
    folder: Path,
    *,
    connections: int,
    rate: float,
    seconds: int = 2,
    after: float = 1.0,
) -> Stop:
    """Count what the service answered so far, then SIGTERM it ``after`` seconds into a last wrk
    run: requests in flight are answered and their rows (still queued, some) flushed by the graceful
    stop; wrk's failures once the listener closed are expected here."""
    _, text = http(base, "GET", "/metrics")
    server_ok = int(metric(text, "flywheel_requests_total", endpoint="/v1/predict", status="200"))
    started = datetime.now(UTC)
    wrk, run_folder = run_wrk(base, folder / "stop", bodies, connections, rate, seconds)
    phase = Phase(Step("graceful stop", None, None, last.answers), started, started)
    time.sleep(after)
    _, text = http(base, "GET", "/metrics")
    pending = int(metric(text, "flywheel_prediction_log_pending"))
    signalled = datetime.now(UTC)
    process.send_signal(signal.SIGTERM)
    try:
        exit_code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        exit_code = None
    finish_wrk(wrk, run_folder, phase, timeout=seconds + 120)
    return Stop(phase, server_ok, pending, signalled, exit_code)


def count_log(log: Path, since: datetime, phases: list[Phase], stop: Stop) -> dict[str, Any]:
    """Hold the log (read after the stop) against the answers: each phase's rows and who served
    them, rows missing or doubled, shadow rows missing."""
    from flywheel.serving.predlog import SHADOW, read_log

    columns = ("request_id", "predicted_at", "model_version", "arm", "endpoint")
    rows = [r for r in read_log(log, since=since, columns=columns, shadow=True) if r["endpoint"] == "predict"]
    for row in rows:
        row["predicted_at"] = datetime.fromisoformat(row["predicted_at"])
    shadow = [r for r in rows if r["arm"] == SHADOW]
    served = [r for r in rows if r["arm"] != SHADOW]
    everything = [*phases, stop.phase]
    for phase, following in zip(everything, [*everything[1:], None], strict=True):
        until = following.started if following is not None else datetime.max.replace(tzinfo=UTC)
        window = [r for r in served if phase.started <= r["predicted_at"] < until]
        phase.rows = len(window)
        phase.settled = Counter(
            (r["model_version"], r["arm"]) for r in window if r["predicted_at"] >= phase.applied
        )
    stop.drained = sum(1 for r in served if r["predicted_at"] >= stop.signalled)
    logged = Counter(r["request_id"] for r in served)
    shadowed = {r["request_id"] for r in shadow}
    in_shadow_mode = [  # answered while the shadow rollout ran: from its start to its abort
        r["request_id"]
        for phase, following in itertools.pairwise(phases)
        if phase.step.shadow is not None
        for r in served
        if phase.applied <= r["predicted_at"] < following.applied and r["arm"] == "champion"
    ]
    return {
        "logged": len(served),
        "duplicates": sum(n - 1 for n in logged.values() if n > 1),
        "unlogged": sum(1 for p in everything for request_id in p.answered if request_id not in logged),
        "shadow_rows": len(shadow),
        "shadow_missing": sum(1 for request_id in in_shadow_mode if request_id not in shadowed),
    }


def rollout_events(config: Any, workdir: Any) -> list[dict[str, Any]]:
    from flywheel.registry import registry
    from flywheel.rollout import state

    return state.events(registry.mlflow_client(config, workdir), config.registry.model_name)


def soak(
    config: Any,
    workdir: Any,
    base: str,
    process: subprocess.Popen,
    folder: Path,
    *,
    seconds: float,
    connections: int,
    rate: float,
    token: str,
    since: datetime,
    via: str = "api",
    cli: list[str] | None = None,
    workers: int = 1,
    entities: int = 2000,
    rss_every: float = 5.0,
    on_phase: Callable[[Phase], None] = lambda phase: None,
) -> SoakReport:
    """The whole soak against a running service (started at ``since``): the plan's phases under
    load, then the graceful stop and the counts. ``process`` is the service's, SIGTERMed here."""
    champion, challenger = versions_to_use(config, workdir)
    steps = plan(config, workdir, champion, challenger)
    before = len(rollout_events(config, workdir))
    bodies = entity_bodies(config, workdir, base, entities)
    sampler = RssSampler(process.pid, rss_every)
    phases, rss_warm = run_phases(
        base,
        steps,
        phase_seconds(seconds, len(steps)),
        bodies,
        folder,
        connections=connections,
        rate=rate,
        act_step=lambda step: act(step, via, cli or []),
        token=token,
        workers=workers,
        poll_seconds=config.serving.poll_seconds,
        sampler=sampler,
        on_phase=on_phase,
    )
    rss_end = sampler.stop()
    stop = stop_under_load(base, process, steps[-1], bodies, folder, connections=connections, rate=rate)
    counts = count_log(workdir.prediction_log_named(config.serving.log_name), since, phases, stop)
    events = [e["action"] for e in rollout_events(config, workdir)[before:]]
    return SoakReport(phases, stop, sampler.samples, rss_warm, rss_end, events=events, **counts)


def expected_events(report: SoakReport) -> list[str]:
    return [p.step.event for p in report.phases if p.step.event is not None]


# -- the printout -------------------------------------------------------------------------------


def served_by(counts: Counter) -> str:
    if not counts:
        return "no rows once applied (the action outlasted the phase)"
    total = sum(counts.values())
    return ", ".join(
        f"v{version}{'/' + arm if arm else ''} {n / total:.0%}"
        for (version, arm), n in sorted(counts.items())
    )


def print_report(report: SoakReport, title: str) -> None:
    alone = next(p for p in report.phases[1:] if all(arm is None for _, arm in p.step.answers))
    alone_p99 = alone.wrk["p99"]
    print(title)
    print(
        f"{'phase':<18}{'s':>5}{'action s':>9}{'requests':>10}{'log rows':>10}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'÷ alone':>8}{'max ms':>8}{'failed':>7}{'RSS MiB':>8}  served by (once applied)"
    )
    for p in [*report.phases, report.stop.phase]:
        w = p.wrk
        failed = int(w["non_2xx"] + w["socket_errors"])
        rss = f"{p.rss_kib / 1024:.0f}" if p.rss_kib else "-"
        print(
            f"{p.step.name:<18}{w['seconds']:>5.0f}{p.action_seconds:>9.1f}{int(w['requests']):>10,}{p.rows:>10,}"
            f"{w['requests'] / w['seconds']:>8.0f}{w['p50']:>8.2f}{w['p99']:>8.2f}{w['p99'] / alone_p99:>7.1f}×"
            f"{w['max']:>8.1f}{failed:>7}{rss:>8}  {served_by(p.settled)}"
        )
    print(
        f"graceful stop: SIGTERM {(report.stop.signalled - report.stop.phase.started).total_seconds():.1f} s "
        "into its run; its failed requests are the ones sent once the service stopped listening"
    )
    print(
        f"total: {report.requests:,} requests, {report.answered:,} answers received with their ids, "
        f"{report.logged:,} log rows (+{report.shadow_rows:,} shadow)"
    )
    tenth = report.rss[-1][0] / 10
    trace = [next(kib for at, kib in report.rss if at >= k * tenth) for k in range(10)] + [report.rss_end_kib]
    print("RSS MiB every tenth of the run after the warm-up: " + " ".join(f"{k / 1024:.0f}" for k in trace))
    half = [kib for at, kib in report.rss if at >= report.rss[-1][0] / 2]
    print(
        f"RSS over the second half of the run (after every model load): {min(half) / 1024:.0f} → "
        f"{half[-1] / 1024:.0f} MiB (a leak keeps growing here; a model load is a step)"
    )
    for name, passed, detail in report.verdicts(expected_events(report)):
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--workdir", default=".flywheel")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300, help="target requests/s in all (0: closed loop)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--via", choices=("cli", "api"), default="cli", help="how the actions are taken")
    parser.add_argument("--entities", type=int, default=2000)
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="KEY=VALUE for the service, e.g. serving.cache.backend=none",
    )
    args = parser.parse_args()
    from flywheel.config import load_config
    from flywheel.workdir import Workdir

    config_path = str(Path(args.config).resolve()) if args.config else None
    config = load_config(config_path, {"serving.poll_seconds": 1})
    workdir = Workdir.at(Path(args.workdir).resolve())
    token = secrets.token_hex(16)
    cli = [str(BIN / "flywheel"), *(["--config", config_path] if config_path else [])]
    cli += ["--workdir", str(workdir.root)]
    with tempfile.TemporaryDirectory(prefix="flywheel-soak-") as tmp:
        folder = Path(tmp)
        since = datetime.now(UTC)
        server_log = folder / "server.log"
        with serve(config_path, workdir.root, args.workers, token, server_log, tuple(args.set)) as (
            base,
            process,
        ):
            print(
                f"{config.spec.name}: {args.seconds:.0f} s, {args.connections} connections at "
                f"{args.rate:g} req/s, {args.workers} worker(s), actions via {args.via}; server pid {process.pid}",
                flush=True,
            )
            report = soak(
                config,
                workdir,
                base,
                process,
                folder,
                seconds=args.seconds,
                connections=args.connections,
                rate=args.rate,
                token=token,
                since=since,
                via=args.via,
                cli=cli,
                workers=args.workers,
                entities=args.entities,
                rss_every=args.rss_every,
                on_phase=lambda p: print(
                    f"  {p.step.name}: {int(p.wrk['requests']):,} requests, p99 {p.wrk['p99']:.2f} ms, "
                    f"RSS {p.rss_kib / 1024:.0f} MiB",
                    flush=True,
                ),
            )
        server_log = server_log.read_text()
    print_report(report, f"soak of {workdir.root}")
    if "Traceback" in server_log:
        print("the service logged a traceback:\n" + server_log[-3000:])
    failed = [name for name, passed, _ in report.verdicts(expected_events(report)) if not passed]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
