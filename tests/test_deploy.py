"""deploy/ checked offline: the manifests parse and validate against the KubeRay CRDs'
schemas, the cluster launcher config against Ray's own schema, the Dockerfile installs the
package the way the Makefile does, and no credential is written inline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMAS = ROOT.parent / "shared" / "schemas"


def _crd_schema(kind_file: str) -> dict:
    crd = yaml.safe_load((SCHEMAS / "kuberay" / "v1.7.0" / kind_file).read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"][
        "openAPIV3Schema"]


def _errors(schema: dict, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in Draft7Validator(schema).iter_errors(doc)]


@pytest.fixture(scope="module")
def schemas() -> Path:
    if not SCHEMAS.exists():
        pytest.skip("../shared/schemas not present")
    return SCHEMAS


@pytest.mark.parametrize(("manifest", "crd", "kind"), [
    ("raycluster.yaml", "ray.io_rayclusters.yaml", "RayCluster"),
    ("rayjob.yaml", "ray.io_rayjobs.yaml", "RayJob"),
])
def test_kuberay_manifests_validate(schemas: Path, manifest: str, crd: str, kind: str) -> None:
    doc = yaml.safe_load((DEPLOY / "kuberay" / manifest).read_text())
    assert doc["kind"] == kind and doc["apiVersion"] == "ray.io/v1"
    assert _errors(_crd_schema(crd), doc) == []
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    for pod in [spec["headGroupSpec"]["template"]["spec"],
                *(g["template"]["spec"] for g in groups.values())]:
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
        assert any(m["mountPath"] == "/dev/shm" for m in pod["containers"][0]["volumeMounts"])
        assert pod["serviceAccountName"] == "sn9cloud"
        for env in pod["containers"][0].get("env", []):
            if env["name"].startswith("AWS_") and "KEY" in env["name"]:
                assert "valueFrom" in env and "value" not in env  # from a secret only


def test_kuberay_schema_check_can_fail(schemas: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "kuberay" / "raycluster.yaml").read_text())
    del doc["spec"]["workerGroupSpecs"][0]["groupName"]
    assert any("groupName" in e for e in _errors(_crd_schema("ray.io_rayclusters.yaml"), doc))


def test_cluster_launcher_config_validates(schemas: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "cluster-launcher" / "aws.yaml").read_text())
    schema = json.loads((schemas / "ray" / "ray-schema.json").read_text())
    assert _errors(schema, doc) == []
    assert "g5" in doc["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    bad = {**doc, "provider": {"region": "us-east-1"}}  # no provider type
    assert _errors(schema, bad)


def test_dockerfile_installs_like_the_makefile() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    make = (ROOT / "Makefile").read_text()
    runs = [ln for ln in text.splitlines() if ln.startswith("RUN ")]
    torch_at = next(i for i, ln in enumerate(runs) if "torch==2.13.0" in ln)
    pkg_at = next(i for i, ln in enumerate(runs) if re.search(r"pip install .*'\.\[", ln))
    assert torch_at < pkg_at  # torch pinned, and first, as in the Makefile
    assert "torch==2.13.0" in make
    assert make.index("torch==2.13.0") < make.index("install -q -c constraints.txt -e")
    # both install the locked set (pip resolves nothing)
    assert "-c constraints.txt" in runs[pkg_at]
    ray_pin = re.search(r"rayproject/ray:(\d+\.\d+\.\d+)", text)
    assert ray_pin and ray_pin.group(1) == "2.60.0"
    for var in ("GDAL_DISABLE_READDIR_ON_OPEN", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS"):
        assert var in text
    for src in ("pyproject.toml", "sn9cloud", "catalogs"):
        assert (ROOT / src).exists() and f"COPY --chown=ray:users {src}" in text


def test_no_inline_credentials() -> None:
    pattern = re.compile(r"(AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[:=]|"
                         r"AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S)", re.IGNORECASE)
    for p in DEPLOY.rglob("*"):
        if p.is_file() and (p.suffix in (".yaml", ".yml", ".md", ".sh") or p.name == "Dockerfile"):
            for line in p.read_text().splitlines():
                assert not pattern.search(line) or "secretKeyRef" in line, (p, line)


def _cfn_lint(path: Path) -> list[str]:
    from cfnlint.api import lint_all

    # errors and warnings; informational rules (I...) are advice, not failures
    return [f"{m.rule.id} line {m.linenumber}: {m.message}"
            for m in lint_all(path.read_text()) if m.rule.id[0] in "EW"]


def test_service_infrastructure_passes_the_fields_linter(tmp_path: Path) -> None:
    """The queue, dead-letter queue, bucket notification and IAM policy template passes
    cfn-lint (offline: its specs are bundled), and the check can fail."""
    template = DEPLOY / "service" / "cloudformation.yaml"
    assert _cfn_lint(template) == []
    doc = template.read_text()
    for needed in ("RedrivePolicy", "deadLetterTargetArn", "QueueConfigurations",
                   "sqs:ChangeMessageVisibility", "AWS::IAM::ManagedPolicy"):
        assert needed in doc
    assert '"*"' not in doc and "Action: '*'" not in doc  # least privilege: no wildcards
    broken = tmp_path / "broken.yaml"
    broken.write_text(doc.replace("maxReceiveCount: !Ref MaxReceives",
                                  "maxReceiveCount: !Ref NoSuchParameter"))
    assert any("NoSuchParameter" in e for e in _cfn_lint(broken))


def test_watcher_deployment_validates_against_kubernetes_schemas(tmp_path: Path) -> None:
    import kubernetes_validate

    path = DEPLOY / "kuberay" / "watcher.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "ConfigMap"]
    for d in docs:
        kubernetes_validate.validate(d, "1.30.0", strict=True)
    args = docs[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["sn9cloud", "watch"] and "--queue" in args and "--metrics-port" in args
    bad = json.loads(json.dumps(docs[0]))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)
