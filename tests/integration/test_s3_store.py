"""The artifact store on S3: a real S3-compatible server (moto's, from the dev extra) on 127.0.0.1, the
real ``flywheel step --artifact-store s3://…`` CLI staging a generated lake in, building features in a
folder of its own and staging them back out; the next step finds them by the ``s3://`` URL it is
handed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.config import FlywheelConfig
from flywheel.workdir import Workdir
from tests.servers import free_port, write_config

BUCKET = "flywheel-artifacts"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """An S3 endpoint with one bucket; the environment points boto (and so s3fs) at it."""
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=(tmp_path / "moto.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    log = (tmp_path / "moto.log").read_text()
                    raise RuntimeError(f"moto_server did not start: {log}") from None
                time.sleep(0.3)
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield f"s3://{BUCKET}/churn"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_steps_stage_through_s3(
    s3: str, generated_workdir: Workdir, small_config: FlywheelConfig, tmp_path: Path
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.put(f"{generated_workdir.root}/", f"{s3}/", recursive=True)
    base = [sys.executable, "-m", "flywheel", "--config", str(write_config(small_config, tmp_path)), "step"]

    def step(name: str, *upstream: dict) -> dict:
        pulls = [arg for outputs in upstream for arg in ("--upstream-json", json.dumps(outputs))]
        done = subprocess.run(
            [*base, name, "--artifact-store", s3, *pulls], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    validated = step("validate")
    assert validated["passed"] == "true"
    built = step("features", validated)
    assert built["labels"].startswith(f"{s3}/features/") and fs.exists(built["labels"])
    loaded = step("data_load", built)
    assert loaded["test"].startswith(f"{s3}/datasets/") and fs.exists(loaded["test"])
