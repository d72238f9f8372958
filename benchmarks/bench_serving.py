"""Online prediction: Flywheel's /v1/predict against the service a user would assemble from the seeds.

Starts on 127.0.0.1, in one run: (a) `flywheel serve` with the prediction cache off and (b) another
with it on (`local`); (c) the peer pair — Feast's feature server (`feast serve`) for the features,
then `mlflow models serve` for the same champion model, called one after the other per request;
(d) a FastAPI endpoint returning a constant (the HTTP ceiling). Each flywheel service writes a
prediction log of its own (`predictions/bench-*.db`, removed at the end).

`wrk` (when installed) drives the flywheel services and the constant endpoint with a Lua script that
replays one id sequence: each request repeats one of the last 64 ids with probability --repeat (30 %)
and otherwise takes the next id of the snapshot's entities; the cached service keeps --cache-entries
entries, fewer than the entities, so the ids that come round again have left it and only the
repeats can hit (the hit rate printed is the service's own count). Then, on the cache-off service, a
shadow rollout and a 10 % canary of another registered version that passed its gate (`flywheel
rollout start` / `abort`, recorded in the workdir's registry as any rollout is; skipped when a
rollout is already running or no such version exists; the guards' limits are raised so that they
judge, at their cost, but never abort). Every wrk target is measured --rounds times,
in turn. The pair cannot be driven by wrk: a Python load generator (N keep-alive connections, one
thread each) drives it, the cache-off service and the constant endpoint, so off ÷ pair compares one
client's figures.

Prints requests/s, p50, p99 and errors per target (medians over the rounds) and each round's ratios:
cache on ÷ off, shadow ÷ off, canary ÷ off, off ÷ constant (wrk), off ÷ pair (Python client).
Goals: off ≥ 50 % of the constant endpoint and ≥ 10× the pair, p99 ≤ 10 ms at 8 connections, shadow
≥ 85 % and canary ≥ 97 % of off.

Usage: python benchmarks/bench_serving.py [--config configs/churn.yaml] [--workdir .flywheel]
                                          [--connections 8] [--seconds 10] [--rounds 2]
                                          [--repeat 0.3] [--cache-entries 512] [--no-rollouts]
Needs a workdir with a champion and a materialized online store (run `make demo` first, or
`flywheel --config configs/bank.yaml demo` and `--config configs/bank.yaml --workdir .flywheel-bank`).
For a use case whose callers send their record (bank), every target gets the same record; the pair
fetches the online features (client history and the entity-less macro view) from `feast serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

BIN = Path(sys.executable).parent
CONSTANT_APP = """
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.post("/v1/predict")
async def predict(body: dict) -> dict:
    return {"id": body.get("id"), "probability": 0.5}
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
"""
RECENT = 64  # a repeat is one of the last RECENT ids of the sequence
SEQUENCE = 50_000  # requests in the replayed id sequence (wrk wraps round it)
OFF, ON, SHADOW, CANARY, CONSTANT, PAIR = (
    "flywheel, cache off",
    "flywheel, cache on",
    "flywheel, shadow rollout",
    "flywheel, canary 10 %",
    "constant FastAPI endpoint",
    "feast serve + mlflow models serve",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"nothing answered on port {port}{path}")


def post(connection: http.client.HTTPConnection, path: str, body: dict) -> dict:
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
    return json.loads(data)


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    return connection.getresponse().read().decode()


def load(call: Callable[[dict, int], None], connections: int, seconds: float) -> dict[str, float]:
    """Drive ``call(connection_state, i)`` from N threads for ``seconds``; latency per call."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        state: dict = {}
        i = k
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                call(state, i)
                latencies[k].append(time.perf_counter() - started)
            except Exception:
                errors[k] += 1
                state.clear()
            i += connections

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = np.array([x for part in latencies for x in part])
    return {
        "rps": len(flat) / seconds,
        "p50": float(np.percentile(flat, 50) * 1000),
        "p99": float(np.percentile(flat, 99) * 1000),
        "errors": sum(errors),
    }


def id_sequence(pool: int, repeat: float, count: int = SEQUENCE, seed: int = 0) -> list[int]:
    """Indices into the pool of ids: with probability ``repeat`` one of the last ``RECENT`` indices
    of the sequence, otherwise the next index of the pool (cyclic)."""
    rng = random.Random(seed)
    sequence: list[int] = []
    fresh = 0
    for _ in range(count):
        if sequence and rng.random() < repeat:
            sequence.append(rng.choice(sequence[-RECENT:]))
        else:
            sequence.append(fresh % pool)
            fresh += 1
    return sequence


def wrk_script(bodies: list[dict], threads: int) -> str:
    """A wrk Lua script replaying ``bodies`` in order, each thread from its own part of the list."""
    quoted = ",\n".join(
        "'" + json.dumps(body).replace("\\", "\\\\").replace("'", "\\'") + "'" for body in bodies
    )
    script = f"""
local bodies = {{
{quoted}
}}
local created = 0
function setup(thread)
  thread:set("start", created * math.floor(#bodies / {threads}))
  created = created + 1
end
function init(args)
  n = start
  headers = {{["Content-Type"] = "application/json"}}
end
function request()
  n = n + 1
  return wrk.format("POST", nil, headers, bodies[(n % #bodies) + 1])
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    return file.name


def wrk(port: int, connections: int, seconds: float, script: str, threads: int = 2) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            *("-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--latency"),
            *("-s", script, f"http://127.0.0.1:{port}/v1/predict"),
        ],
        capture_output=True,
        text=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "errors": (int(failed.group(1)) if failed else 0)
        + (sum(int(n) for n in sockets.groups()) if sockets else 0),
    }


def cache_counts(port: int) -> tuple[float, float] | None:
    """The service's (hits, misses) of the prediction cache, None when it counts none."""
    text = get(port, "/metrics")
    counts = []
    for name in ("flywheel_cache_hits_total", "flywheel_cache_misses_total"):
        found = re.findall(rf"^{name}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.MULTILINE)
        if not found:
            return None
        counts.append(sum(float(n) for n in found))
    return counts[0], counts[1]


def rollout_version(config: Any, workdir: Any) -> str | None:
    """A registered version that passed its gate and is not the champion (the newest), if any."""
    from flywheel.registry import registry
    from flywheel.rollout import state

    client = registry.mlflow_client(config, workdir)
    name = config.registry.model_name
    if state.current(client, name) is not None:
        return None  # someone's rollout: neither measured over nor aborted
    champion = registry.alias_version(client, name, registry.CHAMPION)
    passed = [
        v["version"]
        for v in registry.list_versions(config, workdir)
        if v["gate_passed"] == "true" and v["version"] != champion
    ]
    return max(passed, key=int) if passed else None


def flywheel_cli(env: dict, *args: str) -> None:
    subprocess.run([str(BIN / "flywheel"), *args], env=env, check=True, capture_output=True, text=True)


def wait_arm(port: int, body: dict, present: bool, timeout: float = 60) -> None:
    """Until the service answers with (or without) an ``arm``: it follows the rollout's start or end."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + timeout
    while ("arm" in post(connection, "/v1/predict", body)) != present:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service on port {port} did not follow the rollout")
        time.sleep(0.2)


def start(command: list[str], env: dict, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def flywheel_serve(port: int, env: dict, *settings: str) -> subprocess.Popen:
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return start([str(BIN / "flywheel"), *sets, "serve", "--port", str(port)], env)


class Bench:
    """One run's services, ids and bodies."""

    def __init__(self, args: argparse.Namespace) -> None:
        from flywheel.config import load_config
        from flywheel.serving.schemas import bodies

        self.args, self.config = args, load_config(args.config)
        self.names = bodies(self.config.spec)
        self.workdir = Path(args.workdir).resolve()
        self.latest = sorted((self.workdir / "features" / "snapshots").glob("*.parquet"))[-1]
        self.snapshot_key = self.config.spec.snapshot.entity.join_key
        self.ids = pq.read_table(self.latest).column(self.snapshot_key).to_pylist()
        random.Random(1).shuffle(self.ids)
        self.env = {
            **os.environ,
            **({"FLYWHEEL_CONFIG": str(Path(args.config).resolve())} if args.config else {}),
            "FLYWHEEL_WORKDIR": str(self.workdir),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.workdir}/mlflow.db",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        self.ports = {name: free_port() for name in (OFF, ON, "feast", "mlflow", CONSTANT)}

    def body_for(self, i: int) -> dict:
        names, ids = self.names, self.ids
        if not names.request:
            return {names.key: ids[i % len(ids)]}
        key = i if self.config.spec.entity.dtype == "int64" else f"bench-{i}"  # a string key (credit's id)
        return {**self.config.spec.api.example, names.key: key, self.snapshot_key: ids[i % len(ids)]}

    def start(self) -> list[subprocess.Popen]:
        ports, env = self.ports, self.env
        # the service follows a rollout's start and end within a second; the guards judge the
        # challenger (their cost is measured) but never abort: a rollout is measured, not the versions
        common = (
            "serving.poll_seconds=1",
            "rollout.guards.max_prediction_psi=1e9",
            "rollout.guards.max_p99_ms=1e9",
        )
        model = f"models:/{self.config.registry.model_name}@champion"
        return [
            flywheel_serve(
                ports[OFF], env, *common, "serving.cache.backend=none", "serving.log_name=bench-off"
            ),
            flywheel_serve(
                ports[ON],
                env,
                *common,
                "serving.cache.backend=local",
                f"serving.cache.max_entries={self.args.cache_entries}",
                "serving.log_name=bench-on",
            ),
            start(
                [str(BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(ports["feast"])],
                env,
                cwd=self.workdir / "feature_repo",
            ),
            start(
                [
                    *(str(BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local"),
                    *("-h", "127.0.0.1", "-p", str(ports["mlflow"])),
                ],
                env,
            ),
            start([sys.executable, "-c", CONSTANT_APP.replace("PORT", str(ports[CONSTANT]))], env),
        ]

    def wait(self) -> None:
        for port in (self.ports[OFF], self.ports[ON]):
            wait_http(port, "/ready")
        wait_http(self.ports["feast"], "/health")
        wait_http(self.ports["mlflow"], "/ping")
        wait_http(self.ports[CONSTANT], "/docs")

    def python_client(self) -> dict[str, dict[str, float]]:
        """The cache-off service, the pair and the constant endpoint under the Python load generator."""
        from flywheel.features.snapshots import context_files
        from flywheel.workdir import Workdir

        ports, names, key = self.ports, self.names, self.snapshot_key
        features = json.loads(get(ports[OFF], "/v1/model"))["features"]
        views = {self.config.spec.snapshot.name: self.latest, **context_files(Workdir.at(self.workdir))}
        held = {view: set(pq.read_schema(path).names) for view, path in views.items()}
        refs = [f"{view}:{name}" for name in features for view in views if name in held[view]]

        def connection(state: dict, port: int) -> http.client.HTTPConnection:
            if port not in state:
                state[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            return state[port]

        def ours(state: dict, i: int) -> None:
            post(connection(state, ports[OFF]), "/v1/predict", self.body_for(i))

        def constant(state: dict, i: int) -> None:
            post(connection(state, ports[CONSTANT]), "/v1/predict", self.body_for(i))

        def pair(state: dict, i: int) -> None:
            body = self.body_for(i)
            online = post(
                connection(state, ports["feast"]),
                "/get-online-features",
                {"features": refs, "entities": {key: [body[key]]}},
            )
            fetched = online["metadata"]["feature_names"]
            row = {name: result["values"][0] for name, result in zip(fetched, online["results"], strict=True)}
            row.update({name: body[name] for name in names.request})
            post(
                connection(state, ports["mlflow"]),
                "/invocations",
                {"dataframe_split": {"columns": features, "data": [[row[name] for name in features]]}},
            )

        pair({}, 0), ours({}, 0), constant({}, 0)  # warm up, and fail early if a service is broken
        connections, seconds = self.args.connections, self.args.seconds
        return {
            OFF: load(ours, connections, seconds),
            PAIR: load(pair, connections, seconds),
            CONSTANT: load(constant, connections, seconds),
        }

    def wrk_round(self, script: str, version: str | None, hit_rates: list[float]) -> dict[str, dict]:
        """Each wrk target once; the cached service's hit rate appended to ``hit_rates``."""
        measured = {}
        connections, seconds = self.args.connections, self.args.seconds
        for target in (OFF, ON, CONSTANT):
            before = cache_counts(self.ports[ON]) if target == ON else None
            measured[target] = wrk(self.ports[target], connections, seconds, script)
            after = cache_counts(self.ports[ON]) if target == ON else None
            if before and after and sum(after) > sum(before):
                hit_rates.append((after[0] - before[0]) / (sum(after) - sum(before)))
        if version is not None:
            measured.update(self.rollouts(version, script))
        return measured

    def rollouts(self, version: str, script: str) -> dict[str, dict]:
        """wrk on the cache-off service during a shadow rollout of ``version``, then a 10 % canary."""
        port, body, measured = self.ports[OFF], self.body_for(0), {}
        for target, mode in (
            (SHADOW, ("--mode", "shadow")),
            (CANARY, ("--mode", "canary", "--percent", "10")),
        ):
            flywheel_cli(self.env, "rollout", "start", *mode, "--version", version)
            try:
                wait_arm(port, body, present=True)
                measured[target] = wrk(port, self.args.connections, self.args.seconds, script)
                status = subprocess.run(
                    [str(BIN / "flywheel"), "rollout", "status"], env=self.env, capture_output=True, text=True
                )
                if "no rollout running" in status.stdout:
                    measured[target]["note"] = "a guard aborted the rollout during the run"
            finally:
                with contextlib.suppress(subprocess.CalledProcessError):  # a guard may have ended it
                    flywheel_cli(self.env, "rollout", "abort")
            wait_arm(port, body, present=False)
        return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--workdir", default=".flywheel")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="Times each wrk target is measured.")
    parser.add_argument("--repeat", type=float, default=0.3, help="Share of requests repeating an id.")
    parser.add_argument("--cache-entries", type=int, default=512, help="The cached service's max_entries.")
    parser.add_argument("--no-rollouts", action="store_true", help="Skip the shadow and canary targets.")
    args = parser.parse_args()
    from flywheel.workdir import Workdir

    bench = Bench(args)
    version = None if args.no_rollouts else rollout_version(bench.config, Workdir.at(bench.workdir))
    processes = bench.start()
    script = None
    rounds: list[dict[str, dict[str, float]]] = []
    hit_rates: list[float] = []
    try:
        bench.wait()
        python = bench.python_client()
        if shutil.which("wrk"):
            sequence = id_sequence(len(bench.ids), args.repeat)
            script = wrk_script([bench.body_for(i) for i in sequence], threads=2)
            rounds = [bench.wrk_round(script, version, hit_rates) for _ in range(args.rounds)]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        if script:
            os.unlink(script)
        for log in (bench.workdir / "predictions").glob("bench-*.db*"):
            log.unlink()
    report(bench.config.spec.name, args, python, rounds, hit_rates, version)


def report(
    name: str,
    args: argparse.Namespace,
    python: dict[str, dict],
    rounds: list[dict[str, dict]],
    hit_rates: list[float],
    version: str | None,
) -> None:
    print(
        f"{name}: {args.connections} connections, {args.seconds:.0f} s per target and round, 2-core host; "
        f"wrk replays ids with {args.repeat:.0%} repeats of the last {RECENT} "
        f"(the cached service keeps {args.cache_entries} entries)"
    )
    header = f"{'target':<38}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    if rounds:
        print(f"wrk, median of {len(rounds)} rounds\n{header}")
        for target in (OFF, ON, SHADOW, CANARY, CONSTANT):
            runs = [r[target] for r in rounds if target in r]
            if not runs:
                continue
            label = target
            if target == ON:
                rate = f"{statistics.median(hit_rates):.0%}" if hit_rates else "not counted"
                label = f"{target} (hits {rate})"
            elif target in (SHADOW, CANARY):
                label = f"{target} v{version}"
            row = {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50", "p99", "errors")}
            notes = "; ".join(sorted({run["note"] for run in runs if "note" in run}))
            print(
                f"{label:<38}{row['rps']:>9.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{row['errors']:>8.0f}"
                + (f"  ({notes})" if notes else "")
            )
    print(f"Python client, {args.connections} threads\n{header}")
    for target, r in python.items():
        print(f"{target:<38}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8}")
    ratios = [
        ("cache on ÷ off", ON, OFF),
        ("shadow ÷ off", SHADOW, OFF),
        ("canary ÷ off", CANARY, OFF),
        ("off ÷ constant", OFF, CONSTANT),
    ]
    for label, top, bottom in ratios:
        each = [r[top]["rps"] / r[bottom]["rps"] for r in rounds if top in r]
        if each:
            print(f"{label:<22}" + ", ".join(f"{x:.0%}" for x in each) + "  (wrk, per round)")
    print(f"{'off ÷ pair':<22}{python[OFF]['rps'] / python[PAIR]['rps']:.1f}×  (Python client)")
    if version is None and not args.no_rollouts:
        print("no shadow or canary: a rollout is running, or no other version passed its gate")
    if not rounds:
        print("wrk is not installed: no cache, rollout or constant-endpoint ratios")


if __name__ == "__main__":
    main()
