"""`lakehouse cluster` refuses a profile it cannot run, before starting anything, naming the key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lake.cluster import ClusterError, bucket_of, services, start
from lake.settings import REPO_ROOT, load_settings


def test_a_local_profile_is_refused_naming_the_missing_endpoint() -> None:
    with pytest.raises(ClusterError, match=r"object_store\.endpoint_url is not set"):
        services(load_settings("dev", environ={}))


def test_a_local_spark_master_is_refused() -> None:
    settings = load_settings("cluster", environ={"LAKEHOUSE_SPARK__MASTER": "local[2]"})
    with pytest.raises(ClusterError, match=r"spark\.master is 'local\[2\]'"):
        services(settings)


def test_a_lake_outside_a_bucket_is_refused() -> None:
    with pytest.raises(ClusterError, match=r"lake\.root is .*: the cluster profile keeps the lake in a bucket"):
        bucket_of(load_settings("cluster", environ={"LAKEHOUSE_LAKE__ROOT": "/tmp/lake"}))


def test_start_needs_credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ClusterError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"):
        start(load_settings("cluster", environ={}))


def test_the_cli_reports_the_problem_and_fails() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    done = subprocess.run(
        [sys.executable, "-m", "lake", "cluster", "status"],
        env={**env, "LAKEHOUSE_ENV": "dev"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "object_store.endpoint_url is not set" in done.stderr
