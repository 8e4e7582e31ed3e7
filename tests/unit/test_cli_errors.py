"""Bad setup fails before any work, saying what is wrong (no Spark needed to find out)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake.spark import SparkSetupError, check_java


def lakehouse(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lake", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )


def test_bad_config_key_is_named_at_startup() -> None:
    result = lakehouse("sources", LAKEHOUSE_SPARK__DRIVER_MEMRY="2g")
    assert result.returncode == 2
    assert "LAKEHOUSE_SPARK__DRIVER_MEMRY" in result.stderr and "spark.driver_memry" in result.stderr


def test_unknown_environment_is_refused() -> None:
    result = lakehouse("sources", LAKEHOUSE_ENV="staging")
    assert result.returncode == 2 and "staging" in result.stderr


def test_spec_with_unknown_key_is_refused_before_spark(tmp_path: Path) -> None:
    spec = tmp_path / "orders.yml"
    spec.write_text("name: orders\nformat: csv\npath: /nowhere/*.csv\ntarget: bronze.orders\nschemaa: {}\n")
    result = lakehouse("ingest", "--spec", str(spec))
    assert result.returncode == 2
    assert str(spec) in result.stderr and "schemaa" in result.stderr


def test_unknown_source_lists_the_declared_ones() -> None:
    result = lakehouse("ingest", "flightz")
    assert result.returncode == 2 and "flightz" in result.stderr and "flights" in result.stderr


def test_missing_java_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SparkSetupError, match="openjdk-17"):
        check_java()


def test_serve_stop_without_any_ray_head_says_how_to_get_one(tmp_path: Path) -> None:
    """No ray.address, no RAY_ADDRESS and no local head answering on the configured ports."""
    from ray_jobs.cluster import free_port

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "lake", "serve", "--stop"],
        env={**env, "LAKEHOUSE_RAY__DASHBOARD_PORT": str(free_port()), "LAKEHOUSE_RAY__TEMP_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "need a running Ray cluster" in result.stderr and "lakehouse ray start" in result.stderr
