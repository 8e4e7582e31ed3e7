"""`lakehouse orchestrator up|down|status`: a local Prefect server, the deployments and a worker.

`up` is what docs/orchestration.md otherwise spells out as five commands: `prefect server start`
on the host and port of `prefect.local_api_url` (SQLite under PREFECT_HOME), the `lakehouse`
process work pool, `prefect deploy --all` from prefect.yaml, and a worker for the pool that runs
flows from this checkout. Each step is skipped when already done, so `up` is safe to repeat.
Processes run detached; their pids and logs live in `prefect.state_dir`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from lake.settings import REPO_ROOT, TELEMETRY_OFF, Settings, resolve_path

WORK_POOL = "lakehouse"  # prefect.yaml's work_pool for every deployment
PREFECT = str(Path(sys.executable).with_name("prefect"))


class OrchestratorError(RuntimeError):
    """A service did not come up; the message says which and where its log is."""


@dataclass(frozen=True)
class Status:
    api_url: str
    server_up: bool
    server_pid: int | None
    worker_pid: int | None
    deployments: list[str]

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")


def _state_dir(settings: Settings) -> Path:
    path = Path(resolve_path(settings.prefect.state_dir))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        **TELEMETRY_OFF,
        "PREFECT_API_URL": settings.prefect.local_api_url,
        # Workers run flows from this checkout (prefect.yaml's pull step) with its settings profile.
        "LAKEHOUSE_HOME": os.environ.get("LAKEHOUSE_HOME", str(REPO_ROOT)),
    }


def _alive(pid: int | None) -> bool:
    """Running, not merely a zombie waiting for a parent that may never reap it."""
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _spawn(args: list[str], settings: Settings, name: str, cwd: Path) -> int:
    state = _state_dir(settings)
    log = (state / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args, env=_env(settings), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (state / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _api(settings: Settings, path: str, body: dict[str, object] | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        settings.prefect.local_api_url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def server_answers(settings: Settings) -> bool:
    try:
        _api(settings, "/health")
    except (OSError, ValueError):
        return False
    return True


def _prefect(settings: Settings, *args: str) -> str:
    result = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        env=_env(settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise OrchestratorError(f"`prefect {' '.join(args)}` failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def start_server(settings: Settings, timeout_s: float = 180) -> int | None:
    """Start `prefect server` unless one answers on `prefect.local_api_url`; wait until it does."""
    if server_answers(settings):
        return _read_pid(_state_dir(settings) / "server.pid")
    parts = urlsplit(settings.prefect.local_api_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4200
    pid = _spawn([PREFECT, "server", "start", "--host", host, "--port", str(port)], settings, "server", REPO_ROOT)
    deadline = time.monotonic() + timeout_s
    while not server_answers(settings):
        if not _alive(pid) or time.monotonic() > deadline:
            log = _state_dir(settings) / "server.log"
            raise OrchestratorError(f"prefect server did not answer on {host}:{port}; see {log}")
        time.sleep(1)
    return pid


def deployment_names(settings: Settings) -> list[str]:
    found = _api(settings, "/deployments/filter", {})
    assert isinstance(found, list)
    return sorted(d["name"] for d in found)


def deploy(settings: Settings) -> list[str]:
    """The work pool (created once) and every deployment in prefect.yaml (updated in place)."""
    try:
        _api(settings, f"/work_pools/{WORK_POOL}")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        _prefect(settings, "work-pool", "create", WORK_POOL, "--type", "process")
    _prefect(settings, "deploy", "--all")
    return deployment_names(settings)


def start_worker(settings: Settings) -> int:
    """A process worker for the pool, unless the one started before is still running."""
    pid = _read_pid(_state_dir(settings) / "worker.pid")
    if pid is not None:
        return pid
    # Started outside the checkout on purpose: the pull step is what must find LAKEHOUSE_HOME.
    return _spawn([PREFECT, "worker", "start", "--pool", WORK_POOL], settings, "worker", _state_dir(settings))


def up(settings: Settings, *, with_worker: bool = True) -> Status:
    server_pid = start_server(settings)
    names = deploy(settings)
    worker_pid = start_worker(settings) if with_worker else None
    return Status(settings.prefect.local_api_url, True, server_pid, worker_pid, names)


def down(settings: Settings, timeout_s: float = 30) -> list[str]:
    """Stop the worker, then the server, that `up` started; returns what was stopped."""
    stopped = []
    for name in ("worker", "server"):
        pid_file = _state_dir(settings) / f"{name}.pid"
        pid = _read_pid(pid_file)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        pid_file.unlink(missing_ok=True)
    return stopped


def status(settings: Settings) -> Status:
    state = _state_dir(settings)
    answers = server_answers(settings)
    return Status(
        settings.prefect.local_api_url,
        answers,
        _read_pid(state / "server.pid"),
        _read_pid(state / "worker.pid"),
        deployment_names(settings) if answers else [],
    )
