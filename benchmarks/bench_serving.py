"""Online prediction: Flywheel's /v1/predict against the service a user would assemble from the seeds.

Starts on 127.0.0.1, in one run: (a) `flywheel serve`; (b) the peer pair — Feast's feature server
(`feast serve`) for the features, then `mlflow models serve` for the same champion model, called one
after the other per request; (c) a FastAPI endpoint returning a constant (the HTTP ceiling). The same
Python load generator (N keep-alive connections, one thread each) drives all three for the same time;
`wrk` (when installed) also drives (a) and (c). Prints requests/s, p50, p99 and the ratios.
Goals: ≥ 10× the pair's throughput, p99 ≤ 10 ms at 8 connections, ≥ 50 % of the constant endpoint.

Usage: python benchmarks/bench_serving.py [--config configs/churn.yaml] [--workdir .flywheel]
                                          [--connections 8] [--seconds 10]
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
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def load(call, connections: int, seconds: float) -> dict[str, float]:
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


def wrk(port: int, connections: int, seconds: int, body: dict) -> dict[str, float] | None:
    if not shutil.which("wrk"):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f"wrk.method = \"POST\"\nwrk.body = '{json.dumps(body)}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}/v1/predict",
        ],
        capture_output=True,
        text=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--workdir", default=".flywheel")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    from flywheel.config import load_config
    from flywheel.features.snapshots import context_files
    from flywheel.serving.schemas import bodies
    from flywheel.workdir import Workdir

    config = load_config(args.config)
    names = bodies(config.spec)
    workdir = Path(args.workdir).resolve()
    latest = sorted((workdir / "features" / "snapshots").glob("*.parquet"))[-1]
    snapshot_key = config.spec.snapshot.entity.join_key
    ids = pq.read_table(latest).column(snapshot_key).to_pylist()[:2000]

    def body_for(i: int) -> dict:
        if not names.request:
            return {names.key: ids[i % len(ids)]}
        key = i if config.spec.entity.dtype == "int64" else f"bench-{i}"  # a string key (credit's id)
        return {**config.spec.api.example, names.key: key, snapshot_key: ids[i % len(ids)]}

    env = {
        **os.environ,
        **({"FLYWHEEL_CONFIG": str(Path(args.config).resolve())} if args.config else {}),
        "FLYWHEEL_WORKDIR": str(workdir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    ports = {name: free_port() for name in ("flywheel", "feast", "mlflow", "constant")}
    processes = [
        subprocess.Popen(
            [str(BIN / "flywheel"), "serve", "--port", str(ports["flywheel"])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [str(BIN / "feast"), "serve", "-h", "127.0.0.1", "-p", str(ports["feast"])],
            cwd=workdir / "feature_repo",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{config.registry.model_name}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(ports["mlflow"]),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, "-c", CONSTANT_APP.replace("PORT", str(ports["constant"]))],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    try:
        wait_http(ports["flywheel"], "/ready")
        wait_http(ports["feast"], "/health")
        wait_http(ports["mlflow"], "/ping")
        wait_http(ports["constant"], "/docs")
        model = http.client.HTTPConnection("127.0.0.1", ports["flywheel"])
        model.request("GET", "/v1/model")
        features = json.loads(model.getresponse().read())["features"]
        views = {config.spec.snapshot.name: latest, **context_files(Workdir.at(workdir))}
        held = {view: set(pq.read_schema(path).names) for view, path in views.items()}
        refs = [f"{view}:{name}" for name in features for view in views if name in held[view]]

        def connection(state: dict, port: int) -> http.client.HTTPConnection:
            if port not in state:
                state[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            return state[port]

        def ours(state: dict, i: int) -> None:
            post(connection(state, ports["flywheel"]), "/v1/predict", body_for(i))

        def constant(state: dict, i: int) -> None:
            post(connection(state, ports["constant"]), "/v1/predict", body_for(i))

        def pair(state: dict, i: int) -> None:
            body = body_for(i)
            online = post(
                connection(state, ports["feast"]),
                "/get-online-features",
                {"features": refs, "entities": {snapshot_key: [body[snapshot_key]]}},
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
        results = {
            "flywheel /v1/predict": load(ours, args.connections, args.seconds),
            "feast serve + mlflow models serve": load(pair, args.connections, args.seconds),
            "constant FastAPI endpoint": load(constant, args.connections, args.seconds),
        }
        wrk_ours = wrk(ports["flywheel"], args.connections, int(args.seconds), body_for(0))
        wrk_constant = wrk(ports["constant"], args.connections, int(args.seconds), body_for(0))
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)

    ours_rps = results["flywheel /v1/predict"]["rps"]
    print(
        f"{config.spec.name}: {args.connections} connections, {args.seconds:.0f} s each, "
        "Python keep-alive client, 2-core host"
    )
    print(f"{'target':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'flywheel ÷ target':>19}")
    for name, r in results.items():
        print(
            f"{name:<36}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8}{ours_rps / r['rps']:>18.2f}×"
        )
    if wrk_ours and wrk_constant:
        print(
            f"wrk: flywheel {wrk_ours['rps']:.0f} req/s (p50 {wrk_ours['p50']:.2f} ms, p99 {wrk_ours['p99']:.2f} ms); "
            f"constant {wrk_constant['rps']:.0f} req/s (p50 {wrk_constant['p50']:.2f} ms, p99 "
            f"{wrk_constant['p99']:.2f} ms); flywheel/constant {wrk_ours['rps'] / wrk_constant['rps']:.0%}"
        )


if __name__ == "__main__":
    main()
