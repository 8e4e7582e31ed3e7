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
from typing import TYPE_CHECKING

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
        with io.user_metadata(spark, settings, table):
            spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ({assignments})")
        commits += 1
    changed = [
        f"`{f.name}` COMMENT {_literal(declared.columns[f.name])}"
        for f in io.read(spark, settings, table).schema.fields
        if f.name in declared.columns and f.metadata.get("comment") != declared.columns[f.name]
    ]
    if changed:  # one commit for every column
        with io.user_metadata(spark, settings, table):
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
    """Each table's latest quality run, from `quality.results` (one row per check per run).

    "pass (14 checks)" or "fail (2 of 14)"; tables never checked are absent. Returns {} when the
    quality runner has not written its table yet, or wrote one without the columns read here.
    """
    from pyspark.sql import functions as F

    if not io.exists(spark, settings, QUALITY_RESULTS):
        return {}
    df = io.read(spark, settings, QUALITY_RESULTS)
    if not {"table", "run_id", "outcome", "checked_at"} <= set(df.columns):
        return {}
    latest = df.groupBy("table").agg(F.max_by("run_id", "checked_at").alias("run_id"))
    runs = df.join(latest, ["table", "run_id"]).groupBy("table").agg(
        F.count("*").alias("checks"), F.sum((F.col("outcome") == "failed").cast("int")).alias("failed")
    )
    return {
        r["table"]: f"fail ({r['failed']} of {r['checks']})" if r["failed"] else f"pass ({r['checks']} checks)"
        for r in runs.collect()
    }


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
