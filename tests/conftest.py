"""Shared fixtures: one Spark session and one temporary lake for the whole test run.

The environment is set before anything reads settings: the `test` profile, a temporary lake,
telemetry off everywhere.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lake.settings import TELEMETRY_OFF  # importing is safe: settings are built lazily

# Fixtures of the ML tests (a Ray head and a two-week lake), shared by their modules.
pytest_plugins = ["tests.ml_support"]

_LAKE = Path(tempfile.mkdtemp(prefix="lakehouse-test-"))
os.environ.update(
    {
        "LAKEHOUSE_ENV": "test",
        "LAKEHOUSE_LAKE__ROOT": str(_LAKE / "lake"),
        **TELEMETRY_OFF,
        "PYSPARK_PYTHON": sys.executable,
    }
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lake.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    from lake.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[SparkSession]:
    from lake.spark import get_spark, stop_spark

    session = get_spark(settings)
    yield session
    stop_spark()


@pytest.fixture()
def scratch_lake(tmp_path: Path, settings: Settings) -> Settings:
    """Settings whose lake is a fresh folder, for tests that need an empty lake."""
    return settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": str(tmp_path / "lake")})})
