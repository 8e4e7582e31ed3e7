"""The catalog: what is in the lake, how fresh, how good, and what it means.

Descriptions, owners and column descriptions are declared next to the code (source YAMLs for
bronze, `Table(description=, owner=, columns=)` for silver and gold). `apply` writes them into
the Delta table itself (the `comment` property, `lakehouse.owner`, column comments), so every
engine reading the table (Spark SQL `DESCRIBE`, delta-rs, a BI tool over JDBC) sees them.
`entries` lists every table with rows, latest version, age of the last commit and the latest
quality status (from `quality.results` when the quality runner has written it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lake import io
from lake.settings import Settings
from lake.source import declared_sources
from lake.tables import registry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

OWNER_PROPERTY = "lakehouse.owner"
LAYER_PROPERTY = "lakehouse.layer"
QUALITY_RESULTS = "quality.results"
CATALOG_LAYERS = ("bronze", "silver", "gold", "quarantine")


@dataclass(frozen=True)
class Declared:
    description: str
    owner: str
    columns: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    table: str
    rows: int
    version: int | None
    last_commit: dt.datetime | None
    description: str
    owner: str
    quality: str | None  # e.g. "pass", "fail (2 of 14)", None when never checked

    def age_seconds(self, now: dt.datetime | None = None) -> float | None:
        if self.last_commit is None:
            return None
        return ((now or dt.datetime.now(dt.UTC)) - self.last_commit).total_seconds()


def declarations(settings: Settings) -> dict[str, Declared]:
    """What the code says about each table: bronze from the source specs, the rest from the registry."""
    out = {s.target: Declared(s.description, s.owner) for s in declared_sources(settings).values()}
    for table in registry().values():
        out[table.fqn] = Declared(table.description, table.owner, dict(table.columns))
    for name in list(out):
        if name.startswith("silver."):
            quarantine = f"quarantine.{name.split('.', 1)[1]}"
            out[quarantine] = Declared(f"Rows refused on their way to {name}, whole, with the rule they broke.", out[name].owner)
    return out


def apply(spark: SparkSession, settings: Settings, table: str, declared: Declared | None = None) -> int:
    """Write the declared description, owner and column comments into the Delta table.

    Only what differs is written (at most two commits: properties, then every column comment in
    one ALTER): a table already in step costs two metadata reads and no commit. Returns the
    number of commits made.
    """
    declared = declared or declarations(settings).get(table)
    if declared is None or not io.exists(spark, settings, table):
        return 0
    target = f"delta.`{io.path_of(settings, table)}`"
    detail = spark.sql(f"DESCRIBE DETAIL {target}").first()
    assert detail is not None
    properties: dict[str, str] = dict(detail["properties"] or {})
    want = {OWNER_PROPERTY: declared.owner, LAYER_PROPERTY: table.split(".", 1)[0]}
    commits = 0
    if (detail["description"] or "") != declared.description or any(properties.get(k) != v for k, v in want.items()):
        pairs = {"comment": declared.description, **want}
        assignments = ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in pairs.items())
        spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ({assignments})")
        commits += 1
    changed = [
        f"`{f.name}` COMMENT {_literal(declared.columns[f.name])}"
        for f in io.read(spark, settings, table).schema.fields
        if f.name in declared.columns and f.metadata.get("comment") != declared.columns[f.name]
    ]
    if changed:  # one commit for every column
        spark.sql(f"ALTER TABLE {target} ALTER COLUMN {', '.join(changed)}")
        commits += 1
    return commits


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def undeclared_columns(spark: SparkSession, settings: Settings, table: str) -> list[str]:
    """Columns of a silver/gold table that have no description (the catalog test keeps this empty)."""
    declared = declarations(settings).get(table)
    columns = declared.columns if declared else {}
    return [f.name for f in io.read(spark, settings, table).schema.fields if f.name not in columns]


def quality_status(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Latest quality outcome per table, read from `quality.results` when it exists.

    The runner's table is read loosely (a `table` column, a time column, and either a `status`
    or `passed`/`failed` counts) so the catalog does not break when the runner adds columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not io.exists(spark, settings, QUALITY_RESULTS):
        return {}
    df = io.read(spark, settings, QUALITY_RESULTS)
    cols = set(df.columns)
    time_col = next((c for c in ("checked_at", "run_at", "finished_at", "timestamp", "_checked_at") if c in cols), None)
    if "table" not in cols or time_col is None:
        return {}
    latest = df.withColumn("_rn", F.row_number().over(Window.partitionBy("table").orderBy(F.col(time_col).desc())))
    out: dict[str, str] = {}
    for row in latest.where("_rn = 1").collect():
        r: dict[str, Any] = row.asDict()
        if "status" in r and r["status"] is not None:
            out[r["table"]] = str(r["status"])
        elif "failed" in r:
            total = r.get("checks") or r.get("total")
            out[r["table"]] = "pass" if not r["failed"] else f"fail ({r['failed']}{f' of {total}' if total else ''})"
    return out


def entries(spark: SparkSession, settings: Settings) -> list[Entry]:
    """Every table in the lake, layer by layer."""
    from delta.tables import DeltaTable

    declared = declarations(settings)
    quality = quality_status(spark, settings)
    out = []
    for layer in CATALOG_LAYERS:
        for name in io.list_tables(spark, settings, layer):
            table = f"{layer}.{name}"
            last = DeltaTable.forPath(spark, io.path_of(settings, table)).history(1).select("version", "timestamp").first()
            info = declared.get(table, Declared("", ""))
            committed = last["timestamp"].astimezone(dt.UTC) if last and last["timestamp"] else None
            out.append(
                Entry(
                    table,
                    io.read(spark, settings, table).count(),
                    int(last["version"]) if last else None,
                    committed,
                    info.description,
                    info.owner,
                    quality.get(table),
                )
            )
    return out
