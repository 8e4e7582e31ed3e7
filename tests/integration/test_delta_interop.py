"""Spark (delta-spark) and delta-rs (`deltalake`) read each other's tables identically.

Ray jobs, Feast and the serving layer read the lake through delta-rs, the pipeline writes it
through Spark; the table features Spark turns on by default (change data feed) must not lock
delta-rs out, neither after an append nor after a MERGE.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from lake import io
from lake.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

pytestmark = pytest.mark.spark

UTC = dt.UTC
COLUMNS = ["id", "big", "x", "s", "flag", "d", "ts"]
ROWS: list[tuple[Any, ...]] = [
    (1, 10_000_000_000, 1.5, "alpha", True, dt.date(2013, 1, 1), dt.datetime(2013, 1, 1, 5, 0, tzinfo=UTC)),
    (2, -3, -0.25, "béta ✈", False, dt.date(2013, 12, 31), dt.datetime(2013, 12, 31, 23, 59, 59, 123456, tzinfo=UTC)),
    (3, None, None, None, None, None, None),
    (4, 0, float("1e300"), "", True, dt.date(1970, 1, 1), dt.datetime(1970, 1, 1, tzinfo=UTC)),
]
SPARK_DDL = "id INT, big BIGINT, x DOUBLE, s STRING, flag BOOLEAN, d DATE, ts TIMESTAMP"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def spark_frame(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    return spark.createDataFrame(rows, SPARK_DDL)


def arrow_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("id", pa.int32()),
            ("big", pa.int64()),
            ("x", pa.float64()),
            ("s", pa.string()),
            ("flag", pa.bool_()),
            ("d", pa.date32()),
            ("ts", pa.timestamp("us", tz="UTC")),
        ]
    )
    return pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in rows], schema=schema)


def canonical(values: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples, timestamps as UTC epoch microseconds, sorted by id."""

    def norm(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            assert v.tzinfo is not None
            return round((v - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
        return v

    return sorted((tuple(norm(v) for v in row) for row in values), key=lambda r: r[0])


def via_spark(spark: SparkSession, path: str) -> list[tuple[Any, ...]]:
    """Read with Spark; the timestamp comes back as epoch micros so the JVM/Python zone cannot skew it."""
    df = spark.read.format("delta").load(path)
    micros = df.selectExpr(*[c for c in COLUMNS if c != "ts"], "unix_micros(ts) AS ts").collect()
    return sorted((tuple(r) for r in micros), key=lambda r: r[0])


def via_delta_rs(path: str) -> list[tuple[Any, ...]]:
    from deltalake import DeltaTable

    table = DeltaTable(path).to_pyarrow_table(columns=COLUMNS)
    return canonical([tuple(r[c] for c in COLUMNS) for r in table.to_pylist()])


def test_spark_written_table_reads_identically_in_delta_rs(spark: SparkSession, scratch_lake: Settings) -> None:
    from deltalake import DeltaTable

    table = f"silver.{unique('interop_spark')}"
    io.append(spark_frame(spark, ROWS), scratch_lake, table)
    path = io.path_of(scratch_lake, table)

    expected = canonical(ROWS)
    assert via_spark(spark, path) == expected
    assert via_delta_rs(path) == expected

    dt_table = DeltaTable(path)
    assert dt_table.version() == 0
    # The change data feed is on by default (spark_conf) and delta-rs still reads the table.
    assert dt_table.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    arrow = dt_table.to_pyarrow_table()
    assert arrow.schema.field("ts").type.tz in ("UTC", "+00:00")
    assert str(arrow.schema.field("d").type) == "date32[day]"
    pandas = dt_table.to_pandas().sort_values("id").reset_index(drop=True)
    assert pandas["id"].tolist() == [1, 2, 3, 4]
    assert pandas.loc[2].drop("id").isna().all()


def test_delta_rs_written_table_reads_identically_in_spark(spark: SparkSession, scratch_lake: Settings) -> None:
    from deltalake import write_deltalake

    path = scratch_lake.table_path("silver", unique("interop_rs"))
    write_deltalake(path, arrow_table(ROWS))

    expected = canonical(ROWS)
    assert via_delta_rs(path) == expected
    assert via_spark(spark, path) == expected
    types = {f.name: f.dataType.simpleString() for f in spark.read.format("delta").load(path).schema.fields}
    assert types == {
        "id": "int",
        "big": "bigint",
        "x": "double",
        "s": "string",
        "flag": "boolean",
        "d": "date",
        "ts": "timestamp",
    }


def test_timestamp_ntz_written_by_delta_rs_reads_in_spark(spark: SparkSession, scratch_lake: Settings) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    path = scratch_lake.table_path("silver", unique("interop_ntz"))
    local = [dt.datetime(2013, 1, 1, 5, 0), dt.datetime(2013, 6, 1, 12, 30, 15, 250000), None]
    write_deltalake(path, pa.table({"id": pa.array([1, 2, 3], pa.int32()), "at": pa.array(local, pa.timestamp("us"))}))
    df = spark.read.format("delta").load(path)
    assert dict(df.dtypes)["at"] == "timestamp_ntz"
    assert [r["at"] for r in df.orderBy("id").collect()] == local  # wall-clock values, no zone shift


def test_delta_rs_reads_after_spark_merge_and_appends_spark_reads(spark: SparkSession, scratch_lake: Settings) -> None:
    from deltalake import DeltaTable, write_deltalake

    table = f"silver.{unique('interop_merge')}"
    path = io.path_of(scratch_lake, table)
    first = spark_frame(spark, ROWS).selectExpr("*", "1 AS seq")
    io.merge_latest(first, scratch_lake, table, keys=["id"], sequence_by="seq")
    assert io.version(spark, scratch_lake, table) == 0

    # One update (id 2), one insert (id 5), one stale row that must not win (id 1, older seq).
    update = [
        (2, 7, 2.0, "updated", True, dt.date(2014, 1, 1), dt.datetime(2014, 1, 1, 1, 1, 1, tzinfo=UTC), 2),
        (5, 5, 5.5, "new", False, dt.date(2014, 2, 2), dt.datetime(2014, 2, 2, tzinfo=UTC), 2),
    ]
    stale = [(1, 1, 0.0, "stale", False, dt.date(2000, 1, 1), dt.datetime(2000, 1, 1, tzinfo=UTC), 0)]
    merged = spark.createDataFrame(update + stale, SPARK_DDL + ", seq INT")
    io.merge_latest(merged, scratch_lake, table, keys=["id"], sequence_by="seq")
    assert io.version(spark, scratch_lake, table) == 1

    expected = canonical([ROWS[0], update[0][:-1], ROWS[2], ROWS[3], update[1][:-1]])
    assert via_spark(spark, path) == expected
    dt_table = DeltaTable(path)
    assert dt_table.version() == 1
    assert via_delta_rs(path) == expected

    # delta-rs reads the change data feed Spark's MERGE wrote.
    import pyarrow as pa

    cdf = pa.table(dt_table.load_cdf(starting_version=1)).to_pylist()
    changes = sorted((r["id"], r["_change_type"]) for r in cdf)
    assert changes == [(2, "update_postimage"), (2, "update_preimage"), (5, "insert")]

    # And a delta-rs append to the Spark-made table (change data feed on) reads back in Spark.
    extra = (6, 6, 6.0, "from delta-rs", None, None, dt.datetime(2015, 1, 1, tzinfo=UTC))
    appended = arrow_table([extra]).append_column("seq", pa.array([3], pa.int32()))
    write_deltalake(path, appended, mode="append")
    assert via_spark(spark, path) == sorted([*expected, *canonical([extra])], key=lambda r: r[0])
    assert spark.read.format("delta").load(path).count() == 6
