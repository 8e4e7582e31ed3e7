"""`quality.results`: every check run, and every refine step's reconciliation, as a Delta table.

One row per check per run: the table, the Delta version the checked data landed in (or the
version left unchanged when the write was refused), the check, its action and outcome, Soda's
metric, and the run id. The latest figures also go to the Prometheus gauges in `lake.metrics`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from lake import io
from lake.settings import Settings
from quality.runner import CheckOutcome

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RESULTS_TABLE = "quality.results"
SCHEMA = (
    "run_id STRING, table STRING, version BIGINT, scope STRING, check STRING, check_type STRING, "
    "column STRING, action STRING, outcome STRING, metric DOUBLE, detail STRING, checked_at TIMESTAMP"
)


@lru_cache(maxsize=1)
def _process_run_id() -> str:
    return uuid.uuid4().hex


def run_id() -> str:
    """The flow run's id when inside a Prefect flow (same id as the observability logs), else one per process."""
    try:
        from lake import logs  # type: ignore[attr-defined,unused-ignore]

        return str(logs.run_id())
    except ImportError:
        return _process_run_id()


@dataclass
class Reconciliation:
    """rows in = rows out + quarantined + duplicates collapsed, for one refine batch or step."""

    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    duplicates_collapsed: int = 0

    @property
    def holds(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_quarantined + self.duplicates_collapsed

    def add(self, other: Reconciliation) -> None:
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        self.rows_quarantined += other.rows_quarantined
        self.duplicates_collapsed += other.duplicates_collapsed

    def outcome(self, table: str, scope: str) -> CheckOutcome:
        counts = {k: getattr(self, k) for k in ("rows_in", "rows_out", "rows_quarantined", "duplicates_collapsed")}
        missing = self.rows_in - (self.rows_out + self.rows_quarantined + self.duplicates_collapsed)
        return CheckOutcome(
            table, scope, "reconciliation", "reconciliation", None, "fail", "passed" if self.holds else "failed",
            float(missing), json.dumps(counts),
        )  # fmt: skip


def record(
    spark: SparkSession,
    settings: Settings,
    outcomes: Iterable[CheckOutcome],
    version: int | None,
    txn: tuple[str, int] | None = None,
) -> int:
    """Append outcomes to `quality.results` and set the gauges; returns rows written."""
    rows = list(outcomes)
    if not rows:
        return 0
    now, rid = dt.datetime.now(dt.UTC).replace(tzinfo=None), run_id()
    data = [
        (rid, o.table, version, o.scope, o.check, o.check_type, o.column, o.action, o.outcome, o.metric, o.detail, now)
        for o in rows
    ]
    io.append(spark.createDataFrame(data, SCHEMA), settings, RESULTS_TABLE, txn=txn)
    _export(rows)
    return len(rows)


def _export(rows: list[CheckOutcome]) -> None:
    from lake.metrics import QUALITY_CHECKS_FAILED, QUALITY_CHECKS_RUN

    for table in {o.table for o in rows}:
        mine = [o for o in rows if o.table == table]
        QUALITY_CHECKS_RUN.labels(table).set(len(mine))
        QUALITY_CHECKS_FAILED.labels(table).set(sum(o.outcome == "failed" for o in mine))


def read(spark: SparkSession, settings: Settings) -> DataFrame | None:
    return io.read(spark, settings, RESULTS_TABLE) if io.exists(spark, settings, RESULTS_TABLE) else None


def latest(spark: SparkSession, settings: Settings, table: str | None = None) -> DataFrame | None:
    """Each table's (or `table`'s) rows of its most recent check run (latest `checked_at`)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = read(spark, settings)
    if df is None:
        return None
    if table:
        df = df.where(F.col("table") == table)
    newest = F.max("checked_at").over(Window.partitionBy("table"))
    rows = df.withColumn("_newest", newest).where(F.col("checked_at") == F.col("_newest")).drop("_newest")
    return rows.orderBy("table", "scope", "check")
