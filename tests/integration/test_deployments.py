"""prefect.yaml against a real local Prefect server: deploy everything, run one through a worker."""

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

import pytest

from lake.settings import REPO_ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_PROFILES_PATH", None)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}") from None
                time.sleep(1)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def prefect(env: dict[str, str], *args: str, cwd: Path = REPO_ROOT, timeout: int = 300) -> str:
    result = subprocess.run(
        [PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout + result.stderr  # flow-run logs come on stderr


def test_deploy_all_and_run_one_through_a_worker(server: dict[str, str], tmp_path: Path) -> None:
    prefect(server, "work-pool", "create", "lakehouse", "--type", "process")
    prefect(server, "--no-prompt", "deploy", "--all")

    request = urllib.request.Request(
        server["PREFECT_API_URL"] + "/deployments/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        found = {d["name"]: d for d in json.load(response)}
    assert set(found) == {"platform", "ingest", "refine", "publish", "maintain"}
    for deployment in found.values():
        assert deployment["work_pool_name"] == "lakehouse"
        assert deployment["schedules"] and deployment["schedules"][0]["schedule"]["cron"]
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"

    # A run from the `ingest` deployment, picked up by a worker started outside the checkout:
    # the pull step moves it into LAKEHOUSE_HOME, which is what makes the entrypoint resolve.
    lake = tmp_path / "lake"
    run_env = {**server, "LAKEHOUSE_LAKE__ROOT": str(lake), "LAKEHOUSE_HOME": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-m", "lake", "seed", "--start", "2013-01-01", "--end", "2013-01-01"],
        env=run_env, check=True, capture_output=True, timeout=300,
    )
    prefect(run_env, "deployment", "run", "ingest/ingest")
    worker_log = prefect(run_env, "worker", "start", "--pool", "lakehouse", "--run-once", cwd=tmp_path, timeout=600)
    assert "Finished in state Completed" in worker_log, worker_log[-3000:]
    assert sorted(p.name for p in (lake / "bronze").iterdir()) == ["airlines", "airports", "flights", "planes", "weather"]
