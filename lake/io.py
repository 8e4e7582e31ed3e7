"""Delta reads, writes and merges: the one module that touches table storage.

Transforms never read or write; they receive and return DataFrames. Everything here is
addressed by (layer, name) and resolved to the table's location in the lake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

METADATA_COLUMNS = ("_ingested_at", "_source_file", "_batch_id", "_rescued_data")
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"

# What every commit made inside `commit_context` records as its userMetadata. Process-wide, not a
# context variable: foreachBatch handlers run on py4j's threads.
_commit: dict[str, Any] = {}


@contextmanager
def commit_context(run_id: str, table: str, inputs: Sequence[str] = (), **extra: Any) -> Iterator[None]:
    """Commits made inside carry userMetadata: the run id and the versions of `inputs` they read.

    Input versions are taken when each commit is made: the snapshot a step read is the table's
    latest when it started reading, so a gold version traces to exact silver and bronze versions.
    """
    previous = dict(_commit)
    _commit.clear()
    _commit.update(run_id=run_id, table=table, inputs=tuple(inputs), **extra)
    try:
        yield
    finally:
        _commit.clear()
        _commit.update(previous)


@contextmanager
def user_metadata(spark: SparkSession, settings: Settings, table: str) -> Iterator[None]:
    """Tag the commits made inside; outside any step, with the process's run id and the table."""
    from lake import logs

    meta = dict(_commit) if _commit else {"run_id": logs.run_id(), "table": table, "inputs": ()}
    inputs = {name: version(spark, settings, name) for name in meta["inputs"]}
    spark.conf.set(USER_METADATA_CONF, json.dumps({**meta, "inputs": inputs}, sort_keys=True, default=str))
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA_CONF)


def commit_metadata(spark: SparkSession, settings: Settings, table: str, at: int | None = None) -> dict[str, Any]:
    """The userMetadata a table version (default: the latest) was committed with ({} if none)."""
    from delta.tables import DeltaTable

    history = DeltaTable.forPath(spark, path_of(settings, table)).history()
    if at is not None:
        history = history.where(f"version = {int(at)}")
    row = history.select("userMetadata").first()
    return parse_user_metadata(row[0] if row else None)


def parse_user_metadata(text: str | None) -> dict[str, Any]:
    """A commit's userMetadata as written by `commit_context`; text written by others is kept as `note`."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"note": text}
    return value if isinstance(value, dict) else {"note": text}


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark._jvm
    assert jvm is not None, "the Spark session has no JVM gateway"
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath


def list_tables(spark: SparkSession, settings: Settings, layer: str) -> list[str]:
    """Names of the Delta tables stored under `<lake>/<layer>/`."""
    fs, root = _fs(spark, f"{settings.lake_root}/{layer}")
    if not fs.exists(root):
        return []
    names = []
    for status in fs.listStatus(root):
        if status.isDirectory():
            child = status.getPath()
            if fs.exists(child.suffix("/_delta_log")):
                names.append(child.getName())
    return sorted(names)


def glob_files(spark: SparkSession, pattern: str) -> list[str]:
    """Files matching a glob (local or object storage), sorted, as fully qualified URIs."""
    fs, path = _fs(spark, pattern)
    statuses = fs.globStatus(path) or []
    return sorted(str(s.getPath().toUri().toString()) for s in statuses if s.isFile())


def delete_path(spark: SparkSession, path: str) -> None:
    fs, hpath = _fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def marker(spark: SparkSession, path: str, make: Callable[[], str]) -> str:
    """The text of a small file at `path` (local or object storage), created with `make()` if absent."""
    fs, hpath = _fs(spark, path)
    if not fs.exists(hpath):
        out = fs.create(hpath, False)  # no overwrite: a concurrent creator fails instead of replacing
        try:
            out.write(bytearray(make().encode()))
        finally:
            out.close()
    stream = fs.open(hpath)
    try:
        reader = spark._jvm.java.io.BufferedReader(spark._jvm.java.io.InputStreamReader(stream))  # type: ignore[union-attr]
        return str(reader.readLine() or "")
    finally:
        stream.close()


def register_table(spark: SparkSession, layer: str, name: str, path: str, replace: bool = False) -> None:
    """Name a Delta location in this session's catalog as `layer.name`."""
    if replace:
        spark.sql(f"DROP TABLE IF EXISTS {layer}.{name}")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {layer}.{name} USING DELTA LOCATION '{path}'")


def path_of(settings: Settings, table: str) -> str:
    layer, name = table.split(".", 1)
    return settings.table_path(layer, name)


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs (`deltalake`) options for the lake's object store: the endpoint Spark's s3a gets.

    Empty for a local lake. Credentials come from the environment, as for Spark. Writers: see
    "Several writers on one table" in docs/cluster.md (one writing engine per table).
    """
    o = settings.object_store
    if not (o.endpoint_url or settings.lake_root.startswith(("s3a://", "s3://"))):
        return {}
    options = {"AWS_REGION": o.region}
    if o.endpoint_url:
        options["AWS_ENDPOINT_URL"] = o.endpoint_url
        options["AWS_ALLOW_HTTP"] = str(o.endpoint_url.startswith("http://")).lower()
    if o.path_style:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def exists(spark: SparkSession, settings: Settings, table: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path_of(settings, table)))


def read(spark: SparkSession, settings: Settings, table: str) -> DataFrame:
    return spark.read.format("delta").load(path_of(settings, table))


def version(spark: SparkSession, settings: Settings, table: str) -> int | None:
    """The table's current Delta version, or None when it does not exist yet."""
    if not exists(spark, settings, table):
        return None
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path_of(settings, table)).history(1).select("version").first()
    return int(row[0]) if row else None


def _after_create(spark: SparkSession, settings: Settings, table: str) -> None:
    layer, name = table.split(".", 1)
    if not spark.catalog.databaseExists(layer):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
    register_table(spark, layer, name, path_of(settings, table), replace=True)


def append(
    df: DataFrame,
    settings: Settings,
    table: str,
    partition_by: Sequence[str] = (),
    txn: tuple[str, int] | None = None,
    merge_schema: bool = False,
) -> None:
    """Append rows; `txn` = (app id, version) makes a replayed micro-batch a no-op.

    `merge_schema` adds columns `df` has and the table lacks (declared schema drift), nothing else.
    """
    spark = df.sparkSession
    new = not exists(spark, settings, table)
    writer = df.write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if txn:
        writer = writer.option("txnAppId", txn[0]).option("txnVersion", txn[1])
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    with user_metadata(spark, settings, table):
        writer.save(path_of(settings, table))
    if new:
        _after_create(spark, settings, table)


def merge_latest(
    df: DataFrame,
    settings: Settings,
    table: str,
    keys: Sequence[str],
    sequence_by: str,
    partition_by: Sequence[str] = (),
) -> None:
    """Upsert `df` into `table` by `keys`; the row with the latest `sequence_by` wins.

    `df` must already hold one row per key. When the table is partitioned, the partition
    values present in `df` are added to the match condition so MERGE only scans those
    partitions: processing one new day costs the same whatever the table's size.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    spark = df.sparkSession
    if not exists(spark, settings, table):
        append(df, settings, table, partition_by)
        return
    condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    for column in partition_by:
        values = [r[0] for r in df.select(column).distinct().collect()]
        if values and None not in values:
            condition += f" AND {_in_list(f't.`{column}`', values)}"
    merge = (
        DeltaTable.forPath(spark, path_of(settings, table))
        .alias("t")
        .merge(df.alias("s"), condition)
        .whenMatchedUpdateAll(condition=F.col(f"s.`{sequence_by}`") >= F.col(f"t.`{sequence_by}`"))
        .whenNotMatchedInsertAll()
    )
    with user_metadata(spark, settings, table):
        merge.execute()


def replace_where(df: DataFrame, settings: Settings, table: str, column: str, values: Sequence[Any]) -> bool:
    """Atomically replace the rows whose `column` is in `values` with `df` (a backfill/rerun).

    When those rows already hold exactly `df` (a rerun on unchanged input), nothing is written:
    no commit, no new files. Returns whether a commit was made.
    """
    spark = df.sparkSession
    new = not exists(spark, settings, table)
    writer = df.write.format("delta").mode("append" if new else "overwrite")
    if not new:
        predicate = _in_list(f"`{column}`", values)
        if _same_rows(df, read(spark, settings, table).where(predicate)):
            return False
        writer = writer.option("replaceWhere", predicate)
    with user_metadata(spark, settings, table):
        writer.save(path_of(settings, table))
    if new:
        _after_create(spark, settings, table)
    return True


def _same_rows(staged: DataFrame, current: DataFrame) -> bool:
    """Equal as multisets of rows (same columns by name); a schema change counts as different."""
    if sorted(staged.columns) != sorted(current.columns):
        return False
    current = current.select(*staged.columns)
    if [f.dataType for f in staged.schema] != [f.dataType for f in current.schema]:  # nullability aside
        return False
    return staged.exceptAll(current).isEmpty() and current.exceptAll(staged).isEmpty()


def _in_list(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({', '.join(_sql_literal(v) for v in values)})"


def _sql_literal(value: Any) -> str:
    import datetime as dt

    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def process_new(
    spark: SparkSession,
    settings: Settings,
    source: str,
    checkpoint: str,
    handle: Callable[[DataFrame, int], None],
    change_feed: bool,
) -> bool:
    """Feed what is new in `source` since the last run to `handle`, exactly once.

    A Structured Streaming query with the availableNow trigger: the checkpoint records what was
    processed, so a run processes only new commits and a crashed run resumes where it stopped.
    `change_feed` reads the Delta change data feed (for tables updated by MERGE). Returns False
    when the source table does not exist yet.
    """
    if not exists(spark, settings, source):
        return False
    reader = spark.readStream.format("delta")
    if change_feed:
        reader = reader.option("readChangeFeed", "true")
    query = (
        reader.load(path_of(settings, source))
        .writeStream.foreachBatch(handle)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return True
