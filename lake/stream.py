"""Streaming ingestion: Kafka or a landing folder -> bronze, exactly once; then bronze -> silver.

One Structured Streaming query reads the declared event stream (`lake/streams/*.yml`) from
either source (`stream.source`): Kafka records, or JSON Lines files appearing in a landing
folder (what Auto Loader does), so the embedded default needs no broker. Both sources become the
same raw rows (bytes, topic/partition/offset or file, publish time), and one `foreachBatch`
handler parses them:

- well-formed events append to the bronze table with their Kafka coordinates (or file);
- malformed ones (not UTF-8, not a JSON object, no key, no event time, a value that does not fit
  its declared type, or a new field when the declaration says so) append to
  `quarantine.<stream>` with the raw bytes, where they came from and the reason;
- a new field is added as a string column when the declaration says `on_new_field: add`.

Exactly once, end to end: the checkpoint records each micro-batch's offsets (or files) before
the batch runs, so a restart after a crash replays exactly the unfinished batch; both appends
carry Delta's idempotent-write options (`txnAppId` = this checkpoint's id, `txnVersion` = the
batch id), so a batch whose commit landed before the crash is skipped by Delta when replayed.

Silver: the declared silver table is fed from bronze by a second (availableNow or periodic)
query through `lake.pipeline.refine_batch`, the batch path's own silver step, with the event time
as the sequence: the latest event by event time wins, an older event arriving late changes
nothing, duplicates collapse.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lake import io, kafka
from lake.settings import Settings, is_uri, join, key_problems, resolve_path
from lake.source import _TYPE, declared_sources
from lake.tables import SEQUENCE_COLUMN, get

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

Source = Literal["landing", "kafka"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Bronze metadata after the event's fields: where each event came from, and when.
META = ("_topic", "_partition", "_offset", "_source_file", "_published_at", "_ingested_at", "_batch_id")


class StreamError(ValueError):
    """A stream declaration or source problem, naming the file, key or path."""


class StreamSpec(BaseModel):
    """A declared event stream (docs/streaming.md is the reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    owner: str = "data-platform@example.org"
    topic: str = Field(description="Kafka topic")
    landing_path: str = Field(description="folder of JSON Lines files, under the landing zone unless absolute")
    target: str = Field(description="bronze table, `bronze.<name>`")
    key: str = Field(description="the field identifying the entity (the Kafka record key)")
    event_time: str = Field(description="the timestamp field ordering events of one key")
    on_new_field: Literal["add", "quarantine"] = "quarantine"
    merge_into: str | None = Field(default=None, description="the silver table the events upsert into")
    schema_: dict[str, str] = Field(alias="schema")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid name (lowercase letters, digits, _)")
        return v

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        layer, _, name = v.partition(".")
        if layer != "bronze" or not _NAME.match(name):
            raise ValueError(f"{v!r}: a stream lands in a bronze table, `bronze.<name>`")
        return v

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, str]) -> dict[str, str]:
        for column, type_name in v.items():
            if not _NAME.match(column):
                raise ValueError(f"field {column!r}: lowercase letters, digits and _, starting with a letter")
            if not _TYPE.match(str(type_name)):
                raise ValueError(f"field {column!r}: unknown type {type_name!r}")
        return v

    def model_post_init(self, _context: object) -> None:
        for role in ("key", "event_time"):
            field = getattr(self, role)
            if field not in self.schema_:
                raise ValueError(f"`{role}` names {field!r}, which `schema` does not declare")
        if self.schema_[self.event_time].lower() not in ("timestamp", "timestamp_ntz"):
            raise ValueError(f"`event_time` field {self.event_time!r} must be declared as a timestamp")

    @property
    def table_name(self) -> str:
        return self.target.split(".", 1)[1]

    @property
    def quarantine(self) -> str:
        return f"quarantine.{self.table_name}"


def load_stream(settings: Settings, path: str | None = None) -> StreamSpec:
    """The event stream declared in `path` (default: `stream.declaration`)."""
    file = Path(resolve_path(path or settings.stream.declaration))
    if not file.is_file():
        raise StreamError(f"{file}: stream declaration not found (stream.declaration)")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise StreamError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise StreamError(f"{file}: a stream declaration is a mapping of keys")
    try:
        return StreamSpec.model_validate(data)
    except ValidationError as exc:
        raise StreamError(f"{file}: " + "; ".join(problem for _, problem in key_problems(exc))) from None


def landing_dir(settings: Settings, spec: StreamSpec) -> str:
    if is_uri(spec.landing_path) or Path(spec.landing_path).is_absolute():
        return spec.landing_path
    return join(settings.landing_root, spec.landing_path)


def checkpoint_dir(settings: Settings, spec: StreamSpec, source: Source) -> str:
    # One per source: a checkpoint records source-specific offsets (Kafka offsets or file names).
    return join(settings.checkpoint_root, "bronze", f"{spec.table_name}-{source}")


def refine_checkpoint(settings: Settings, spec: StreamSpec) -> str:
    assert spec.merge_into
    return join(settings.checkpoint_root, "silver", f"{spec.merge_into.split('.', 1)[1]}-from-{spec.name}")


def read_source(spark: SparkSession, settings: Settings, spec: StreamSpec, source: Source) -> DataFrame:
    """The stream's raw records, the same columns whatever the source."""
    from pyspark.sql import functions as F

    if source == "kafka":
        kafka.ensure_topic(settings, spec.topic)
        raw = (
            spark.readStream.format("kafka")
            .options(**kafka.spark_options(settings))
            .option("subscribe", spec.topic)
            .option("startingOffsets", "earliest")
            .option("maxOffsetsPerTrigger", settings.stream.max_records_per_trigger)
            .load()
        )
        return raw.select(
            "value", "topic", "partition", "offset", F.col("timestamp").alias("published_at"),
            F.lit(None).cast("string").alias("source_file"),
        )  # fmt: skip
    folder = landing_dir(settings, spec)
    if not is_uri(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
    lines = (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", settings.stream.max_files_per_trigger)
        .option("pathGlobFilter", "*.jsonl")
        .load(folder)
    )
    return lines.select(
        F.col("value").cast("binary").alias("value"),
        F.lit(None).cast("string").alias("topic"),
        F.lit(None).cast("int").alias("partition"),
        F.lit(None).cast("long").alias("offset"),
        F.col("_metadata.file_modification_time").alias("published_at"),
        F.col("_metadata.file_path").alias("source_file"),
    )


@dataclass
class BatchReport:
    batch_id: int
    rows: int  # events appended to bronze
    quarantined: int
    new_columns: list[str]
    committed_at: float  # unix time the bronze commit became visible
    oldest_published_at: float | None  # unix time of the batch's earliest record

    def to_json(self) -> dict[str, object]:
        return {
            "batch": self.batch_id,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "new_columns": self.new_columns,
            "committed_at": round(self.committed_at, 3),
            "freshness_s": round(self.committed_at - self.oldest_published_at, 3) if self.oldest_published_at else None,
        }


def parse(raw: DataFrame, spec: StreamSpec) -> DataFrame:
    """Typed event columns + metadata, `_unexpected` (undeclared fields) and `_reason` (null = well-formed)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    text = F.col("value").cast("string")
    as_text = StructType([StructField(c, StringType()) for c in spec.schema_])
    parsed = raw.select(
        "*",
        F.from_json(text, as_text).alias("_j"),
        F.expr("json_object_keys(CAST(value AS STRING))").alias("_keys"),
    )

    def typed(column: str) -> Column:
        return F.expr(f"try_cast(_j.`{column}` AS {spec.schema_[column]})")

    type_errors = [
        F.when(F.col(f"_j.`{c}`").isNotNull() & typed(c).isNull(), F.lit(f"field {c}: not a valid {t}"))
        for c, t in spec.schema_.items()
    ]
    unexpected = F.array_except("_keys", F.array(*[F.lit(c) for c in spec.schema_]))
    drift = F.lit(None).cast("string")
    if spec.on_new_field == "quarantine":
        drift = F.when(F.size(unexpected) > 0, F.concat(F.lit("unexpected field(s): "), F.array_join(unexpected, ", ")))
    reason = (
        F.when(F.col("value").isNull(), F.lit("empty payload"))
        .when(~F.expr("is_valid_utf8(CAST(value AS STRING))"), F.lit("not valid UTF-8"))
        .when(F.col("_keys").isNull(), F.lit("not a JSON object"))
        .when(F.col(f"_j.`{spec.key}`").isNull(), F.lit(f"missing key field {spec.key}"))
        .when(typed(spec.event_time).isNull(), F.lit(f"missing or invalid event time field {spec.event_time}"))
        .otherwise(F.coalesce(drift, F.nullif(F.concat_ws("; ", *type_errors), F.lit(""))))
    )
    return parsed.select(
        *[typed(c).alias(c) for c in spec.schema_],
        F.col("topic").alias("_topic"),
        F.col("partition").alias("_partition"),
        F.col("offset").alias("_offset"),
        F.col("source_file").alias("_source_file"),
        F.col("published_at").alias("_published_at"),
        "value",
        unexpected.alias("_unexpected"),
        reason.alias("_reason"),
    )


def _with_new_fields(rows: DataFrame, found: list[str]) -> tuple[DataFrame, list[str]]:
    """`on_new_field: add`: the undeclared fields as string columns; a field whose name cannot
    be a column (not lowercase letters, digits and _, or a metadata name) sends its events to
    quarantine instead. Returns the rows and the fields added."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    ok = sorted(f for f in found if _NAME.match(f) and f not in META)
    bad = sorted(set(found) - set(ok))
    if bad:
        hit = F.array_intersect("_unexpected", F.array(*[F.lit(n) for n in bad]))
        rows = rows.withColumn(
            "_reason",
            F.coalesce("_reason", F.when(F.size(hit) > 0, F.concat(F.lit("field name(s) not allowed: "), F.array_join(hit, ", ")))),
        )
    if ok:
        extra = F.from_json(F.col("value").cast("string"), StructType([StructField(c, StringType()) for c in ok]))
        rows = rows.withColumn("_x", extra).select("*", *[F.col(f"_x.`{c}`").alias(c) for c in ok]).drop("_x")
    return rows, ok


def txn_app_id(spark: SparkSession, checkpoint: str, target: str) -> str:
    """This checkpoint's id for Delta's idempotent writes: a new checkpoint must not inherit the
    batch ids an old one already committed, so the id lives (and dies) with the checkpoint."""
    return io.marker(spark, join(checkpoint, "_txn_app_id"), lambda: f"{target}:{uuid.uuid4().hex}")


def write_batch(
    spark: SparkSession, settings: Settings, spec: StreamSpec, raw: DataFrame, batch_id: int, app_id: str
) -> BatchReport:
    """Parse one micro-batch; append events to bronze and the rest to quarantine, idempotently."""
    from pyspark.sql import functions as F

    cached = parse(raw, spec).persist()  # one JSON parse per record, reused by every step below
    rows = cached
    try:
        stats = rows.agg(
            F.count("*"),
            F.count("_reason"),
            F.min(F.unix_micros("_published_at")),
            F.array_distinct(F.flatten(F.collect_set("_unexpected"))),
        ).first()
        assert stats is not None
        total, bad = int(stats[0]), int(stats[1])
        oldest = stats[2] / 1e6 if stats[2] is not None else None
        extra: list[str] = []
        if spec.on_new_field == "add" and stats[3]:
            rows, extra = _with_new_fields(rows, list(stats[3]))
            bad = rows.where("_reason IS NOT NULL").count() if len(extra) < len(stats[3]) else bad
        now = F.current_timestamp()
        tag = F.lit(f"stream-{batch_id}")
        if bad:
            quarantined = rows.where("_reason IS NOT NULL").select(
                F.lit(spec.target).alias("_table"), "_reason", F.col("value").alias("_raw"),
                *META[:5], tag.alias("_batch_id"), now.alias("_quarantined_at"),
            )  # fmt: skip
            io.append(quarantined, settings, spec.quarantine, txn=(app_id, batch_id))
        new_columns: list[str] = []
        if total > bad:
            if extra and io.exists(spark, settings, spec.target):
                have = set(io.read(spark, settings, spec.target).columns)
                new_columns = [c for c in extra if c not in have]
            good = rows.where("_reason IS NULL").select(
                *spec.schema_, *extra, *META[:5], now.alias("_ingested_at"), tag.alias("_batch_id")
            )
            io.append(good, settings, spec.target, txn=(app_id, batch_id), merge_schema=bool(extra))
        return BatchReport(batch_id, total - bad, bad, new_columns, time.time(), oldest)
    finally:
        cached.unpersist()


def start_ingest(
    spark: SparkSession,
    settings: Settings,
    spec: StreamSpec,
    source: Source | None = None,
    trigger_seconds: float | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> StreamingQuery:
    """Start source -> bronze: availableNow when `trigger_seconds` is None, else every N seconds."""
    from lake.metrics import STREAM_FRESHNESS_SECONDS, push

    source = source or settings.stream.source
    checkpoint = checkpoint_dir(settings, spec, source)
    app_id = txn_app_id(spark, checkpoint, spec.target)

    def handle(batch: DataFrame, batch_id: int) -> None:
        report = write_batch(spark, settings, spec, batch, batch_id, app_id)
        if report.oldest_published_at and report.rows:
            STREAM_FRESHNESS_SECONDS.labels(source=spec.name).set(report.committed_at - report.oldest_published_at)
        push(settings, only=[("source", spec.name)])  # after every micro-batch: freshness and the lag `lakehouse stream` sets
        if on_batch:
            on_batch(report)

    writer = (
        read_source(spark, settings, spec, source)
        .writeStream.foreachBatch(handle)
        .option("checkpointLocation", checkpoint)
        .queryName(f"{spec.name}-{source}-to-bronze")
    )
    writer = writer.trigger(availableNow=True) if trigger_seconds is None else writer.trigger(processingTime=f"{trigger_seconds} seconds")
    return writer.start()


@dataclass
class IngestSummary:
    source: str
    table: str
    batches: int = 0
    rows: int = 0
    quarantined: int = 0
    version: int | None = None


def ingest_available(
    spark: SparkSession, settings: Settings, spec: StreamSpec, source: Source | None = None
) -> IngestSummary:
    """Everything the source holds now -> bronze, then stop (the scheduled micro-batch)."""
    summary = IngestSummary(source or settings.stream.source, spec.target)

    def count(report: BatchReport) -> None:
        summary.batches += 1
        summary.rows += report.rows
        summary.quarantined += report.quarantined

    start_ingest(spark, settings, spec, source, None, count).awaitTermination()
    summary.version = io.version(spark, settings, spec.target)
    return summary


def _silver_rows(batch: DataFrame, settings: Settings, spec: StreamSpec) -> DataFrame:
    """Bronze events in the shape of the silver table's batch input, the event time as sequence."""
    from pyspark.sql import functions as F

    assert spec.merge_into
    driver = get(spec.merge_into).inputs[0]
    fed_by = [s for s in declared_sources(settings).values() if s.target == driver]
    if not fed_by or not fed_by[0].schema_:
        raise StreamError(f"{spec.merge_into}: its input {driver} has no declared source schema to map events onto")
    columns = list(fed_by[0].schema_)
    missing = [c for c in columns if c not in batch.columns]
    if missing:
        raise StreamError(f"stream {spec.name}: fields {', '.join(missing)} of {driver} are not in {spec.target}")
    # Ties on event time (duplicates) are broken by where the event came from: the same on reruns.
    locator = F.when(
        F.col("_topic").isNotNull(),
        F.concat_ws("/", F.col("_topic"), F.col("_partition"), F.lpad(F.col("_offset").cast("string"), 20, "0")),
    ).otherwise(F.col("_source_file"))
    return batch.select(
        *columns,
        F.lit(None).cast("string").alias("_rescued_data"),
        F.col(spec.event_time).alias(SEQUENCE_COLUMN),
        locator.alias("_source_file"),
        "_batch_id",
    )


def _refine_handler(spark: SparkSession, settings: Settings, spec: StreamSpec) -> Callable[[DataFrame, int], None]:
    from lake.pipeline import refine_batch

    assert spec.merge_into
    table = get(spec.merge_into)
    app_id = f"{table.fqn}<-{spec.target}"

    def handle(batch: DataFrame, batch_id: int) -> None:
        refine_batch(spark, settings, table, _silver_rows(batch, settings, spec), batch_id, app_id)

    return handle


def refine_waiting_for(spark: SparkSession, settings: Settings, spec: StreamSpec) -> list[str]:
    """Tables the silver step needs that do not exist yet (bronze events, the silver lookups)."""
    if not spec.merge_into:
        return []
    needed = [spec.target, *get(spec.merge_into).inputs[1:]]
    return [t for t in needed if not io.exists(spark, settings, t)]


def refine_available(spark: SparkSession, settings: Settings, spec: StreamSpec) -> str | None:
    """Merge the bronze events not merged yet into silver; returns why it waited, else None."""
    if not spec.merge_into:
        return f"stream {spec.name} declares no merge_into"
    waiting = refine_waiting_for(spark, settings, spec)
    if waiting:
        return f"waiting for {', '.join(waiting)}"
    io.process_new(spark, settings, spec.target, refine_checkpoint(settings, spec), _refine_handler(spark, settings, spec), change_feed=False)
    return None


def start_refine(spark: SparkSession, settings: Settings, spec: StreamSpec, every_seconds: float) -> StreamingQuery:
    """bronze events -> silver every N seconds (`lakehouse stream --refine`); needs bronze and lookups."""
    return (
        spark.readStream.format("delta")
        .load(io.path_of(settings, spec.target))
        .writeStream.foreachBatch(_refine_handler(spark, settings, spec))
        .option("checkpointLocation", refine_checkpoint(settings, spec))
        .queryName(f"{spec.name}-to-{spec.merge_into}")
        .trigger(processingTime=f"{every_seconds} seconds")
        .start()
    )


def lag_records(query: StreamingQuery) -> int | None:
    """Kafka records published but not yet in bronze, from the query's latest progress."""
    import json

    progress = query.lastProgress
    if progress is None or not progress.sources:
        return None
    source = progress.sources[0]

    def total(offsets: str | None) -> int | None:
        try:
            data = json.loads(offsets) if offsets else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None  # not Kafka offsets (a file source)
        return sum(int(v) for parts in data.values() if isinstance(parts, dict) for v in parts.values())

    latest, end = total(source.latestOffset), total(source.endOffset)
    return None if latest is None or end is None else max(0, latest - end)
