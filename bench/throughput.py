"""Files -> bronze throughput: our ingest against two plain writers, on the same landing files.

The baselines bound what the platform costs on top of "just write the data": plain Spark
(CSV with the declared schema -> Parquet, no Delta log, no rescue column, no ledger) and
delta-rs from pyarrow (no JVM at all). Every run writes to a fresh target, so all three do the
same work each time; the Spark session is warmed up first so JVM start and JIT are not counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from bench.common import lake_settings, median, stopwatch
from lake import io
from lake.ingest import _options as reader_options
from lake.ingest import ingest
from lake.seed import seed
from lake.source import SourceSpec, find_source

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

SOURCE = "flights"


@dataclass
class MethodResult:
    name: str
    description: str
    seconds: list[float] = field(default_factory=list)
    rows: int = 0

    @property
    def median_s(self) -> float:
        return median(self.seconds)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median_s if self.seconds else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s, "rows_per_s": self.rows_per_s}


@dataclass
class ThroughputResult:
    files: int
    rows: int
    repetitions: int
    methods: list[MethodResult]
    seed_s: float

    def to_json(self) -> dict[str, Any]:
        ours = self.methods[0].median_s
        return {
            "files": self.files,
            "rows": self.rows,
            "repetitions": self.repetitions,
            "seed_s": self.seed_s,
            "methods": [{**m.to_json(), "ours_over_this_time": ours / m.median_s} for m in self.methods],
        }


def arrow_type(spark_type: str) -> pa.DataType:
    """The Arrow type delta-rs writes for a declared (Spark DDL) column type."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "boolean": pa.bool_(),
        "int": pa.int32(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "float": pa.float32(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    return types[spark_type.lower()]


def warm_up(spark: SparkSession, spec: SourceSpec, files: list[str], scratch: Path) -> None:
    """One small read/write of each kind, so class loading and JIT happen before the clock starts."""
    ddl = spec.ddl()
    assert ddl, f"source {spec.name!r} declares no schema"
    df = spark.read.options(**reader_options(spec)).schema(ddl).csv(files[:3])
    df.write.mode("overwrite").parquet(str(scratch / "warm-parquet"))
    df.write.format("delta").mode("overwrite").save(str(scratch / "warm-delta"))
    spark.read.format("delta").load(str(scratch / "warm-delta")).count()


def run(spark: SparkSession, workdir: Path, repetitions: int, end: dt.date | None) -> ThroughputResult:
    """Seed one landing zone, then time (a) ours, (b) Spark -> Parquet, (c) delta-rs, `repetitions` times each."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from deltalake import write_deltalake

    landing = workdir / "landing"
    base = lake_settings(workdir / "seed-lake", landing=landing, seed_end=end)
    with stopwatch() as t_seed:
        seed(base)
    spec = find_source(base, SOURCE)
    files = io.glob_files(spark, spec.glob(base))
    local_files = [urlparse(f).path for f in files]
    schema = spec.ddl()
    assert schema, f"source {spec.name!r} declares no schema"
    column_types = {c: arrow_type(t) for c, t in (spec.schema_ or {}).items()}
    warm_up(spark, spec, files, workdir / "warm")

    ours = MethodResult("ours", "lake.ingest.ingest -> Delta bronze (rescue column, file ledger, metadata)")
    plain = MethodResult("spark-parquet", "Spark CSV reader with the declared schema -> df.write.parquet")
    delta_rs = MethodResult("delta-rs", "pyarrow.csv.read_csv per file + concat -> deltalake.write_deltalake")
    for rep in range(repetitions):
        target = lake_settings(workdir / f"ours-{rep}", landing=landing)
        with stopwatch() as t:
            result = ingest(spark, target, spec)
        ours.seconds.append(t[0])
        ours.rows = result.rows

        out = str(workdir / f"parquet-{rep}")
        with stopwatch() as t:
            spark.read.options(**reader_options(spec)).schema(schema).csv(files).write.parquet(out)
        plain.seconds.append(t[0])
        plain.rows = spark.read.parquet(out).count()  # outside the clock: only checks the work was done

        with stopwatch() as t:
            convert = pcsv.ConvertOptions(column_types=column_types)
            table = pa.concat_tables([pcsv.read_csv(f, convert_options=convert) for f in local_files])
            write_deltalake(str(workdir / f"delta-rs-{rep}"), table)
        delta_rs.seconds.append(t[0])
        delta_rs.rows = table.num_rows
        del table

    return ThroughputResult(len(files), ours.rows, repetitions, [ours, plain, delta_rs], t_seed[0])
