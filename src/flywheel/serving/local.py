"""The prediction service on a free loopback port inside this process, for the demo and the traffic
simulator when no service URL is given."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flywheel.config import FlywheelConfig
from flywheel.errors import FlywheelError
from flywheel.workdir import Workdir


@contextmanager
def local_service(config: FlywheelConfig, workdir: Workdir) -> Iterator[str]:
    """Run uvicorn with the service on 127.0.0.1 in a thread; yield its base URL; stop it."""
    import uvicorn

    from flywheel.serving.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, workdir), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise FlywheelError("the prediction service did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    """POST ``body`` (or GET without one) and return the JSON answer; errors name the URL."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise FlywheelError(f"{url} answered {error.code}: {error.read().decode()[:300]}") from None
    except OSError as error:
        raise FlywheelError(f"cannot reach the prediction service at {url}: {error}") from None
