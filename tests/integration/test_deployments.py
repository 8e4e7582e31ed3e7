"""`lakehouse orchestrator up` against a real Prefect server: deploy prefect.yaml, run `platform`
through the real worker it started, and read the outcome back through the Prefect API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from lake.settings import REPO_ROOT

LAKEHOUSE = [sys.executable, "-m", "lake"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lakehouse(env: dict[str, str], *args: str, timeout: int = 600) -> str:
    result = subprocess.run(
        [*LAKEHOUSE, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def api(env: dict[str, str], path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def orchestrator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Server, pool, deployments and worker, all from one `lakehouse orchestrator up`."""
    home = tmp_path_factory.mktemp("orchestrator")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": url,
        "LAKEHOUSE_PREFECT__LOCAL_API_URL": url,
        "LAKEHOUSE_PREFECT__STATE_DIR": str(home / "state"),
        # The worker inherits this: the flow runs it starts write to the test's own lake.
        "LAKEHOUSE_LAKE__ROOT": str(home / "lake"),
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    try:
        lakehouse(env, "orchestrator", "up")
        yield env
    finally:
        subprocess.run([*LAKEHOUSE, "orchestrator", "down"], env=env, cwd=REPO_ROOT, timeout=120, check=False)


def test_up_deploys_everything_and_the_worker_runs_platform(orchestrator: dict[str, str]) -> None:
    env = orchestrator
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    found = {d["name"]: d for d in api(env, "/deployments/filter", {})}
    assert set(found) == {d["name"] for d in declared}
    for deployment in found.values():
        assert deployment["work_pool_name"] == "lakehouse"
        assert deployment["schedules"] and deployment["schedules"][0]["schedule"]["cron"]
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert "worker   running" in lakehouse(env, "orchestrator", "status")
    # Scheduled, platform stops at gold: the ML stages and serving are deployments of their own.
    assert found["platform"]["parameters"] == {"ml": False, "serve": False}
    assert found["deploy-serving"]["entrypoint"] == "flows/deploy_serving.py:deploy_serving"

    # A second `up` changes nothing: same server, same worker.
    before = lakehouse(env, "orchestrator", "status")
    lakehouse(env, "orchestrator", "up")
    assert lakehouse(env, "orchestrator", "status") == before

    # One day of data, then the platform deployment (ingest to gold: one day holds no training
    # split, and the whole run is tests/e2e/test_platform_run.py), picked up by the worker.
    lakehouse(env, "seed", "--start", "2013-01-01", "--end", "2013-01-01")
    run = api(env, f"/deployments/{found['platform']['id']}/create_flow_run", {})
    deadline = time.monotonic() + 600
    while True:
        state = api(env, f"/flow_runs/{run['id']}")["state"]
        if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} or time.monotonic() > deadline:
            break
        time.sleep(3)
    worker_log = (Path(env["LAKEHOUSE_PREFECT__STATE_DIR"]) / "worker.log").read_text()
    assert state["type"] == "COMPLETED", f"{state}\n{worker_log[-3000:]}"

    # Its subflows published the keyed artifacts the UI shows.
    children = api(env, "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}})
    artifacts = api(
        env, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [c["id"] for c in children] + [run["id"]]}}}
    )
    keys = {a["key"] for a in artifacts}
    assert {"tables-written", "run-summary"} <= keys, keys
    tables = [
        json.loads(a["data"]) if isinstance(a["data"], str) else a["data"]
        for a in artifacts
        if a["key"] == "tables-written"
    ]
    rows = {row["table"]: row for table in tables for row in table}
    assert rows["gold.carrier_daily_performance"]["version"] is not None, rows
    lake = Path(env["LAKEHOUSE_LAKE__ROOT"])
    assert (lake / "gold" / "carrier_daily_performance" / "_delta_log").is_dir()


def test_down_stops_what_up_started(orchestrator: dict[str, str]) -> None:
    status = lakehouse(orchestrator, "orchestrator", "status")
    pids = [int(word.rstrip(")")) for word in status.split() if word.rstrip(")").isdigit()]
    assert pids
    assert "stopped: worker, server" in lakehouse(orchestrator, "orchestrator", "down")
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    result = subprocess.run(
        [*LAKEHOUSE, "orchestrator", "status"],
        env=orchestrator,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "server   down" in result.stdout
