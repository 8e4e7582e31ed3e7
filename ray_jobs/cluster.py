"""The Ray head and the Jobs API: start/stop a local head, submit entry points, follow them.

Locally `start_head` runs `ray start --head --block` in its own process group bound to
127.0.0.1 and remembers its pid under the head's temp dir, so `stop_head` ends exactly that
head (never `ray stop`, which would end every Ray process of the user). In prod
`ray.address` names the KubeRay head's dashboard (`http://<head>:8265`) and nothing starts.

Jobs run `python -m ray_jobs.<name>`; the `LAKEHOUSE_*` variables of the submitter travel in
the job's runtime env, so the job sees the same settings (profile, lake) as the flow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lake.settings import REPO_ROOT, TELEMETRY_OFF, Settings, resolve_path

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PID_FILE = "lakehouse-head.pid"
START_ATTEMPTS = 4
BLOCKING = b"block forever"  # what `ray start --block` logs once the node is up
HEAD_START_TIMEOUT_S = 300  # a busy 2-core machine needs minutes


# Ray token auth on the local head too (Ray keeps the token in ~/.ray/auth_token, generated on
# first start); clients only send it when the mode says so.
AUTH = {"RAY_AUTH_MODE": "token"}


class RayJobError(RuntimeError):
    """A Ray job failed or could not be submitted; the message carries the end of its log."""


def _remote(settings: Settings) -> bool:
    """A cluster elsewhere (KubeRay): `ray.address` is its dashboard URL."""
    return bool(settings.ray.address and settings.ray.address.startswith(("http://", "https://")))


def dashboard_url(settings: Settings) -> str:
    """The Jobs API / dashboard address: `ray.address` when it is an http(s) URL, else the local head."""
    if settings.ray.address and _remote(settings):
        return settings.ray.address.rstrip("/")
    return f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}"


def _temp_dir(settings: Settings) -> Path:
    return Path(resolve_path(settings.ray.temp_dir)) if settings.ray.temp_dir else Path("/tmp/ray")


def _ray_exe() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else "ray"


def head_command(settings: Settings) -> list[str]:
    r = settings.ray
    cmd = [
        _ray_exe(), "start", "--head", "--block", "--disable-usage-stats", f"--port={r.head_port}",
        "--include-dashboard=true", f"--dashboard-host={r.dashboard_host}", f"--dashboard-port={r.dashboard_port}",
        # Fixed neighbours of the configured ports, so two heads on one machine (tests) never collide.
        f"--ray-client-server-port={r.head_port + 1}", f"--dashboard-agent-listen-port={r.dashboard_port + 1}",
        f"--dashboard-agent-grpc-port={r.dashboard_port + 2}", f"--metrics-export-port={r.dashboard_port + 3}",
        f"--runtime-env-agent-port={r.dashboard_port + 4}",
    ]  # fmt: skip
    if r.num_cpus is not None:
        cmd.append(f"--num-cpus={r.num_cpus + serve_cpus(settings)}")
    if r.object_store_memory_mb is not None:
        cmd.append(f"--object-store-memory={r.object_store_memory_mb * 1024 * 1024}")
    if r.temp_dir:
        cmd.append(f"--temp-dir={resolve_path(r.temp_dir)}")
    return cmd


def serve_cpus(settings: Settings) -> int:
    """The CPUs the applications of `serve.config_file` reserve while they run, rounded up.

    The local head offers them on top of `ray.num_cpus`: replicas hold their CPUs for as long as
    they serve, and the jobs must still find theirs (training's two workers would otherwise
    wait forever once the platform run has deployed Serve).
    """
    import math

    import yaml

    try:
        raw = yaml.safe_load(Path(resolve_path(settings.serve.config_file)).read_text())
    except (OSError, yaml.YAMLError):
        return 0  # `lakehouse serve` names a broken config; the head does not need to
    apps = raw.get("applications") if isinstance(raw, dict) else None
    total = 0.0
    for app in apps or []:
        for deployment in app.get("deployments") or []:
            replicas = deployment.get("num_replicas", 1)
            cpus = (deployment.get("ray_actor_options") or {}).get("num_cpus", 1)  # Serve's default: 1
            total += (replicas if isinstance(replicas, int) else 1) * float(cpus)
    return math.ceil(total)


def is_up(settings: Settings, timeout_s: float = 2.0) -> bool:
    """The dashboard (which serves the Jobs API) answers."""
    try:
        with urllib.request.urlopen(f"{dashboard_url(settings)}/api/version", timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # token auth (Ray's default): it answers; the Ray SDK sends the token
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class HeadStatus:
    up: bool
    dashboard: str
    pid: int | None  # the head this checkout started, if any


def _pid(settings: Settings) -> int | None:
    path = _temp_dir(settings) / PID_FILE
    if not path.is_file():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def gcs_address(settings: Settings) -> str | None:
    """The GCS address (host:port) of the local head, as it recorded it in its temp dir."""
    path = _temp_dir(settings) / "ray_current_cluster"
    return path.read_text().strip() or None if path.is_file() else None


def status(settings: Settings) -> HeadStatus:
    return HeadStatus(up=is_up(settings), dashboard=dashboard_url(settings), pid=_pid(settings))


def start_problem(settings: Settings) -> str | None:
    """Why the local head could not start here (no `ray` executable, a port taken), else None.

    For preflight checks, before any work: a head that answers already is no problem.
    """
    import shutil
    import socket

    if _remote(settings) or is_up(settings):
        return None
    if not Path(_ray_exe()).exists() and not shutil.which("ray"):
        return "the `ray` executable is not installed next to this Python (run `make install`)"
    r = settings.ray
    for key, port in (("ray.head_port", r.head_port), ("ray.dashboard_port", r.dashboard_port)):
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"{key} {port} is taken by a process that is not a Ray dashboard: free it or set {key}"
    temp = _temp_dir(settings)
    try:
        temp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"ray.temp_dir {temp} is not writable: {exc}"
    return None


def driver_address(settings: Settings) -> str | None:
    """The address an in-process driver (Serve's deployer) joins: ray.address, RAY_ADDRESS, else
    the local head's GCS. Token mode is set first: the local head runs with token auth."""
    _token_mode()
    return settings.ray.address or os.environ.get("RAY_ADDRESS") or gcs_address(settings)


def start_head(settings: Settings, timeout_s: float = HEAD_START_TIMEOUT_S) -> HeadStatus:
    """Start the local head unless one answers already; waits for the dashboard."""
    if _remote(settings):
        raise RayJobError(f"ray.address is set ({settings.ray.address}): the cluster runs elsewhere, nothing to start")
    if is_up(settings):
        return status(settings)
    temp = _temp_dir(settings)
    temp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **TELEMETRY_OFF, **AUTH}
    deadline = time.monotonic() + timeout_s
    # Ray's raylet gives its agents a fixed 15 s to start and exits when a loaded machine is
    # slower (ray-project/ray#65983); a fresh attempt then usually succeeds.
    log_path = temp / "lakehouse-head.log"
    for _attempt in range(START_ATTEMPTS):
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                head_command(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        (temp / PID_FILE).write_text(str(proc.pid))
        while time.monotonic() < deadline and proc.poll() is None:
            # Started = `ray start` reached its blocking phase (every process up) and the dashboard answers.
            with log_path.open("rb") as f:
                f.seek(offset)
                blocking = BLOCKING in f.read()
            if blocking and is_up(settings):
                return status(settings)
            time.sleep(1)
        stop_head(settings)
        if time.monotonic() >= deadline:
            break
    raise RayJobError(
        f"the Ray head did not come up (dashboard {dashboard_url(settings)}) within {timeout_s:.0f}s; "
        f"see {temp / 'lakehouse-head.log'} and {temp / 'session_latest' / 'logs'}"
    )


def stop_head(settings: Settings, timeout_s: float = 30) -> bool:
    """End the head `start_head` started (its whole process group); False when none was running."""
    pid = _pid(settings)
    pid_file = _temp_dir(settings) / PID_FILE
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.5)
        if not _group_alive(pid):
            break
    pid_file.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _token_mode() -> None:
    """The SDK sends the token (~/.ray/auth_token) only in token mode, read when Ray is first imported."""
    for name, value in AUTH.items():
        os.environ.setdefault(name, value)


def client(settings: Settings) -> JobSubmissionClient:
    _token_mode()
    from ray.job_submission import JobSubmissionClient

    if not is_up(settings):
        raise RayJobError(
            f"no Ray dashboard at {dashboard_url(settings)}: start one with `lakehouse ray start` "
            "(or set ray.address to the cluster's dashboard URL)"
        )
    return JobSubmissionClient(dashboard_url(settings))


def job_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a job inherits from its submitter: the settings' variables and telemetry switches."""
    passed = {k: v for k, v in os.environ.items() if k.startswith("LAKEHOUSE_") or k == "PYTHONPATH"}
    return {**TELEMETRY_OFF, **passed, **(extra or {})}


def entrypoint(settings: Settings, module: str, args: Sequence[str]) -> str:
    """Locally the job runs this checkout with this interpreter; on a cluster, the image's python."""
    import shlex

    command = ["-m", f"ray_jobs.{module}", *args]
    if _remote(settings):
        return shlex.join(["python", *command])
    return f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.join([sys.executable, *command])}"


def run_job(
    settings: Settings,
    module: str,
    args: Sequence[str] = (),
    on_log: Callable[[str], None] | None = None,
    timeout_s: float = 3600,
    poll_s: float = 1.0,
    env: dict[str, str] | None = None,
) -> str:
    """Submit `ray_jobs.<module>`, stream its log to `on_log`, return its id; raise if it fails.

    `env` adds variables to the job's environment (e.g. `LAKEHOUSE_*` overrides).
    """
    _token_mode()
    from ray.job_submission import JobStatus

    jobs = client(settings)
    job_id = jobs.submit_job(
        entrypoint=entrypoint(settings, module, args),
        runtime_env={"env_vars": job_env(env)},
        metadata={"lakehouse_job": module},
    )
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        state = jobs.get_job_status(job_id)
        logs = jobs.get_job_logs(job_id)
        if on_log and len(logs) > seen:
            for line in logs[seen:].splitlines():
                on_log(line)
        seen = len(logs)
        if state.is_terminal():
            break
        if time.monotonic() > deadline:
            jobs.stop_job(job_id)
            raise RayJobError(f"job {job_id} ({module}) ran past {timeout_s:.0f}s and was stopped")
        time.sleep(poll_s)
    if state != JobStatus.SUCCEEDED:
        tail = "\n".join(logs.splitlines()[-30:])
        info = jobs.get_job_info(job_id)
        raise RayJobError(f"job {job_id} ({module}) {state.value}: {info.message or ''}\n{tail}")
    return job_id


def init_ray(settings: Settings) -> None:
    """Connect a job entry point to Ray (the only place `ray.init` is called).

    Inside a submitted job RAY_ADDRESS is set and `ray.init()` joins that cluster; run by hand
    with `ray.address` set it joins that cluster; otherwise it starts a small local instance
    sized by the `ray:` settings.
    """
    os.environ.update({k: v for k, v in TELEMETRY_OFF.items() if k not in os.environ})
    _token_mode()  # before Ray's first import, which reads the auth mode
    import ray

    if ray.is_initialized():
        return
    local_head = gcs_address(settings) if _pid(settings) else None
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    elif settings.ray.address and not _remote(settings):  # a GCS address (host:port)
        ray.init(address=settings.ray.address)
    elif local_head:  # the head `lakehouse ray start` runs
        ray.init(address=local_head)
    else:
        r = settings.ray
        memory = r.object_store_memory_mb * 1024 * 1024 if r.object_store_memory_mb else None
        ray.init(num_cpus=r.num_cpus, object_store_memory=memory, include_dashboard=False)


def free_port() -> int:
    """A port nothing listens on now (tests and benchmarks run their own head beside others)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
