"""Deploy serve/config.yaml the way `serve run CONFIG` does, with the platform's settings on top.

The file stays Serve's standard schema (it is also the KubeRay RayService's serveConfigV2);
`lakehouse serve` overlays what the settings decide: the HTTP host, port and request timeout
(`serve:` section), and passes the deploying process's LAKEHOUSE_* variables, telemetry switches
and the auth token variable to the applications' runtime env, so the replicas read the same
lake and profile as the command that started them.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lake.settings import TELEMETRY_OFF, Settings, key_problems, resolve_path

if TYPE_CHECKING:
    from ray.serve.schema import ServeDeploySchema


class DeployError(RuntimeError):
    """The config is invalid or an application did not come up; the message says which and why."""


@dataclass(frozen=True)
class AppUrl:
    name: str
    status: str
    urls: tuple[str, ...]


# What each application answers at, relative to its route prefix: printed by `lakehouse serve`.
ENTRY_POINTS = {
    "data": ("v1/tables", "docs", "healthz"),
    "model": ("flight-delay/predict", "docs", "healthz"),
}


def forwarded_environment(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables the replicas need to build the same settings as this process."""
    environ = dict(os.environ if environ is None else environ)
    keep = {k: v for k, v in environ.items() if k.startswith("LAKEHOUSE_")}
    keep.update({k: environ.get(k, v) for k, v in TELEMETRY_OFF.items()})
    token_var = settings.serve.auth_token_env
    if environ.get(token_var):
        keep[token_var] = environ[token_var]
    return keep


def load_config(settings: Settings, path: str | None = None, environ: dict[str, str] | None = None) -> ServeDeploySchema:
    """serve/config.yaml validated by Serve's own schema, with the settings' HTTP options and env."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    file = Path(resolve_path(path or settings.serve.config_file))
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"{file}: cannot read the Serve config: {exc}") from None
    if not isinstance(raw, dict):
        raise DeployError(f"{file}: the top level must be a mapping (proxy_location, http_options, applications)")
    http = dict(raw.get("http_options") or {})
    http.update(host=settings.serve.host, port=settings.serve.port, request_timeout_s=settings.serve.request_timeout_s)
    raw["http_options"] = http
    env = forwarded_environment(settings, environ)
    for app in raw.get("applications") or []:
        if isinstance(app, dict):
            runtime_env = dict(app.get("runtime_env") or {})
            runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
            app["runtime_env"] = runtime_env
    try:
        return ServeDeploySchema.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(problem for _key, problem in key_problems(exc))
        raise DeployError(f"{file}: {problems}") from None


def connect(settings: Settings) -> bool:
    """Join the configured Ray cluster, else start a private local head; True when we started it."""
    import ray

    if ray.is_initialized():
        return False
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    common: dict[str, Any] = {"namespace": "serve", "log_to_driver": False, "logging_level": "WARNING"}
    if address:
        ray.init(address=address, **common)
        return False
    memory = settings.ray.object_store_memory_mb
    ray.init(
        num_cpus=settings.ray.num_cpus,
        object_store_memory=memory * 2**20 if memory else None,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        **common,
    )
    return True


def deploy(config: ServeDeploySchema, wait_s: float = 300) -> list[AppUrl]:
    """Start Serve (HTTP options from the config) and deploy every application; wait until they run."""
    from ray import serve
    from ray.serve._private import api as private_api  # what `serve run CONFIG` itself calls

    client = private_api.serve_start(
        http_options=config.http_options.model_dump(),
        proxy_location=config.proxy_location,
    )
    client.deploy_apps(config, _blocking=False)
    names = [app.name for app in config.applications]
    deadline = time.monotonic() + wait_s
    while True:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "NOT_STARTED" for name in names}
        failed = {n: apps[n].message for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed:
            raise DeployError("; ".join(f"application {n!r} failed: {m}" for n, m in failed.items()))
        if all(s == "RUNNING" for s in states.values()):
            break
        if time.monotonic() > deadline:
            raise DeployError(f"applications not running after {wait_s:.0f}s: {states}")
        time.sleep(1)
    return urls(config)


def urls(config: ServeDeploySchema) -> list[AppUrl]:
    from ray import serve

    http = config.http_options
    base = f"http://{http.host}:{http.port}"
    apps = serve.status().applications
    out = []
    for app in config.applications:
        prefix = (app.route_prefix or "/").rstrip("/")
        points = ENTRY_POINTS.get(app.name, ("docs",))
        status = str(apps[app.name].status) if app.name in apps else "NOT_STARTED"
        out.append(AppUrl(app.name, status, tuple(f"{base}{prefix}/{p}" for p in points)))
    return out


def shutdown() -> None:
    from ray import serve

    serve.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PrivateHead:
    address: str
    temp_dir: Path
    process: Any  # subprocess.Popen
    environ: dict[str, str]  # what a client process needs to join (the head's own auth token)


def start_private_head(num_cpus: int = 2, object_store_mb: int = 512, wait_s: float = 180, attempts: int = 3) -> PrivateHead:
    """A Ray head of our own for tests and benchmarks: free ports, its own temp dir, 127.0.0.1 only.

    It never collides with another Ray on the machine; `stop_private_head` ends exactly its processes.
    `ray start` gives its raylet a fixed 30 s to register, which a saturated machine can miss:
    a failed start is retried on fresh ports.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_head(num_cpus, object_store_mb, wait_s)
        except DeployError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _start_head(num_cpus: int, object_store_mb: int, wait_s: float) -> PrivateHead:
    import socket
    import subprocess
    import sys
    import tempfile

    temp_dir = Path(tempfile.mkdtemp(prefix="lhs-", dir="/tmp"))  # short: Ray's socket paths are limited
    gcs = free_port()
    worker_base = 40000 + (os.getpid() % 200) * 100
    ports = ("node-manager", "object-manager", "ray-client-server", "dashboard-agent-listen", "dashboard-agent-grpc",
             "metrics-export", "runtime-env-agent")  # fmt: skip
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--num-cpus={num_cpus}",
        f"--object-store-memory={object_store_mb * 2**20}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
        *(f"--{name}-port={free_port()}" for name in ports),
        f"--min-worker-port={worker_base}", f"--max-worker-port={worker_base + 99}",
    ]  # fmt: skip
    log = (temp_dir / "ray-start.log").open("wb")
    # Token auth on, with a token of its own: clients get it through `PrivateHead.environ`.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    env = {**os.environ, **TELEMETRY_OFF, **auth}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + wait_s
    started = "will now block forever"  # `ray start --block` says so once every process is up
    while True:
        if process.poll() is not None:
            failure = (temp_dir / "ray-start.log").read_text()[-2000:]
            stop_private_head(PrivateHead("", temp_dir, process, auth))
            raise DeployError(f"ray start exited {process.returncode}: {failure}")
        if started in (temp_dir / "ray-start.log").read_text(errors="replace"):
            socket.create_connection(("127.0.0.1", gcs), timeout=5).close()
            return PrivateHead(f"127.0.0.1:{gcs}", temp_dir, process, auth)
        if time.monotonic() > deadline:
            stop_private_head(PrivateHead("", temp_dir, process, auth))
            raise DeployError(f"the Ray head did not come up in {wait_s:.0f}s")
        time.sleep(1)


def head_processes(head: PrivateHead) -> list[Any]:
    """The head's processes (psutil): the `ray start` group, its descendants (the raylet's
    workers and actors, whose titles name neither) and anything naming its temp dir."""
    import psutil

    try:
        descendants = {p.pid for p in psutil.Process(head.process.pid).children(recursive=True)}
    except psutil.Error:
        descendants = set()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            in_group = os.getpgid(proc.pid) == head.process.pid
        except OSError:
            in_group = False
        named = str(head.temp_dir) in " ".join(proc.info["cmdline"] or [])
        if (in_group or proc.pid in descendants or named) and proc.pid != os.getpid():
            found.append(proc)
    return found


def stop_private_head(head: PrivateHead) -> None:
    """SIGTERM the group `ray start --block` leads (it stops its processes), then kill leftovers."""
    import contextlib
    import shutil
    import signal
    import subprocess

    import psutil

    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.process.pid, sig)
        except ProcessLookupError:
            break
        try:
            head.process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for proc in head_processes(head):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    shutil.rmtree(head.temp_dir, ignore_errors=True)
