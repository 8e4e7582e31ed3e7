"""Files -> bronze, as a source spec declares.

Bronze is append-only. Each run lists the files the spec matches, skips those already in the
table (the table's own `_source_file` column is the ledger, so the ledger and the data commit
together and a crashed run leaves nothing half-recorded), and appends the rest in one Delta
commit with `_ingested_at`, `_source_file` and `_batch_id`. Values that do not parse as the
declared type are kept: the typed column is null and `_rescued_data` holds the raw value and
the reason; a record that does not parse at all is kept the same way with its raw text.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from lake import io
from lake.settings import Settings
from lake.source import SourceError, SourceSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

CORRUPT = "_corrupt_record"


@dataclass(frozen=True)
class IngestResult:
    source: str
    table: str
    files_seen: int
    files_new: int
    rows: int
    rescued: int
    batch_id: str | None
    version: int | None


def new_batch_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def ingested_files(spark: SparkSession, settings: Settings, table: str) -> set[str]:
    if not io.exists(spark, settings, table):
        return set()
    rows = io.read(spark, settings, table).select("_source_file").distinct().collect()
    return {r[0] for r in rows}


def target_schema(spark: SparkSession, settings: Settings, spec: SourceSpec, files: list[str]) -> StructType:
    """Declared schema, else the bronze table's (stable across runs), else inferred once."""
    from pyspark.sql.types import StructType

    ddl = spec.ddl()
    if ddl:
        return cast(StructType, StructType.fromDDL(ddl))
    if io.exists(spark, settings, spec.target):
        fields = [f for f in io.read(spark, settings, spec.target).schema.fields if f.name not in io.METADATA_COLUMNS]
        return StructType(fields)
    reader = spark.read.format(spec.format).options(**_options(spec))
    if spec.format == "csv":
        reader = reader.option("inferSchema", "true")
    return reader.load(files).schema


def _options(spec: SourceSpec) -> dict[str, str]:
    defaults = {"csv": {"header": "true"}, "json": {}, "parquet": {}}[spec.format]
    merged = {**defaults, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in spec.options.items()}}
    return merged


def read_typed(spark: SparkSession, spec: SourceSpec, files: list[str], schema: StructType) -> DataFrame:
    """Read `files` and cast to `schema`, rescuing what does not parse instead of dropping it."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    options = _options(spec)
    if spec.format == "parquet":
        # Parquet is typed at the source: nothing to rescue, only to conform to the declared types.
        raw = spark.read.options(**options).parquet(*files)
        return raw.select(
            *[F.col(f.name).cast(f.dataType) for f in schema.fields],
            F.lit(None).cast("string").alias("_rescued_data"),
            F.col("_metadata.file_path").alias("_source_file"),
        )

    as_text = StructType([StructField(f.name, StringType()) for f in schema.fields] + [StructField(CORRUPT, StringType())])
    raw = (
        spark.read.format(spec.format)
        .options(**options)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .schema(as_text)
        .load(files)
    )
    typed = []
    failures = []
    for f in schema.fields:
        if isinstance(f.dataType, StringType):
            typed.append(F.col(f.name))
            continue
        parsed = F.expr(f"try_cast(`{f.name}` AS {f.dataType.simpleString()})")
        typed.append(parsed.alias(f.name))
        failed = F.col(f.name).isNotNull() & (F.trim(F.col(f.name)) != "") & parsed.isNull()
        failures.append((f.name, f.dataType.simpleString(), failed))

    # `_rescued_data` is null for a clean row, else JSON: {"_error": reason, "<column>": raw value}
    # for values that did not parse, or {"_error": "malformed record", "_raw": text} for a record.
    reason = F.concat_ws("; ", *[F.when(cond, F.lit(f"{name}: not a valid {t}")) for name, t, cond in failures])
    bad_values = [F.when(cond, F.col(name)).alias(name) for name, _, cond in failures]
    rescued = F.when(
        F.col(CORRUPT).isNotNull(),
        F.to_json(F.struct(F.lit("malformed record").alias("_error"), F.col(CORRUPT).alias("_raw"))),
    ).when(reason != "", F.to_json(F.struct(reason.alias("_error"), *bad_values)))
    return raw.select(*typed, rescued.alias("_rescued_data"), F.col("_metadata.file_path").alias("_source_file"))


def ingest(spark: SparkSession, settings: Settings, spec: SourceSpec) -> IngestResult:
    """Append the files `spec` matches that bronze does not hold yet; re-running adds nothing."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    pattern = spec.glob(settings)
    files = io.glob_files(spark, pattern)
    if not files:
        raise SourceError(f"source {spec.name!r}: path {pattern!r} matches no files")
    done = ingested_files(spark, settings, spec.target)
    new = [f for f in files if f not in done]
    if not new:
        return IngestResult(spec.name, spec.target, len(files), 0, 0, 0, None, io.version(spark, settings, spec.target))
    batch_id = new_batch_id()
    schema = target_schema(spark, settings, spec, new)
    # Counted while the write runs (an Observation), not by reading the batch back.
    counts = Observation(f"ingest-{batch_id}")
    df = (
        read_typed(spark, spec, new, schema)
        .select("*", F.current_timestamp().alias("_ingested_at"), F.lit(batch_id).alias("_batch_id"))
        .observe(counts, F.count(F.lit(1)).alias("rows"), F.count("_rescued_data").alias("rescued"))
    )
    io.append(df, settings, spec.target)
    return IngestResult(
        spec.name, spec.target, len(files), len(new), int(counts.get["rows"]), int(counts.get["rescued"]), batch_id,
        io.version(spark, settings, spec.target),
    )
