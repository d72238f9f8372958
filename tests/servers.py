"""Real servers for integration tests, installed and started on 127.0.0.1 by the test setup."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ADMIN_TOKEN = "test-token"  # serving.admin_token of the services tests start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_apt_package(binary: str, package: str) -> str:
    """Path of ``binary``, installing the Debian ``package`` first when it is missing (CI runs as root)."""
    found = _find_binary(binary)
    if found:
        return found
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    return _find_binary(binary) or f"/usr/bin/{binary}"


def _find_binary(binary: str) -> str | None:
    # daemons live in /usr/sbin, which a non-login PATH may leave out
    candidates = [f"/usr/bin/{binary}", f"/usr/sbin/{binary}"]
    return shutil.which(binary) or next((c for c in candidates if Path(c).exists()), None)


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server on a free loopback port, without persistence; yields ``host:port``."""
    binary = ensure_apt_package("redis-server", "redis-server")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


MARIADB_DATABASE = "flywheel"
MARIADB_USER = "flywheel"
MARIADB_PASSWORD = "flywheel-test"


@contextmanager
def mariadb_server(folder: Path) -> Iterator[str]:
    """A throwaway MariaDB server on a free loopback port; yields a SQLAlchemy URL (``mysql+pymysql``)
    of a database of its own (binary collation, as the parity with DuckDB needs) and a user with a
    password.

    The data directory lives under ``folder`` and the socket in a short temporary folder (a Unix
    socket path is limited to 108 bytes); ``--no-defaults`` keeps the system's ``/etc/mysql``
    settings, port 3306 and ``/run/mysqld`` out of it, so it never meets a system MariaDB. Runs as
    root (CI) with ``--user=root``.
    """
    # the core packages only: mariadb-server's own scripts would set up (and where services may start,
    # start) a system server on port 3306; these bring the binaries and nothing that runs
    binary = ensure_apt_package("mariadbd", "mariadb-server-core")
    ensure_apt_package("my_print_defaults", "mariadb-client-core")  # mariadb-install-db and the client
    home = folder / "mariadb"
    datadir = home / "data"
    datadir.mkdir(parents=True)
    runtime = Path(tempfile.mkdtemp(prefix="fw-mariadb-"))
    socket_path = runtime / "mariadbd.sock"
    port = free_port()
    process = None
    try:
        _mariadb_install_db(datadir, home / "install-db.log")
        process = subprocess.Popen(
            [
                binary,
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--bind-address=127.0.0.1",
                f"--port={port}",
                f"--socket={socket_path}",
                f"--pid-file={home / 'mariadbd.pid'}",
                f"--log-error={home / 'error.log'}",
                f"--tmpdir={runtime}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2",  # a test server: no fsync per commit
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_mariadb(process, socket_path, home / "error.log")
        _mariadb_sql(
            socket_path,
            f"CREATE DATABASE {MARIADB_DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; "
            f"CREATE USER '{MARIADB_USER}'@'127.0.0.1' IDENTIFIED BY '{MARIADB_PASSWORD}'; "
            f"GRANT ALL PRIVILEGES ON {MARIADB_DATABASE}.* TO '{MARIADB_USER}'@'127.0.0.1';",
        )
        yield f"mysql+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{port}/{MARIADB_DATABASE}"
    finally:
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: a clean shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(datadir, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _mariadb_install_db(datadir: Path, log: Path) -> None:
    install_db = ensure_apt_package("mariadb-install-db", "mariadb-server-core")
    with log.open("w") as output:
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",  # root without a password, over the socket
                "--skip-test-db",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed ({result.returncode}): {log.read_text()[-2000:]}")


def _mariadb_sql(socket_path: Path, sql: str) -> subprocess.CompletedProcess:
    client = ensure_apt_package("mariadb", "mariadb-client-core")
    return subprocess.run(
        [client, "--no-defaults", f"--socket={socket_path}", "--user=root", "--batch", "-e", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _wait_for_mariadb(process: subprocess.Popen, socket_path: Path, error_log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if socket_path.exists() and _mariadb_sql(socket_path, "SELECT 1").returncode == 0:
            return
        if time.monotonic() > deadline or process.poll() is not None:
            tail = error_log.read_text()[-2000:] if error_log.exists() else ""
            raise RuntimeError(f"mariadbd did not start (exit code {process.poll()}): {tail}")
        time.sleep(0.2)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite backend, served artifacts) on a free loopback port; yields its URI."""
    import sys
    import urllib.request

    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    process = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "server-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"mlflow server did not start on {uri}")
            time.sleep(0.5)
        yield uri
    finally:
        import os
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def write_config(config, folder: Path) -> Path:
    """``config`` as a YAML file in ``folder``, for processes that load it."""
    import yaml

    path = folder / "flywheel-config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def flywheel_command(config, workdir, folder: Path, *args: str) -> list[str]:
    """argv of the real CLI run with ``config`` against ``workdir``."""
    import sys

    return [
        sys.executable,
        "-m",
        "flywheel",
        "--config",
        str(write_config(config, folder)),
        "--workdir",
        str(workdir.root),
        *args,
    ]


def call(
    base: str,
    method: str,
    path: str,
    body: object | None = None,
    headers: dict | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict | str]:
    """One HTTP request to the prediction service; the status and the JSON (or text) answer."""
    import json
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text, status = error.read().decode(), error.code
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@contextmanager
def service(
    workdir, config, folder: Path, log: Path | None = None, wait_for: str = "/ready"
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``flywheel serve`` (real uvicorn) on a free loopback port until ``wait_for`` answers 200 (a
    workdir with no champion is never ready: wait for ``/health``); yields its base URL and process;
    stopped with SIGTERM. The server's stderr goes to ``log`` when given."""
    import signal

    port = free_port()
    stderr = log.open("w") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        flywheel_command(config, workdir, folder, "serve", "--port", str(port)),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if call(base, "GET", wait_for)[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service never answered {wait_for} (exit code {process.poll()})")
            time.sleep(0.3)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        if log is not None:
            stderr.close()


@contextmanager
def prometheus_server(folder: Path, config: dict) -> Iterator[str]:
    """A real Prometheus with ``config`` (a prometheus.yml as a dict; rule files by absolute path)
    on a free loopback port, its storage under ``folder``, until ``/-/ready``; yields its base URL.
    Its log goes to ``folder/prometheus.log``."""
    import urllib.request

    import yaml

    binary = ensure_apt_package("prometheus", "prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                tail = (folder / "prometheus.log").read_text()[-2000:]
                raise RuntimeError(f"prometheus did not start on {base} (exit code {process.poll()}): {tail}")
            time.sleep(0.1)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
