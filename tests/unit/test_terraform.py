"""terraform/: the parsed HCL keeps the platform's promises, and the checks CI runs catch a breach.

The same functions `make iac` runs (terraform/checks.py) are used here; each breach is made in a
temporary copy of the tree, never in the checkout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from lake.settings import REPO_ROOT

TREE = REPO_ROOT / "terraform"


def _load_checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("terraform_checks", TREE / "checks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


checks = _load_checks()


@pytest.fixture(scope="module")
def tree() -> dict[Path, Any]:
    return checks.load_tree(TREE)


def _module(tree: dict[Path, Any], name: str) -> Any:
    return tree[TREE / "modules" / name]


def test_the_tree_passes_every_offline_check(tree: dict[Path, Any]) -> None:
    assert checks.check_wiring(TREE, tree) == []
    assert checks.check_invariants(TREE, tree) == []


def test_lake_bucket_is_kms_encrypted_private_tls_only_and_versioned(tree: dict[Path, Any]) -> None:
    bucket = _module(tree, "secure_bucket")
    sse = bucket.resources[("aws_s3_bucket_server_side_encryption_configuration", "this")]
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert '"aws:kms"' in default["sse_algorithm"] and default["kms_master_key_id"] == "${var.kms_key_arn}"
    pab = bucket.resources[("aws_s3_bucket_public_access_block", "this")]
    assert all(
        pab[f] is True
        for f in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    assert bucket.resources[("aws_s3_bucket_versioning", "this")]["versioning_configuration"][0]["status"] == "Enabled"
    deny = bucket.data[("aws_iam_policy_document", "bucket")]["statement"][0]
    assert deny["effect"] == "Deny" and deny["condition"][0]["variable"] == "aws:SecureTransport"
    assert deny["condition"][0]["values"] == ["false"]
    # Noncurrent versions: the rule reads the variable, whose validation caps it at 7 days.
    rule = bucket.resources[("aws_s3_bucket_lifecycle_configuration", "this")]["rule"][0]
    assert checks._variable_max(bucket, rule["noncurrent_version_expiration"][0]["noncurrent_days"]) == 7

    lakehouse = _module(tree, "lakehouse")
    lake = lakehouse.calls["lake_bucket"]
    assert lake["kms_key_arn"] == "${module.kms.arn}"
    assert lake["noncurrent_version_expiration_days"] <= 7


def test_irsa_roles_name_their_actions_and_never_wildcard_the_data_bucket(tree: dict[Path, Any]) -> None:
    lakehouse = _module(tree, "lakehouse")
    statements = list(checks._iam_statement_literals(lakehouse.locals))
    assert {s["sid"] for s in statements} >= {"LakeBucketList", "LakeObjectsReadWrite", "DeltaCommitTable"}
    for s in statements:
        assert all("*" not in a for a in s["actions"]), s
        assert "*" not in s["resources"], s
    on_bucket = [s for s in statements if any("lake_bucket" in r for r in s["resources"])]
    assert on_bucket and all(a.startswith("s3:") for s in on_bucket for a in s["actions"])
    # Three service accounts, each with its own role.
    assert set(lakehouse.locals["irsa"]) == {"spark", "ray", "prefect-worker"}


def test_ray_has_token_auth_and_no_public_dashboard(tree: dict[Path, Any]) -> None:
    ray = _module(tree, "ray_manifests")
    assert ray.locals["auth_options"]["mode"] == "token"
    assert ray.locals["cluster_spec"]["authOptions"] == "${local.auth_options}"
    assert ray.locals["cluster_spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert ray.locals["ray_service"]["spec"]["rayClusterConfig"] == "${local.cluster_spec}"
    assert ray.locals["ray_cluster"]["spec"] == "${local.cluster_spec}"
    for path in TREE.rglob("*.tf"):
        assert "LoadBalancer" not in path.read_text(), path


def test_serve_config_v2_is_serve_config_yaml(tree: dict[Path, Any]) -> None:
    ray = _module(tree, "ray_manifests")
    assert ray.locals["serve_config"] == "${yamldecode(file(local.serve_config_file))}"
    assert ray.locals["ray_service"]["spec"]["serveConfigV2"] == "${local.serve_config_v2}"
    assert ray.locals["serve_config_v2"] == checks.SERVE_CONFIG_V2
    default = re.search(r'"\$\{path\.module\}/([^"]+)"', ray.locals["serve_config_file"])
    assert default is not None
    config = (ray.path / default.group(1)).resolve()
    assert config == REPO_ROOT / "serve" / "config.yaml"
    assert config.is_file(), f"{config} is missing: the RayService's serveConfigV2 is read from it"
    # merge() over the decoded file changes one key: the applications are the file's own.
    serve = yaml.safe_load(config.read_text())
    assert isinstance(serve, dict) and serve.get("applications"), "serve/config.yaml declares no applications"
    expected = checks.expected_serve_config_v2(config)
    assert expected["applications"] == serve["applications"]
    assert {k: v for k, v in expected.items() if k != "http_options"} == {
        k: v for k, v in serve.items() if k != "http_options"
    }
    assert expected["http_options"] == {**serve.get("http_options", {}), "host": "0.0.0.0"}


def test_flow_runs_get_the_spark_account_the_platform_env_and_their_pod_ip(tree: dict[Path, Any]) -> None:
    job = _module(tree, "prefect_job_template")
    manifest = job.locals["base_job_template"]["job_configuration"]["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "${var.service_account}"
    assert job.variables["service_account"]["default"] == "spark"
    assert set(job.variables["config_maps"]["default"]) | set(job.variables["env_secrets"]["default"]) == {
        "lakehouse-env",
        "lakehouse-secrets",
    }
    container = pod["containers"][0]
    assert container["env"][0]["name"] == "POD_IP"
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    lakehouse = _module(tree, "lakehouse")
    assert lakehouse.calls["platform"]["prefect_base_job_template"] == (
        "${jsonencode(module.prefect_job_template.base_job_template)}"
    )


def test_environment_roots_only_size_the_shared_module(tree: dict[Path, Any]) -> None:
    for env in ("dev", "prod"):
        root = tree[TREE / "envs" / env]
        assert set(root.calls) == {"lakehouse"}
        assert root.calls["lakehouse"]["environment"] == env
        assert set(root.outputs) >= {
            "config_env",
            "lake_root_uri",
            "ray_address",
            "kafka_bootstrap_servers",
            "redis_host",
        }
    assert tree[TREE / "envs" / "prod"].calls["lakehouse"]["postgres_multi_az"] is True


def _copy(tmp_path: Path) -> Path:
    """terraform/ with the two repo files it is checked against (config/prod.yml, serve/config.yaml)."""
    copy = tmp_path / "terraform"
    shutil.copytree(TREE, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    for rel in ("config/prod.yml", "serve/config.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    return copy


def test_a_faithful_copy_passes(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    modules = checks.load_tree(copy)
    assert checks.check_wiring(copy, modules) + checks.check_invariants(copy, modules) == []


def _breach(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    copy = _copy(tmp_path)
    target = copy / rel
    text = target.read_text()
    assert old in text, f"{old!r} not in {rel}: the breach no longer applies"
    target.write_text(text.replace(old, new, 1))
    return copy


BREACHES: dict[str, tuple[str, str, str, str]] = {
    "public bucket": (
        "modules/secure_bucket/main.tf",
        "block_public_policy     = true",
        "block_public_policy     = false",
        "public access block",
    ),
    "wildcard action on the lake bucket": (
        "modules/lakehouse/main.tf",
        '"s3:GetObject",',
        '"s3:*",',
        "wildcard action 's3:*'",
    ),
    "dashboard behind a load balancer": (
        "modules/ray_manifests/main.tf",
        'serviceType    = "ClusterIP"',
        'serviceType    = "LoadBalancer"',
        "LoadBalancer",
    ),
    "token auth off": (
        "modules/ray_manifests/main.tf",
        'mode       = "token"',
        'mode       = "disabled"',
        "token auth",
    ),
    "serve config copied": (
        "modules/ray_manifests/main.tf",
        "serveConfigV2    = local.serve_config_v2",
        "serveConfigV2    = yamlencode({ applications = [] })",
        "serveConfigV2 must be serve/config.yaml",
    ),
    "noncurrent versions kept a month": (
        "modules/lakehouse/main.tf",
        "noncurrent_version_expiration_days = 7",
        "noncurrent_version_expiration_days = 30",
        "noncurrent_version_expiration_days 30 > 7",
    ),
    "plaintext Kafka": (
        "modules/msk/main.tf",
        'client_broker = "TLS"',
        'client_broker = "TLS_PLAINTEXT"',
        "TLS between clients",
    ),
    "prod.yml reference left unset": (
        "modules/lakehouse/main.tf",
        "    DELTA_COMMIT_TABLE      = aws_dynamodb_table.delta_log.name\n",
        "",
        "references ${DELTA_COMMIT_TABLE}, which no pod environment provides",
    ),
    "unknown module argument": (
        "envs/prod/main.tf",
        "postgres_multi_az",
        "postgres_multi_azz",
        "unknown argument 'postgres_multi_azz'",
    ),
}


@pytest.mark.parametrize("breach", sorted(BREACHES))
def test_checks_catch_a_breach_in_a_copy(breach: str, tmp_path: Path) -> None:
    rel, old, new, expected = BREACHES[breach]
    copy = _breach(tmp_path, rel, old, new)
    modules = checks.load_tree(copy)
    problems = checks.check_wiring(copy, modules) + checks.check_invariants(copy, modules)
    assert any(expected in p for p in problems), problems


def _check_sh(tree: Path, steps: str | None = None) -> subprocess.CompletedProcess[str]:
    """terraform/check.sh, the command `make iac` runs, on another tree (and some of its steps)."""
    env = {**os.environ, "PYTHON": sys.executable}
    if steps:
        env["IAC_STEPS"] = steps
    return subprocess.run(
        ["bash", str(TREE / "check.sh"), str(tree)], capture_output=True, text=True, timeout=300, env=env
    )


def test_ci_script_fails_on_a_public_bucket(tmp_path: Path) -> None:
    rel, old, new, _ = BREACHES["public bucket"]
    broken = _check_sh(_breach(tmp_path, rel, old, new), steps="fmt checks")
    assert broken.returncode != 0
    assert "FAIL: terraform/modules/secure_bucket: public access block" in broken.stdout


def test_checks_cli_passes_on_the_tree() -> None:
    clean = subprocess.run([sys.executable, str(TREE / "checks.py")], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout
    assert "0 problems" in clean.stdout


def test_checkov_also_fails_on_a_public_bucket(tmp_path: Path) -> None:
    """The checkov step on its own, on the broken module: it names the public-policy block and nothing else."""
    rel, old, new, _ = BREACHES["public bucket"]
    copy = _breach(tmp_path, rel, old, new)
    broken = _check_sh(copy / "modules" / "secure_bucket", steps="checkov")
    assert broken.returncode != 0, broken.stdout
    failed = set(re.findall(r"Check: (CKV\w+):", broken.stdout))
    assert failed == {"CKV_AWS_54", "CKV2_AWS_6"}, broken.stdout  # the public-policy block, the whole block
