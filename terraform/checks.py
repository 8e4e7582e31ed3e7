"""Offline checks of terraform/: what `make iac` (terraform/check.sh) runs besides checkov.

Providers cannot be downloaded on every machine that runs CI, and without them `terraform
validate` cannot run on a root that uses them. What still means something offline:

* `invariants`: the platform's promises, read from the parsed HCL: buckets encrypted with a
  customer key, every public path blocked, TLS-only, versioned with noncurrent versions gone in
  at most 7 days; IAM actions named (no wildcard on the data buckets, none in IRSA roles);
  Ray token auth on, ClusterIP only (no load balancer for the dashboard or client ports);
  serveConfigV2 read from serve/config.yaml (the proxy's host alone set to the pod's address); MSK, Redis, RDS private and encrypted.
* `wiring`: the part of `terraform validate` that needs no provider schema: every module
  call passes only variables the module declares and all it requires, and every `var.`,
  `local.`, `module.X.Y`, `data.` and resource reference resolves in its module.
* `terraform` (where terraform is installed): `validate` of every directory whose providers
  can be installed (offline that is ray_manifests, which has none), and a real render of the
  KubeRay manifests, whose serveConfigV2 must decode to serve/config.yaml's content.

Usage: python terraform/checks.py [--terraform] [TREE]   (TREE defaults to this folder)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2
import yaml

HERE = Path(__file__).resolve().parent
MAX_NONCURRENT_DAYS = 7
MIN_RAY_FOR_TOKEN_AUTH = (2, 52)
# serveConfigV2 = the file, with the proxy listening on the pod's address (ray_manifests explains).
SERVE_CONFIG_V2 = (
    "${yamlencode(merge(local.serve_config, "
    '{http_options = merge(try(local.serve_config.http_options, {}), {host = "0.0.0.0"})}))}'
)
POD_HTTP_HOST = "0.0.0.0"
_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
_META_ARGS = {"source", "version", "count", "for_each", "depends_on", "providers"}
_REF = re.compile(r"(?<![\w.])(var|local|module|data)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?")
_RESOURCE_REF = re.compile(r"(?<![\w.\"/-])((?:aws|kubernetes|helm|random)_[a-z0-9_]+)\.([a-z_][a-z0-9_]*)\b")
_INTERP = re.compile(r"\$\{(.*)\}", re.S)
_ITERATORS = {"each", "count", "self", "path", "terraform"}


@dataclass
class Module:
    """One directory of .tf files, parsed."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: list[Any] = field(default_factory=list)  # every parsed file, for reference scans


@lru_cache(maxsize=256)
def _parse(text: str) -> dict[str, Any]:
    """Parsed HCL by content: a copy of the tree reparses only the files that differ (the
    parser is slow). Callers only read the result."""
    return hcl2.loads(text, serialization_options=_OPTIONS)


def load_tree(root: Path) -> dict[Path, Module]:
    """Every directory under `root` holding .tf files, parsed (hidden and .terraform skipped)."""
    modules: dict[Path, Module] = {}
    for tf in sorted(root.rglob("*.tf")):
        if any(part.startswith(".") for part in tf.relative_to(root).parts):
            continue
        mod = modules.setdefault(tf.parent, Module(tf.parent))
        try:
            doc = _parse(tf.read_text())
        except Exception as exc:  # the parser raises lark errors of several kinds
            raise SystemExit(f"{tf}: not valid HCL: {exc}") from exc
        mod.raw.append(doc)
        for block in doc.get("variable", []):
            mod.variables.update(block)
        for block in doc.get("output", []):
            mod.outputs.update(block)
        for block in doc.get("locals", []):
            mod.locals.update(block)
        for kind, target in (("resource", mod.resources), ("data", mod.data)):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        target[(rtype, name)] = body
        for block in doc.get("module", []):
            mod.calls.update(block)
    return modules


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _strings(key)
            yield from _strings(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _strings(sub)


def _expressions(value: Any) -> Iterator[str]:
    """The interpolated parts of every string: only they can reference anything."""
    for text in _strings(value):
        match = _INTERP.search(text)
        if match:
            yield match.group(1)


def _literal(value: Any) -> Any:
    return None if isinstance(value, str) and value.startswith("${") else value


def _where(mod: Module, root: Path, what: str) -> str:
    return f"{mod.path.relative_to(root.parent)}: {what}"


def _call_target(mod: Module, call: dict[str, Any]) -> Path | None:
    source = call.get("source", "")
    return (mod.path / source).resolve() if isinstance(source, str) and source.startswith(".") else None


# --- wiring: what `terraform validate` would say about the modules, without providers ---------


def check_wiring(root: Path, modules: dict[Path, Module]) -> list[str]:
    problems: list[str] = []
    resolved = {p.resolve(): m for p, m in modules.items()}
    for mod in modules.values():
        for name, call in mod.calls.items():
            target_path = _call_target(mod, call)
            if target_path is None:
                problems.append(
                    _where(
                        mod,
                        root,
                        f"module.{name}: source must be a local path (providers and registry modules cannot be fetched offline)",
                    )
                )
                continue
            target = resolved.get(target_path)
            if target is None:
                problems.append(_where(mod, root, f"module.{name}: source {call['source']} holds no .tf files"))
                continue
            given = set(call) - _META_ARGS
            for arg in sorted(given - set(target.variables)):
                problems.append(
                    _where(
                        mod,
                        root,
                        f"module.{name}: unknown argument '{arg}' ({target_path.name} declares no such variable)",
                    )
                )
            required = {v for v, body in target.variables.items() if "default" not in body}
            for arg in sorted(required - given):
                problems.append(_where(mod, root, f"module.{name}: missing required argument '{arg}'"))
        for expr in _expressions(mod.raw):
            for kind, first, second in _REF.findall(expr):
                if kind == "var" and first not in mod.variables:
                    problems.append(_where(mod, root, f"reference to undeclared variable var.{first}"))
                elif kind == "local" and first not in mod.locals:
                    problems.append(_where(mod, root, f"reference to undefined local.{first}"))
                elif kind == "module":
                    call = mod.calls.get(first)
                    if call is None:
                        problems.append(_where(mod, root, f"reference to undeclared module.{first}"))
                        continue
                    target_path = _call_target(mod, call)
                    target = resolved.get(target_path) if target_path else None
                    if second and target is not None and second not in target.outputs:
                        problems.append(
                            _where(mod, root, f"module.{first}.{second}: {target.path.name} has no output '{second}'")
                        )
                elif kind == "data" and second and (first, second) not in mod.data:
                    problems.append(_where(mod, root, f"reference to undeclared data.{first}.{second}"))
            for rtype, name in _RESOURCE_REF.findall(expr):
                if (rtype, name) not in mod.resources and name not in _ITERATORS:
                    problems.append(_where(mod, root, f"reference to undeclared resource {rtype}.{name}"))
    return problems


# --- invariants ------------------------------------------------------------------------------


def _blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


def _statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = [s for s in _blocks(doc, "statement") if isinstance(s, dict)]
    for dyn in _blocks(doc, "dynamic"):
        for content in _blocks(dyn.get("statement", {}), "content"):
            found.append(content)
    return found


def _variable_max(mod: Module, expr: Any) -> int | None:
    """The largest value a number can take: a literal, or a variable bounded by its validation."""
    if isinstance(expr, int):
        return expr
    match = re.fullmatch(r"\$\{var\.(\w+)\}", str(expr))
    if not match or match.group(1) not in mod.variables:
        return None
    name = match.group(1)
    bounds = [
        int(b)
        for rule in _blocks(mod.variables[name], "validation")
        for b in re.findall(rf"var\.{name}\s*<=\s*(\d+)", str(rule.get("condition", "")))
    ]
    return min(bounds) if bounds else None


def check_buckets(root: Path, modules: dict[Path, Module]) -> list[str]:
    problems: list[str] = []
    for mod in modules.values():
        buckets = [name for (rtype, name) in mod.resources if rtype == "aws_s3_bucket"]
        for (rtype, name), body in mod.resources.items():
            if rtype == "aws_s3_bucket_acl" or ("acl" in body and rtype == "aws_s3_bucket"):
                problems.append(
                    _where(mod, root, f"{rtype}.{name}: ACLs are off (BucketOwnerEnforced); no bucket may set one")
                )
        if not buckets:
            continue

        def one(rtype: str, mod: Module = mod) -> dict[str, Any] | None:
            found = [body for (t, _), body in mod.resources.items() if t == rtype]
            return found[0] if found else None

        pab = one("aws_s3_bucket_public_access_block")
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        if pab is None or any(pab.get(flag) is not True for flag in flags):
            problems.append(_where(mod, root, "public access block missing or not blocking all four public paths"))
        sse = one("aws_s3_bucket_server_side_encryption_configuration")
        sse_text = json.dumps(sse) if sse else ""
        if "aws:kms" not in sse_text or "kms_master_key_id" not in sse_text:
            problems.append(_where(mod, root, "bucket not encrypted with SSE-KMS and a customer key"))
        versioning = one("aws_s3_bucket_versioning")
        if not versioning or '"Enabled"' not in json.dumps(versioning):
            problems.append(_where(mod, root, "bucket versioning not enabled"))
        lifecycle = one("aws_s3_bucket_lifecycle_configuration")
        days = [
            _variable_max(mod, expiry.get("noncurrent_days"))
            for rule in _blocks(lifecycle or {}, "rule")
            for expiry in _blocks(rule, "noncurrent_version_expiration")
        ]
        if not days or any(d is None or d > MAX_NONCURRENT_DAYS for d in days):
            problems.append(
                _where(
                    mod,
                    root,
                    f"noncurrent versions must expire within {MAX_NONCURRENT_DAYS} days (got {days or 'no rule'})",
                )
            )
        policy_docs = [body for (t, _), body in mod.data.items() if t == "aws_iam_policy_document"]
        tls_only = any(
            s.get("effect") == "Deny" and "aws:SecureTransport" in json.dumps(s) and '"false"' in json.dumps(s)
            for doc in policy_docs
            for s in _statements(doc)
        )
        if not tls_only or one("aws_s3_bucket_policy") is None:
            problems.append(
                _where(mod, root, "bucket policy must deny requests without TLS (aws:SecureTransport = false)")
            )
    problems.extend(_check_bucket_calls(root, modules))
    return problems


def _check_bucket_calls(root: Path, modules: dict[Path, Module]) -> list[str]:
    """Every secure_bucket use keeps the module's guarantees: a customer key (the access-log
    bucket alone excepted: S3 cannot deliver access logs to SSE-KMS) and <= 7 noncurrent days."""
    problems = []
    for mod in modules.values():
        for name, call in mod.calls.items():
            target = _call_target(mod, call)
            if target is None or target.name != "secure_bucket":
                continue
            if call.get("kms_key_arn") in (None, "${null}") and name != "access_log_bucket":
                problems.append(_where(mod, root, f"module.{name}: bucket without a customer KMS key"))
            days = call.get("noncurrent_version_expiration_days")
            if isinstance(days, int) and days > MAX_NONCURRENT_DAYS:
                problems.append(
                    _where(
                        mod, root, f"module.{name}: noncurrent_version_expiration_days {days} > {MAX_NONCURRENT_DAYS}"
                    )
                )
    return problems


def _is_key_policy(mod: Module, doc_name: str) -> bool:
    """A KMS key policy: its "*" resource is the key itself (AWS's default root delegation)."""
    return mod.path.name == "kms_key" and doc_name == "key"


def check_iam(root: Path, modules: dict[Path, Module]) -> list[str]:
    problems: list[str] = []
    for mod in modules.values():
        for (rtype, name), doc in mod.data.items():
            if rtype != "aws_iam_policy_document" or _is_key_policy(mod, name):
                continue
            for s in _statements(doc):
                if s.get("effect", "Allow") != "Allow":
                    continue
                for action in s.get("actions", []):
                    if isinstance(action, str) and "*" in action:
                        problems.append(
                            _where(mod, root, f"data.{rtype}.{name}: wildcard action {action!r} in an Allow statement")
                        )
        for local_name, value in mod.locals.items():
            for statement in _iam_statement_literals(value):
                for action in statement.get("actions", []):
                    if "*" in str(action):
                        problems.append(_where(mod, root, f"local.{local_name}: wildcard action {action!r}"))
                if any(r == "*" for r in statement.get("resources", [])):
                    problems.append(
                        _where(
                            mod, root, f"local.{local_name}: statement {statement.get('sid')} on every resource ('*')"
                        )
                    )
                if any("s3:::" in str(r) and str(r).endswith(":::*") for r in statement.get("resources", [])):
                    problems.append(
                        _where(mod, root, f"local.{local_name}: statement {statement.get('sid')} on every bucket")
                    )
        if mod.path.name == "irsa_role":
            conditions = [str(v.get("condition")) for v in _blocks(mod.variables.get("statements", {}), "validation")]
            if not any('strcontains(a, "*")' in c for c in conditions):
                problems.append(_where(mod, root, "variable statements must reject wildcard actions (validation)"))
    return problems


def _iam_statement_literals(value: Any) -> Iterator[dict[str, Any]]:
    """Statement-shaped objects ({sid, actions, resources}) anywhere inside a local."""
    if isinstance(value, dict):
        if "actions" in value and "resources" in value:
            yield value
        for sub in value.values():
            yield from _iam_statement_literals(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _iam_statement_literals(sub)


def check_cluster(root: Path, modules: dict[Path, Module]) -> list[str]:
    """Ray token auth, ClusterIP only, serveConfigV2 from serve/config.yaml, private data services."""
    problems: list[str] = []
    for mod in modules.values():
        text = json.dumps(mod.raw)
        for exposed in ("LoadBalancer", "NodePort"):
            if exposed in text:
                problems.append(
                    _where(mod, root, f"a Service of type {exposed}: the Ray dashboard/client and Serve stay ClusterIP")
                )
        for rtype, name in mod.resources:
            if rtype.startswith("kubernetes_ingress"):
                problems.append(_where(mod, root, f"{rtype}.{name}: no ingress in front of the platform's services"))
        if mod.path.name == "ray_manifests":
            problems.extend(_check_ray_manifests(root, mod))
        for (rtype, name), body in mod.resources.items():
            problems.extend(_check_data_service(root, mod, rtype, name, body))
    if not any(m.path.name == "ray_manifests" for m in modules.values()):
        problems.append(f"{root}: no ray_manifests module (the RayService and RayCluster)")
    return problems


def _check_ray_manifests(root: Path, mod: Module) -> list[str]:
    problems = []
    spec = mod.locals.get("cluster_spec", {})
    auth = mod.locals.get("auth_options", {})
    if auth.get("mode") != "token" or spec.get("authOptions") != "${local.auth_options}":
        problems.append(_where(mod, root, "Ray token auth must be on (authOptions.mode = token) for every cluster"))
    if spec.get("headGroupSpec", {}).get("serviceType") != "ClusterIP":
        problems.append(_where(mod, root, "the Ray head service (dashboard 8265, client 10001) must be ClusterIP"))
    version = str(mod.variables.get("ray_version", {}).get("default", "0"))
    if tuple(int(p) for p in version.split(".")[:2]) < MIN_RAY_FOR_TOKEN_AUTH:
        problems.append(_where(mod, root, f"ray_version {version}: token auth needs Ray 2.52 or newer"))
    service = mod.locals.get("ray_service", {})
    if service.get("spec", {}).get("rayClusterConfig") != "${local.cluster_spec}":
        problems.append(_where(mod, root, "the RayService must run the same (token-auth, ClusterIP) cluster spec"))
    if (
        mod.locals.get("serve_config") != "${yamldecode(file(local.serve_config_file))}"
        or mod.locals.get("serve_config_v2") != SERVE_CONFIG_V2
        or service.get("spec", {}).get("serveConfigV2") != "${local.serve_config_v2}"
    ):
        problems.append(
            _where(mod, root, "serveConfigV2 must be serve/config.yaml read at plan time (only http_options.host set)")
        )
    default = re.search(r'"\$\{path\.module\}/([^"]+)"', str(mod.locals.get("serve_config_file", "")))
    if not default or (mod.path / default.group(1)).resolve() != serve_config_path(root):
        problems.append(_where(mod, root, "serve_config_file must default to the repo's serve/config.yaml"))
    return problems


def _check_data_service(root: Path, mod: Module, rtype: str, name: str, body: dict[str, Any]) -> list[str]:
    rules: dict[str, list[tuple[str, Callable[[dict[str, Any]], bool]]]] = {
        "aws_msk_cluster": [
            (
                "SASL/SCRAM only, no unauthenticated access",
                lambda b: '"unauthenticated": false' in json.dumps(b) and '"scram": true' in json.dumps(b),
            ),
            (
                "TLS between clients and brokers and inside the cluster",
                lambda b: '"client_broker": "TLS"' in json.dumps(b) and '"in_cluster": true' in json.dumps(b),
            ),
            ("no public access", lambda b: '"type": "DISABLED"' in json.dumps(b)),
            ("encrypted at rest with the platform key", lambda b: "encryption_at_rest_kms_key_arn" in json.dumps(b)),
        ],
        "aws_elasticache_replication_group": [
            (
                "TLS in transit and AUTH token",
                lambda b: b.get("transit_encryption_enabled") is True and "auth_token" in b,
            ),
            (
                "encrypted at rest with the platform key",
                lambda b: b.get("at_rest_encryption_enabled") is True and "kms_key_id" in b,
            ),
        ],
        "aws_db_instance": [
            ("private", lambda b: b.get("publicly_accessible") is False),
            ("encrypted with the platform key", lambda b: b.get("storage_encrypted") is True and "kms_key_id" in b),
        ],
        "aws_dynamodb_table": [
            ("encrypted with the platform key", lambda b: "kms_key_arn" in json.dumps(b.get("server_side_encryption"))),
        ],
        "aws_eks_cluster": [
            ("private API endpoint", lambda b: '"endpoint_private_access": true' in json.dumps(b)),
            ("secrets encrypted with the platform key", lambda b: "encryption_config" in b),
        ],
    }
    return [_where(mod, root, f"{rtype}.{name}: must be {what}") for what, ok in rules.get(rtype, []) if not ok(body)]


def check_prod_config(root: Path, modules: dict[Path, Module]) -> list[str]:
    """Every ${VAR} config/prod.yml references reaches the pods: the lakehouse-env ConfigMap,
    the lakehouse-secrets Secret, or the downward API (POD_IP) of modules/lakehouse."""
    prod = root.parent / "config" / "prod.yml"
    lakehouse = next((m for m in modules.values() if m.path.name == "lakehouse"), None)
    if lakehouse is None or not prod.is_file():
        return [f"{root}: modules/lakehouse and config/prod.yml are checked together; one is missing"]
    provided = set(lakehouse.locals.get("environment", {})) | set(lakehouse.locals.get("secret_environment", {}))
    provided |= set(re.findall(r'name = "(\w+)", valueFrom', _raw_text(modules)))
    wanted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", prod.read_text()))
    return [
        _where(lakehouse, root, f"config/prod.yml references ${{{var}}}, which no pod environment provides")
        for var in sorted(wanted - provided)
    ]


def _raw_text(modules: dict[Path, Module]) -> str:
    return "\n".join(p.read_text() for m in modules.values() for p in sorted(m.path.glob("*.tf")))


def serve_config_path(root: Path) -> Path:
    return (root.parent / "serve" / "config.yaml").resolve()


def check_invariants(root: Path, modules: dict[Path, Module] | None = None) -> list[str]:
    modules = load_tree(root) if modules is None else modules
    return (
        check_buckets(root, modules)
        + check_iam(root, modules)
        + check_cluster(root, modules)
        + check_prod_config(root, modules)
    )


# --- with terraform: validate what can be initialised, render the manifests ------------------


def _terraform(args: list[str], cwd: Path, data_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TF_DATA_DIR": str(data_dir),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(
        ["terraform", *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def render_module(root: Path, name: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """`terraform apply` of a provider-free module (ray_manifests, prefect_job_template) into a
    throwaway state: the objects the platform applies, as Terraform computes them."""
    with tempfile.TemporaryDirectory(prefix="tf-render-") as tmp:
        work = Path(tmp)
        module = root / "modules" / name
        args = ["-input=false", f"-state={work / 'state.tfstate'}"]
        args += [f"-var={key}={value}" for key, value in (variables or {}).items()]
        for step in (["init", "-backend=false", "-input=false"], ["apply", "-auto-approve", *args]):
            done = _terraform(step, module, work / "data")
            if done.returncode != 0:
                raise RuntimeError(f"terraform {step[0]} in {module}: {done.stderr or done.stdout}")
        out = _terraform(["output", "-json", f"-state={work / 'state.tfstate'}"], module, work / "data")
        return {k: v["value"] for k, v in json.loads(out.stdout).items()}


def render_ray_manifests(root: Path, serve_config: Path | None = None) -> dict[str, Any]:
    return render_module(root, "ray_manifests", {"serve_config_file": str(serve_config)} if serve_config else None)


def expected_serve_config_v2(config: Path) -> dict[str, Any]:
    """What the RayService must run: the file's content, the proxy on the pod's address."""
    serve = yaml.safe_load(config.read_text())
    serve["http_options"] = {**(serve.get("http_options") or {}), "host": POD_HTTP_HOST}
    return serve


def check_rendered(root: Path) -> list[str]:
    config = serve_config_path(root)
    if not config.is_file():
        return [f"{config}: missing; the RayService's serveConfigV2 is read from it"]
    rendered = render_ray_manifests(root)
    problems = []
    if yaml.safe_load(rendered["ray_service"]["spec"]["serveConfigV2"]) != expected_serve_config_v2(config):
        problems.append(f"rendered serveConfigV2 differs from {config} (beyond http_options.host)")
    for obj in rendered["manifests"]:
        spec = obj["spec"].get("rayClusterConfig", obj["spec"])
        if spec.get("authOptions", {}).get("mode") != "token":
            problems.append(f"rendered {obj['kind']}: token auth off")
        if spec["headGroupSpec"].get("serviceType") != "ClusterIP":
            problems.append(f"rendered {obj['kind']}: head service not ClusterIP")
    template = render_module(root, "prefect_job_template", {"image": "render.invalid/lakehouse:check"})
    pod = template["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    refs = {next(iter(ref.values()))["name"] for ref in container.get("envFrom", [])}
    if pod.get("serviceAccountName") != "spark" or refs != {"lakehouse-env", "lakehouse-secrets"}:
        problems.append("rendered Prefect job template: flow runs need the spark service account and the platform env")
    if not any(e.get("name") == "POD_IP" and "valueFrom" in e for e in container.get("env", [])):
        problems.append("rendered Prefect job template: no POD_IP for the Spark driver")
    return problems


def check_validate(root: Path, modules: dict[Path, Module]) -> tuple[list[str], list[str]]:
    """`terraform validate` wherever `terraform init` can get the providers; (problems, notes)."""
    problems, notes = [], []
    with tempfile.TemporaryDirectory(prefix="tf-validate-") as tmp:
        for i, mod in enumerate(sorted(modules.values(), key=lambda m: m.path)):
            data = Path(tmp) / str(i)
            name = mod.path.relative_to(root.parent)
            lock = mod.path / ".terraform.lock.hcl"
            had_lock = lock.exists()
            init = _terraform(["init", "-backend=false", "-input=false"], mod.path, data)
            if lock.exists() and not had_lock:
                lock.unlink()  # a check leaves the tree as it found it; roots commit theirs
            if init.returncode != 0:
                if (
                    "Failed to query available provider packages" in init.stderr
                    or "could not connect" in init.stderr.lower()
                    or "Failed to install provider" in init.stderr
                ):
                    notes.append(
                        f"{name}: configuration read by init; validate skipped (providers cannot be downloaded)"
                    )
                    continue
                problems.append(f"{name}: terraform init failed: {init.stderr.strip()}")
                continue
            done = _terraform(["validate"], mod.path, data)
            if done.returncode != 0:
                problems.append(f"{name}: terraform validate: {done.stderr.strip() or done.stdout.strip()}")
            else:
                notes.append(f"{name}: terraform validate ok")
    return problems, notes


def run(root: Path, with_terraform: bool) -> int:
    modules = load_tree(root)
    problems = check_wiring(root, modules) + check_invariants(root, modules)
    notes: list[str] = []
    if with_terraform:
        if shutil.which("terraform") is None:
            notes.append("terraform not installed: validate and render skipped")
        else:
            validate_problems, notes = check_validate(root, modules)
            problems += validate_problems + check_rendered(root)
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"terraform checks: {len(modules)} modules, {len(problems)} problems")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", nargs="?", type=Path, default=HERE)
    parser.add_argument("--terraform", action="store_true", help="also terraform validate and render (where installed)")
    args = parser.parse_args(argv)
    return run(args.tree.resolve(), args.terraform)


if __name__ == "__main__":
    sys.exit(main())
